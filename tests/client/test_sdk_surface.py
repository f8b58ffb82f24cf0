"""The SDK's public surface and its offline behaviour (no server needed)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import chaser
import chaser.client
from chaser.client import resolve_config


def test_public_exports_are_pinned() -> None:
    assert set(chaser.__all__) == {
        "APIError", "AsyncClient", "AsyncCommandHandle", "AsyncCommandStream",
        "AsyncPty", "AsyncSessionHandle", "AuthenticationError", "ChaserError", "Client",
        "CommandHandle", "CommandStream", "ConflictError", "ConnectionError", "ExecResult",
        "ExitEvent", "NotFoundError", "OutputEvent", "PermissionDeniedError",
        "Pty", "RateLimitError", "ServerError", "ServerUnavailable", "SessionHandle",
        "StreamError", "TimeoutError", "UnsafeArchiveError", "ValidationError", "__version__",
    }
    for name in chaser.__all__:
        assert getattr(chaser, name) is getattr(chaser.client, name)
    for name in chaser.client.__all__:
        assert hasattr(chaser.client, name)
    assert chaser.__version__ == "0.1.0"


def test_error_tree() -> None:
    for cls in (chaser.AuthenticationError, chaser.NotFoundError, chaser.ConflictError,
                chaser.ValidationError, chaser.RateLimitError, chaser.ServerUnavailable,
                chaser.PermissionDeniedError, chaser.ServerError):
        assert issubclass(cls, chaser.APIError)
    for base in (chaser.APIError, chaser.ConnectionError, chaser.TimeoutError,
                 chaser.StreamError):
        assert issubclass(base, chaser.ChaserError)


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('api_url = "http://file:1"\napi_key = "file-key"\n')
    monkeypatch.setenv("CHASER_CONFIG", str(cfg))
    monkeypatch.delenv("CHASER_API_URL", raising=False)
    monkeypatch.delenv("CHASER_API_KEY", raising=False)
    assert resolve_config() .api_url == "http://file:1"
    assert resolve_config().api_key == "file-key"
    monkeypatch.setenv("CHASER_API_URL", "http://env:2/")
    monkeypatch.setenv("CHASER_API_KEY", "env-key")
    c = resolve_config()
    assert (c.api_url, c.api_key) == ("http://env:2", "env-key")
    c = resolve_config("http://arg:3", "arg-key")
    assert (c.api_url, c.api_key) == ("http://arg:3", "arg-key")
    monkeypatch.setenv("CHASER_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("CHASER_API_URL")
    assert resolve_config().api_url == "http://127.0.0.1:8080"


def test_bad_config_file_and_url(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("api_url = [unclosed")
    with pytest.raises(chaser.ChaserError, match="config file"):
        resolve_config(config_path=cfg)
    with pytest.raises(chaser.ChaserError, match="http://"):
        chaser.Client("localhost:8080", "k")


# The sync and async SDKs are twins by design: (sync class, async class) pairs.
TWINS = [
    (chaser.client.Client, chaser.client.AsyncClient),
    (chaser.client.SessionHandle, chaser.client.AsyncSessionHandle),
    (chaser.client.CommandHandle, chaser.client.AsyncCommandHandle),
    (chaser.client.CommandStream, chaser.client.AsyncCommandStream),
    (chaser.client.Pty, chaser.client.AsyncPty),
]
# What only one side has, on purpose: closing (close vs aclose) and the protocols each
# side's context manager and iterator need.
ONE_SIDED = {"close", "aclose", "__aenter__", "__aexit__", "__enter__", "__exit__",
             "__aiter__", "__anext__", "__iter__", "__next__"}


def _public(cls: type) -> dict[str, inspect.Signature | None]:
    out: dict[str, inspect.Signature | None] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or name in ONE_SIDED:
            continue
        out[name] = inspect.signature(member) if callable(member) else None
    return out


def _namespaces(obj: object) -> dict[str, type]:
    """Attribute namespaces such as `client.sessions`."""
    return {k: type(v) for k, v in vars(obj).items()
            if not k.startswith("_") and type(v).__module__.startswith("chaser.client")}


def _params(sig: inspect.Signature | None) -> list[tuple[str, object, object]]:
    if sig is None:
        return []
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize(("sync", "async_"), TWINS, ids=lambda c: c.__name__)
def test_sync_and_async_sdks_stay_twins(sync: type, async_: type) -> None:
    """Same methods with the same parameters on both sides, constructors included."""
    mine, theirs = _public(sync), _public(async_)
    assert set(mine) == set(theirs), set(mine) ^ set(theirs)
    for name in mine:
        assert _params(mine[name]) == _params(theirs[name]), name
    init = [inspect.signature(cls.__init__) for cls in (sync, async_)]  # type: ignore[misc]
    assert _params(init[0]) == _params(init[1])


def test_client_namespaces_stay_twins() -> None:
    """`client.sessions`, `.commands`, `.keys`, `.workspaces`: the same on both sides."""
    sync = chaser.Client("http://127.0.0.1:9", "k")
    async_ = chaser.AsyncClient("http://127.0.0.1:9", "k")
    spaces, async_spaces = _namespaces(sync), _namespaces(async_)
    assert set(spaces) == set(async_spaces)
    assert {"sessions", "commands", "keys", "workspaces"} <= set(spaces)
    for name, cls in spaces.items():
        mine, theirs = _public(cls), _public(async_spaces[name])
        assert set(mine) == set(theirs), (name, set(mine) ^ set(theirs))
        for method in mine:
            assert _params(mine[method]) == _params(theirs[method]), (name, method)
    sync.close()
