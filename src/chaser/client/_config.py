"""Where the SDK finds the server and the key.

Precedence, highest first: explicit arguments (or CLI flags), the `CHASER_API_URL` and
`CHASER_API_KEY` environment variables, the config file, the built-in default URL.

The config file is TOML at `$CHASER_CONFIG`, else `$XDG_CONFIG_HOME/chaser/config.toml`,
else `~/.config/chaser/config.toml`:

    api_url = "http://127.0.0.1:8080"
    api_key = "chs_..."
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._errors import ChaserError

DEFAULT_API_URL = "http://127.0.0.1:8080"
ENV_URL = "CHASER_API_URL"
ENV_KEY = "CHASER_API_KEY"
ENV_CONFIG = "CHASER_CONFIG"


@dataclass(frozen=True)
class Config:
    """The resolved connection settings (`api_key` may be None: /healthz needs none)."""

    api_url: str
    api_key: str | None
    config_path: Path | None = None


def default_config_path() -> Path:
    """The config file the SDK and CLI read when `CHASER_CONFIG` is not set."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chaser" / "config.toml"


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ChaserError(f"cannot read config file {path}: {e}") from None
    return {k: str(v) for k, v in data.items() if k in ("api_url", "api_key") and v}


def resolve_config(
    api_url: str | None = None,
    api_key: str | None = None,
    config_path: str | Path | None = None,
) -> Config:
    """Resolve URL and key from arguments, environment and config file, in that order."""
    if config_path is None and os.environ.get(ENV_CONFIG):
        config_path = os.environ[ENV_CONFIG]
    path = Path(config_path) if config_path is not None else default_config_path()
    file: dict[str, str] | None = None

    def from_file(name: str) -> str | None:
        nonlocal file
        if file is None:
            file = _read_config_file(path)
        return file.get(name)

    url = api_url or os.environ.get(ENV_URL) or from_file("api_url") or DEFAULT_API_URL
    key = api_key or os.environ.get(ENV_KEY) or from_file("api_key")
    return Config(api_url=url.rstrip("/"), api_key=key or None, config_path=path)
