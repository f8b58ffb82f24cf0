"""The SQLite store: schema, tenancy in queries, restart settlement, retention."""

from __future__ import annotations

from pathlib import Path

from chaser.store.base import KeyRecord
from chaser.store.sqlite import SQLiteStore
from tests.types import Json


def session_row(sid: str, tenant: str, status: str = "running", ended_at: str | None = None) -> Json:
    return {"id": sid, "tenant": tenant, "workspace": None, "image": "default", "status": status,
            "created_at": "2026-01-01T00:00:00.000Z", "ended_at": ended_at, "end_reason": None,
            "env": {"A": "1"}, "cwd": "/workspace", "limits": {"memory_mb": 64}, "idle_timeout_s": 60,
            "last_activity_at": None}


def command_row(cid: str, sid: str, tenant: str) -> Json:
    return {"id": cid, "session_id": sid, "tenant": tenant, "command": "true", "cwd": "/",
            "pid": 3, "background": True, "status": "running", "exit_code": None, "signal": None,
            "end_reason": None, "started_at": "2026-01-01T00:00:00.000Z", "ended_at": None}


async def test_rows_round_trip_and_stay_within_their_tenant(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db")
    await store.open()
    await store.insert_session(session_row("s1", "a"))
    await store.insert_command(command_row("c1", "s1", "a"))
    got = await store.get_session("a", "s1")
    assert got is not None and got["env"] == {"A": "1"} and got["limits"] == {"memory_mb": 64}
    assert await store.get_session("b", "s1") is None
    assert await store.get_command("b", "s1", "c1") is None
    cmd = await store.get_command("a", "s1", "c1")
    assert cmd is not None and cmd["background"] is True
    await store.close()


async def test_restart_settles_running_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db")
    await store.open()
    await store.insert_session(session_row("s1", "a"))
    await store.insert_command(command_row("c1", "s1", "a"))
    assert await store.end_all_running("2026-01-02T00:00:00.000Z") == (1, 1)
    cmd = await store.get_command("a", "s1", "c1")
    assert cmd is not None and cmd["status"] == "killed" and cmd["end_reason"] == "server_restart"
    await store.close()


async def test_forget_ended_before(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db")
    await store.open()
    await store.insert_session(session_row("old", "a", "stopped", "2026-01-01T00:00:00.000Z"))
    await store.insert_session(session_row("new", "a", "stopped", "2026-03-01T00:00:00.000Z"))
    await store.insert_session(session_row("live", "a"))
    await store.insert_command(command_row("c1", "old", "a"))
    assert await store.forget_ended_before("2026-02-01T00:00:00.000Z") == ["old"]
    assert await store.get_session("a", "old") is None
    assert await store.get_command("a", "old", "c1") is None
    assert await store.get_session("a", "new") is not None
    assert await store.get_session("a", "live") is not None
    await store.close()


async def test_keys_are_stored_as_hashes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db")
    await store.open()
    await store.add_key(KeyRecord("k1", "n", "abc123", "t", False, "2026-01-01T00:00:00.000Z"))
    assert (await store.key_by_hash("abc123")) is not None
    revoked = await store.revoke_key("k1", "2026-01-02T00:00:00.000Z")
    assert revoked is not None and revoked.revoked_at
    await store.close()
