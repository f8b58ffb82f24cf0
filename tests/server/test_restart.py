"""Server restarts: state survives, running work is settled, nothing is left behind."""

from __future__ import annotations

import signal
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

import httpx

from chaser.runtime.agent_client import descendants

from tests.conftest import ServerProcess


def alive(pids: set[int]) -> set[int]:
    """Those still running. bwrap's outer process exits without reaping the namespace's
    init, which the host's init then reaps: a zombie for a moment, holding nothing."""
    running = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    running.add(p)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return running


def test_restart_keeps_workspaces_and_settles_running_commands(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        r = c.post("/v1/exec", json={"workspace": "keep", "command": "echo persisted > f; echo t > /tmp/t"})
        sid = r.json()["session_id"]
        bg = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 300", "background": True}).json()
        s2 = c.post("/v1/sessions", json={}).json()["id"]
        c.post(f"/v1/sessions/{s2}/exec", json={"command": "sleep 300 & sleep 301", "background": True})
    before = set(descendants(srv.proc.pid))  # type: ignore[union-attr]
    assert len(before) >= 6, "two sandboxes with their commands should be running"
    srv.stop(signal.SIGKILL)  # a crash: no chance to clean up
    deadline = time.monotonic() + 10
    while alive(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(before), "sandboxes must die with the server"
    srv.start()
    with srv.client() as c:
        r = c.post("/v1/exec", json={"workspace": "keep", "command": "cat f /tmp/t"})
        assert r.json()["output"] == "persisted\nt\n"
        assert r.json()["session_id"] != sid
        old = c.get(f"/v1/sessions/{sid}").json()
        assert old["status"] == "stopped" and old["end_reason"] == "server_restart"
        cmd = c.get(f"/v1/sessions/{sid}/commands/{bg['command_id']}").json()
        assert cmd["status"] == "killed" and cmd["end_reason"] == "server_restart"
        assert c.get(f"/v1/sessions/{s2}").json()["status"] == "stopped"
    # No cgroups of the old sandboxes remain.
    for ctrl in ("memory", "pids", "cpu"):
        root = Path("/sys/fs/cgroup") / ctrl / "chaser"
        if root.is_dir():
            assert not list(root.glob(f"*/{sid}"))


def test_graceful_stop_kills_sandboxes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        s = c.post("/v1/sessions", json={}).json()["id"]
        c.post(f"/v1/sessions/{s}/exec", json={"command": "sleep 300", "background": True})
    before = set(descendants(srv.proc.pid))  # type: ignore[union-attr]
    assert before
    srv.stop(signal.SIGTERM)
    # uvicorn re-raises the signal after a graceful shutdown, hence -15.
    assert srv.proc is not None and srv.proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in srv.log()
    time.sleep(0.5)
    assert not alive(before)


def test_first_start_generates_admin_key_file(tmp_root: Path) -> None:
    data = Path(tempfile.mkdtemp(dir=tmp_root)) / "data"
    data.parent.chmod(0o711)
    srv = ServerProcess(data_dir=data, admin_key=None).start()
    try:
        key_file = data / "admin.key"
        assert key_file.exists()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert str(key_file) in srv.log()
        key = key_file.read_text().strip()
        assert key not in srv.log()
        with srv.client(key) as c:
            assert c.get("/v1/sessions").status_code == 200
        db = sqlite3.connect(data / "chaser.db")
        stored = [row[0] for row in db.execute("SELECT hash FROM keys")]
        db.close()
        assert key not in stored and len(stored) == 1
        assert httpx.get(srv.url + "/v1/sessions", headers={"Authorization": "Bearer x"}).status_code == 401
    finally:
        srv.stop()
    # A second start keeps the same key and makes no new one.
    srv.start()
    try:
        with srv.client(key) as c:
            assert c.get("/v1/sessions").status_code == 200
    finally:
        srv.stop()
