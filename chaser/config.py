"""Server settings: defaults, the data dir and the limits users may ask for."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """`/var/lib/chaser` as root, else the XDG data dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/chaser")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chaser"


@dataclass
class Settings:
    """Everything the server can be tuned with (see docs/configuration.md)."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = None  # CHASER_API_KEY from the server's environment
    # Default and maximum per-sandbox limits.
    memory_mb: int = 2048
    max_memory_mb: int = 16384
    pids: int = 1024
    max_pids: int = 16384
    cpus: float = 2.0
    max_cpus: float = 64.0
    idle_timeout_s: int = 1800
    workspace_idle_timeout_s: int = 600  # sessions /v1/exec makes for a workspace
    max_sandboxes: int = 256  # running sandboxes on this server, all tenants
    max_sessions_per_tenant: int = 64
    max_running_commands_per_session: int = 256
    max_log_bytes: int = 64 * 1024 * 1024  # output kept per command, oldest dropped first
    log_retention_s: int = 7 * 24 * 3600
    max_body_bytes: int = 4 * 1024 * 1024
    warm_pool: int = 2  # started sandboxes kept ready for ephemeral runs (0: none)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from `CHASER_*` environment variables, then explicit overrides."""
        s = cls()
        env = os.environ
        if env.get("CHASER_DATA_DIR"):
            s.data_dir = Path(env["CHASER_DATA_DIR"])
        s.admin_key = env.get("CHASER_API_KEY") or None
        for name in ("memory_mb", "pids", "idle_timeout_s", "max_sandboxes",
                     "max_sessions_per_tenant", "max_log_bytes", "log_retention_s", "warm_pool"):
            value = env.get(f"CHASER_{name.upper()}")
            if value:
                setattr(s, name, int(value))
        for key, override in overrides.items():
            if override is not None:
                setattr(s, key, Path(str(override)) if key == "data_dir" else override)
        return s

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chaser.db"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def runtime_dir(self) -> Path:
        return self.data_dir / "runtime"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"
