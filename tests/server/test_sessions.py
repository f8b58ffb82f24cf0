"""Sessions: create, list, get, delete, idle timeout."""

from __future__ import annotations

import time

from tests.types import Tenant


def test_session_lifecycle(tenant: Tenant) -> None:
    c = tenant.client
    r = c.post("/v1/sessions", json={"limits": {"memory_mb": 256, "pids": 64, "cpus": 0.5},
                                     "idle_timeout_s": 60})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["id"].startswith("ses_") and s["status"] == "running" and s["workspace"] is None
    assert s["limits"] == {"memory_mb": 256, "pids": 64, "cpus": 0.5, "disk_mb": 10240}  # the default disk
    assert c.get(f"/v1/sessions/{s['id']}").json()["status"] == "running"
    assert [x["id"] for x in c.get("/v1/sessions").json()["sessions"]][0] == s["id"]
    bg = c.post(f"/v1/sessions/{s['id']}/exec", json={"command": "sleep 600", "background": True})
    assert bg.status_code == 201
    d = c.delete(f"/v1/sessions/{s['id']}")
    assert d.status_code == 200 and d.json()["status"] == "stopped"
    assert d.json()["end_reason"] == "deleted"
    cmd = c.get(f"/v1/sessions/{s['id']}/commands/{bg.json()['command_id']}").json()
    assert cmd["status"] == "killed" and cmd["signal"] == "KILL"
    r = c.post(f"/v1/sessions/{s['id']}/exec", json={"command": "true"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "session_stopped"
    assert c.get("/v1/sessions", params={"status": "running"}).json()["sessions"] == []
    assert c.delete(f"/v1/sessions/{s['id']}").status_code == 200  # idempotent


def test_memory_limit_is_applied(tenant: Tenant) -> None:
    c = tenant.client
    s = c.post("/v1/sessions", json={"limits": {"memory_mb": 64}}).json()
    r = c.post(f"/v1/sessions/{s['id']}/exec", json={
        "command": "python3 -c 'b = bytearray(300 * 1024 * 1024); print(len(b))'",
        "timeout_ms": 20000})
    assert r.json()["exit_code"] != 0 or r.json()["status"] == "killed"
    assert "314572800" not in r.json()["output"]


def test_idle_timeout_stops_session_but_not_while_running(tenant: Tenant) -> None:
    c = tenant.client
    idle = c.post("/v1/sessions", json={"idle_timeout_s": 1}).json()
    busy = c.post("/v1/sessions", json={"idle_timeout_s": 1}).json()
    c.post(f"/v1/sessions/{busy['id']}/exec", json={"command": "sleep 4", "background": True})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if c.get(f"/v1/sessions/{idle['id']}").json()["status"] == "stopped":
            break
        time.sleep(0.2)
    got = c.get(f"/v1/sessions/{idle['id']}").json()
    assert got["status"] == "stopped" and got["end_reason"] == "idle_timeout"
    assert c.get(f"/v1/sessions/{busy['id']}").json()["status"] == "running"


def test_workspace_session_and_files_survive_idle_stop(tenant: Tenant) -> None:
    c = tenant.client
    s = c.post("/v1/sessions", json={"workspace": "ws-idle", "idle_timeout_s": 1}).json()
    c.post(f"/v1/sessions/{s['id']}/exec", json={"command": "echo kept > f"})
    deadline = time.monotonic() + 10
    while c.get(f"/v1/sessions/{s['id']}").json()["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = c.post("/v1/exec", json={"workspace": "ws-idle", "command": "cat f"})
    assert r.json()["output"] == "kept\n"
    assert r.json()["session_id"] != s["id"]
