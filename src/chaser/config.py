"""Server settings: one declarative table drives the defaults, the `CHASER_*` variables
and the docs test, and a bad value names its variable and the form it expects."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def default_data_dir() -> Path:
    """`/var/lib/chaser` as root, else the XDG data dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/chaser")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chaser"


class SettingError(ValueError):
    """A setting's value is not of the form it takes (the message says which and how)."""


def _env(help: str, *, lo: float | None = None, hi: float | None = None,
         form: str = "number") -> dict[str, object]:
    """Metadata of a setting read from `CHASER_<NAME>`, with its range and meaning;
    `form` is "number", "list" (comma-separated) or "path"."""
    return {"env": True, "help": help, "lo": lo, "hi": hi, "form": form}


@dataclass
class Settings:
    """Everything the server can be tuned with (see docs/configuration.md)."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = None  # CHASER_API_KEY from the server's environment
    # Default and maximum per-sandbox limits.
    memory_mb: int = field(default=2048, metadata=_env("default memory limit per sandbox (MiB)", lo=16))
    max_memory_mb: int = 16384
    pids: int = field(default=1024, metadata=_env("default process limit per sandbox", lo=8))
    max_pids: int = 16384
    disk_mb: int = field(default=10240, metadata=_env(
        "default disk quota per sandbox: a workspace's disk, or the tmpfs size of each "
        "writable mount of a sandbox without one (MiB)", lo=1))
    max_disk_mb: int = 1024 * 1024
    cpus: float = 2.0
    max_cpus: float = 64.0
    idle_timeout_s: int = field(default=1800, metadata=_env("default idle timeout of sessions", lo=1))
    workspace_idle_timeout_s: int = 600  # sessions /v1/exec makes for a workspace
    max_sandboxes: int | None = field(default=None, metadata=_env(
        "running sandboxes on this server, all tenants (503 `no_capacity` past it) "
        "[default: what the host holds: 2 MB of memory (a quarter kept back), 3 of half "
        "the server's open files left after connections and 2 process ids per sandbox]", lo=1))
    # Two per CPU: a start spends about half its time waiting (on the kernel, on the
    # agent), so one per CPU leaves CPUs idle while starts queue (bench/load.py).
    concurrent_starts: int = field(default_factory=lambda: 2 * (os.cpu_count() or 1),
                                   metadata=_env(
        "sandboxes starting at once; more wait, taken in turn by tenant [default: two "
        "per CPU]", lo=1, hi=1024))
    max_running_commands: int | None = field(default=None, metadata=_env(
        "running commands on this server, all tenants [default: 4096, fewer when the "
        "server's open files cannot hold them: 5 per command]", lo=1))
    memory_fraction: float = field(default=4.0, metadata=_env(
        "how many times host memory the memory limits of running sandboxes may add up to "
        "(limits are ceilings: 1 or less admits no overcommit)", lo=0.01, hi=1000))
    tenant_share: float = field(default=0.25, metadata=_env(
        "share of each server-wide limit one tenant may use by default", lo=0.0001, hi=1))
    max_sandboxes_per_tenant: int | None = field(default=None, metadata=_env(
        "running sandboxes of every kind per tenant [default: max_sandboxes x tenant_share]", lo=1))
    max_sessions_per_tenant: int | None = field(default=None, metadata=_env(
        "running sessions per tenant [default: max_sandboxes x tenant_share]", lo=1))
    max_commands_per_tenant: int | None = field(default=None, metadata=_env(
        "running commands per tenant [default: max_running_commands x tenant_share]", lo=1))
    max_memory_mb_per_tenant: int | None = field(default=None, metadata=_env(
        "sum of memory limits of a tenant's running sandboxes [default: the memory budget "
        "x tenant_share]", lo=16))
    pids_fraction: float = field(default=0.5, metadata=_env(
        "share of the kernel's pid_max all sandboxes together may use (the host keeps the "
        "rest)", lo=0.01, hi=0.95))
    max_pids_per_tenant: int | None = field(default=None, metadata=_env(
        "processes of all a tenant's sandboxes together [default: pid_max x pids_fraction "
        "x tenant_share]", lo=8))
    max_disk_mb_per_tenant: int | None = field(default=None, metadata=_env(
        "sum of a tenant's workspace disk quotas [default: the data dir's filesystem size "
        "x tenant_share]", lo=1))
    max_running_commands_per_session: int = 256
    # The files API (docs/files.md): each operation is a process in a sandbox, pipes and
    # a client connection in the server.
    file_ops_total: int = field(default=256, metadata=_env(
        "file operations (downloads, uploads, listings...) running at once on this server, "
        "all tenants (503 `no_capacity` past it)", lo=1))
    file_ops_per_tenant: int | None = field(default=None, metadata=_env(
        "file operations one tenant may run at once (429 `too_many_file_ops` past it) "
        "[default: file_ops_total x tenant_share]", lo=1))
    file_send_stall_s: float = field(default=60.0, metadata=_env(
        "how long a download may wait for its client to take the next bytes; past it the "
        "operation is ended and the connection closed", lo=0.1, hi=24 * 3600))
    file_op_idle_s: float = field(default=300.0, metadata=_env(
        "how long a file operation may go without a byte from or to its process in the "
        "sandbox (a stopped or stuck one); past it the operation is ended (502 "
        "`file_op_stalled`, or a download cut short)", lo=0.1, hi=24 * 3600))
    max_log_bytes: int = field(default=64 * 1024 * 1024, metadata=_env(
        "output kept per command (oldest dropped first)", lo=4096))
    max_session_log_bytes: int = field(default=1 << 30, metadata=_env(
        "output kept per session; past it the oldest ended commands' output is dropped",
        lo=1 << 20))
    max_tenant_log_bytes: int = field(default=4 << 30, metadata=_env(
        "output kept per tenant, across its sessions", lo=1 << 20))
    max_total_log_bytes: int = field(default=32 << 30, metadata=_env(
        "output kept on this server in all", lo=1 << 20))
    log_retention_s: int = field(default=7 * 24 * 3600, metadata=_env(
        "how long logs of ended sessions are kept", lo=1))
    max_body_bytes: int = 4 * 1024 * 1024
    # Client connections (docs/operations.md#client-connections).
    max_connections: int | None = field(default=None, metadata=_env(
        "client connections open at once; past it a new one is answered 503 `no_capacity` "
        "and closed [default: an eighth of the server's open-file limit, at most 16384; "
        "the sandbox caps are derived from what is left]", lo=1))
    max_connections_per_client: int | None = field(default=None, metadata=_env(
        "connections open at once from one client address, loopback included (a reverse "
        "proxy is one address: raise it there, the proxy limits per client) [default: a "
        "quarter of max_connections]", lo=1))
    request_header_timeout_s: float = field(default=10.0, metadata=_env(
        "how long a connection may take to deliver a request's whole head (request line "
        "and headers); past it the connection is closed", lo=0.1, hi=3600))
    request_body_idle_s: float = field(default=60.0, metadata=_env(
        "how long the server may wait for the next bytes of a request body it is reading "
        "(time the server does not read, e.g. while a command's stdin is full, does not "
        "count); past it the request ends: 408 `request_timeout`, or the connection is "
        "closed if the answer had begun", lo=0.1, hi=24 * 3600))
    stdin_body_idle_s: float = field(default=3600.0, metadata=_env(
        "the same bound for a raw stdin body (`chaser exec`'s piped stdin): a pipe may be "
        "quiet for long (`tail -f log | chaser exec ...`), and these streams are capped "
        "per tenant (`stdin_streams_per_tenant`)", lo=0.1, hi=7 * 24 * 3600))
    stdin_streams_per_tenant: int = field(default=64, metadata=_env(
        "raw `application/octet-stream` stdin bodies one tenant may stream at once (429 "
        "`too_many_stdin_streams` past it)", lo=1))
    warm_pool: int = field(default=2, metadata=_env(
        "started sandboxes kept ready for ephemeral runs (each used once)", lo=0, hi=64))
    # Terminals (docs/pty.md).
    pty_grace_s: int = field(default=300, metadata=_env(
        "how long a terminal nobody is attached to keeps running before its whole process "
        "tree is ended", lo=0, hi=7 * 24 * 3600))
    pty_scrollback_bytes: int = field(default=256 * 1024, metadata=_env(
        "what a reattaching client is sent of a terminal's past output (its log keeps "
        "more, readable by offset)", lo=1024, hi=64 * 1024 * 1024))
    pty_allowed_origins: list[str] = field(default_factory=list, metadata=_env(
        "origins (scheme://host[:port]) whose pages may open terminals; a WebSocket "
        "upgrade with another Origin header is refused (403); the server's own origin "
        "is always allowed, and clients that send no Origin (non-browsers) are not "
        "checked (comma-separated)", form="list"))
    allowed_hosts: list[str] = field(default_factory=list, metadata=_env(
        "host names (beside IP addresses, localhost, the bind host and the machine's "
        "own name) browsers may reach the console and terminals by: the console's pages "
        "and WebSocket upgrades carrying an Origin that name another Host are refused "
        "(403, DNS rebinding); `.example.com` admits its subdomains, `*` any name "
        "(comma-separated)", form="list"))
    # Images (docs/images.md).
    image_cache_mb: int | None = field(default=None, metadata=_env(
        "what pulled images may take on disk together; least recently used unused ones "
        "make room [default: a quarter of the data dir's filesystem]", lo=64))
    max_image_mb: int = field(default=8192, metadata=_env(
        "one image's size, compressed and unpacked (413 `image_too_large` past it)", lo=1))
    image_pull_timeout_s: int = field(default=1800, metadata=_env(
        "how long one pull may take", lo=1))
    registry_mirrors: list[str] = field(default_factory=list, metadata=_env(
        "mirrors tried first for Docker Hub images, as Docker's registry-mirrors "
        "(comma-separated URLs)", form="list"))
    allowed_registries: list[str] = field(default_factory=list, metadata=_env(
        "the only registries (HOST[:PORT], docker.io for Docker Hub) images may be pulled "
        "from; empty: any (comma-separated)", form="list"))
    insecure_registries: list[str] = field(default_factory=list, metadata=_env(
        "registries (HOST:PORT) reached over plain HTTP; loopback ones always are "
        "(comma-separated)", form="list"))
    registry_auth_file: Path | None = field(default=None, metadata=_env(
        "credentials per registry, in the format of Docker's config.json (`auths`); "
        "never shown to clients or sandboxes", form="path"))
    # The web console (docs/console.md).
    console_dir: Path | None = field(default=None, metadata=_env(
        "the built web console served at /console (scripts/install.sh builds it) "
        "[default: console/dist in the source tree]", form="path"))

    # Jobs (docs/jobs.md).
    job_workers: int = field(default=8, metadata=_env(
        "jobs running at once on this server (the worker pool)", lo=1, hi=1024))
    job_workers_per_queue: int | None = field(default=None, metadata=_env(
        "jobs of one queue running at once on this server [default: job_workers]", lo=1))
    max_running_jobs_per_tenant: int | None = field(default=None, metadata=_env(
        "jobs of one tenant running at once, all servers together [default: job_workers x "
        "tenant_share, at least 1]", lo=1))
    max_kept_jobs_per_tenant: int = field(default=10_000, metadata=_env(
        "finished jobs kept per tenant (the oldest are forgotten first; all are forgotten "
        "after log_retention_s)", lo=10))
    max_queued_jobs_per_tenant: int = field(default=1000, metadata=_env(
        "queued and running jobs one tenant may have (429 past it)", lo=1))
    max_schedules_per_tenant: int = field(default=100, metadata=_env(
        "schedules one tenant may have", lo=1))
    job_default_timeout_s: int = field(default=3600, metadata=_env(
        "how long a job's command (or pipeline step) may run when its request sets no "
        "timeout_ms: a worker is never held forever", lo=1, hi=24 * 3600))
    job_lease_s: int = field(default=30, metadata=_env(
        "how long a claimed job stays this server's without a renewal (renewed every "
        "third of it); after that another server may take it over", lo=3, hi=3600))
    job_webhook_hosts: list[str] = field(default_factory=list, metadata=_env(
        "the only hosts (HOST or HOST:PORT) job webhooks may call; empty: none "
        "(comma-separated)", form="list"))

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from `CHASER_*` environment variables, then explicit overrides.

        Raises SettingError naming the variable and the expected form.
        """
        s = cls()
        env = os.environ
        if env.get("CHASER_DATA_DIR"):
            s.data_dir = Path(env["CHASER_DATA_DIR"])
        s.admin_key = env.get("CHASER_API_KEY") or None
        for f in fields(cls):
            if not f.metadata.get("env"):
                continue
            name = f"CHASER_{f.name.upper()}"
            raw = env.get(name)
            if raw:
                setattr(s, f.name, _parse(name, raw, f.type, f.metadata))
        for key, override in overrides.items():
            if override is not None:
                setattr(s, key, Path(str(override)) if key == "data_dir" else override)
        return s

    def set_from_flag(self, assignment: str) -> None:
        """Apply `chaser server --set NAME=VALUE` (the same settings as CHASER_NAME)."""
        name, sep, raw = assignment.partition("=")
        table = {f.name: f for f in fields(Settings) if f.metadata.get("env")}
        f = table.get(name.strip().lower().replace("-", "_"))
        if not sep or f is None:
            raise SettingError(f"--set {assignment!r}: expected NAME=VALUE with NAME one of "
                               f"{', '.join(sorted(table))}")
        setattr(self, f.name, _parse(f"--set {f.name}", raw, f.type, f.metadata))

    @staticmethod
    def variables() -> dict[str, str]:
        """Every `CHASER_*` setting and what it means (the docs test reads this)."""
        return {f"CHASER_{f.name.upper()}": str(f.metadata["help"])
                for f in fields(Settings) if f.metadata.get("env")}

    # -- derived ------------------------------------------------------------------------

    def share(self, total: int) -> int:
        return max(1, math.floor(total * self.tenant_share))

    @property
    def file_ops_tenant_cap(self) -> int:
        """File operations one tenant may run at once."""
        return self.file_ops_per_tenant or self.share(self.file_ops_total)

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
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"


def _parse(name: str, raw: str, kind: object, meta: object) -> int | float | list[str] | Path:
    """`raw` as the setting's type, in its range; SettingError naming `name` otherwise."""
    assert isinstance(meta, dict) or hasattr(meta, "get")
    if meta.get("form") == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if meta.get("form") == "path":
        return Path(raw)
    as_float = "float" in str(kind)
    form = "a number" if as_float else "a whole number"
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None:
        form += f" >= {lo:g}"
    if hi is not None:
        form += f" and <= {hi:g}"
    try:
        value: int | float = float(raw) if as_float else int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not valid: it takes {form}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (
            as_float and not math.isfinite(value)):
        raise SettingError(f"{name}={raw!r} is out of range: it takes {form}")
    return value
