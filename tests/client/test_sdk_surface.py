"""The SDK's public surface and its offline behaviour (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import chaser
import chaser.client
from chaser.client import resolve_config


def test_public_exports_are_pinned() -> None:
    assert set(chaser.__all__) == {
        "APIError", "AsyncClient", "AsyncCommandHandle", "AsyncCommandStream",
        "AsyncSessionHandle", "AuthenticationError", "ChaserError", "Client",
        "CommandHandle", "CommandStream", "ConflictError", "ConnectionError", "ExecResult",
        "ExitEvent", "NotFoundError", "OutputEvent", "PermissionDeniedError",
        "RateLimitError", "ServerError", "ServerUnavailable", "SessionHandle",
        "StreamError", "TimeoutError", "ValidationError", "__version__",
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
    for cls in (chaser.APIError, chaser.ConnectionError, chaser.TimeoutError,
                chaser.StreamError):
        assert issubclass(cls, chaser.ChaserError)


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
