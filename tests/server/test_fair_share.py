"""Fair share: per-tenant limits, memory admission, usage, abandoned requests, settings."""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.types import Tenant


def own_server(tmp_root: Path, **env: str) -> ServerProcess:
    data = tmp_root / ("fair-" + secrets.token_hex(4)) / "data"
    data.parent.mkdir(mode=0o711)
    return ServerProcess(data_dir=data, extra_env=env).start()


@pytest.fixture
def small_server(tmp_root: Path) -> Iterator[ServerProcess]:
    """8 sandbox slots: a tenant's default share is 2."""
    srv = own_server(tmp_root, CHASER_MAX_SANDBOXES="8", CHASER_WARM_POOL="0")
    yield srv
    srv.stop()


def new_key(srv: ServerProcess, **body: Any) -> tuple[str, str]:
    with srv.client() as admin:
        r = admin.post("/v1/keys", json={"name": "t", **body})
        assert r.status_code == 201, r.text
        return str(r.json()["key"]), str(r.json()["id"])


def test_one_tenant_cannot_take_every_sandbox(small_server: ServerProcess) -> None:
    flooder = small_server.client(new_key(small_server)[0])
    other = small_server.client(new_key(small_server)[0])

    def run(_: int) -> httpx.Response:
        return flooder.post("/v1/exec", json={"ephemeral": True, "command": "sleep 2"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        flood = [pool.submit(run, i) for i in range(8)]
        time.sleep(0.8)
        t = time.monotonic()
        mine = other.post("/v1/exec", json={"ephemeral": True, "command": "echo mine"})
        assert mine.status_code == 200 and mine.json()["output"] == "mine\n", mine.text
        assert time.monotonic() - t < 5
        results = [f.result() for f in flood]
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 2 and codes.count(429) == 6, codes
    refused = next(r for r in results if r.status_code == 429)
    assert refused.headers["Retry-After"].isdigit()
    body = refused.json()["error"]
    assert body["code"] == "tenant_limit" and "max_sandboxes=2" in body["message"]


def test_sessions_count_against_the_same_share(small_server: ServerProcess) -> None:
    c = small_server.client(new_key(small_server)[0])
    assert c.post("/v1/sessions", json={}).status_code == 201
    assert c.post("/v1/sessions", json={}).status_code == 201
    r = c.post("/v1/sessions", json={})
    assert r.status_code == 429 and "max_s" in r.json()["error"]["message"], r.text
    r = c.post("/v1/exec", json={"ephemeral": True, "command": "true"})
    assert r.status_code == 429, r.text  # a one-shot sandbox is a sandbox too


def test_admins_set_limits_per_tenant(small_server: ServerProcess) -> None:
    key, key_id = new_key(small_server, limits={"max_sessions": 1})
    c = small_server.client(key)
    assert c.post("/v1/sessions", json={}).status_code == 201
    r = c.post("/v1/sessions", json={})
    assert r.status_code == 429 and "max_sessions=1" in r.json()["error"]["message"]
    with small_server.client() as admin:
        r = admin.patch(f"/v1/keys/{key_id}", json={"limits": {"max_sessions": 2,
                                                               "max_sandboxes": 3}})
        assert r.status_code == 200 and r.json()["limits"]["max_sessions"] == 2, r.text
        assert c.patch(f"/v1/keys/{key_id}", json={"limits": {}}).status_code == 403
    assert c.post("/v1/sessions", json={}).status_code == 201
    usage = c.get("/v1/usage").json()
    assert usage["usage"]["sessions"] == 2 and usage["usage"]["sandboxes"] == 2
    assert usage["limits"]["max_sandboxes"] == 3 and usage["tenants"] is None
    with small_server.client() as admin:
        everyone = admin.get("/v1/usage").json()
    assert any(t["usage"]["sessions"] == 2 for t in everyone["tenants"])
    assert everyone["server"]["limits"]["sandboxes"] == 8


def test_running_commands_are_limited_per_tenant(tmp_root: Path) -> None:
    srv = own_server(tmp_root, CHASER_MAX_COMMANDS_PER_TENANT="3")
    try:
        c = srv.client(new_key(srv)[0])
        sid = c.post("/v1/sessions", json={}).json()["id"]
        for _ in range(3):
            r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30",
                                                         "background": True})
            assert r.status_code == 201, r.text
        r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
        assert r.status_code == 429 and "max_commands=3" in r.text
    finally:
        srv.stop()


def test_memory_limits_are_admitted_against_host_memory(tmp_root: Path) -> None:
    meminfo = Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]
    host_mb = int(meminfo) // 1024
    # A budget of about 300 MiB, all of it open to one tenant.
    srv = own_server(tmp_root, CHASER_MEMORY_FRACTION=f"{300 / host_mb:.6f}",
                     CHASER_MAX_MEMORY_MB_PER_TENANT="100000")
    try:
        c = srv.client(new_key(srv)[0])
        ok = c.post("/v1/sessions", json={"limits": {"memory_mb": 200}})
        assert ok.status_code == 201, ok.text
        r = c.post("/v1/sessions", json={"limits": {"memory_mb": 200}})
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_capacity", r.text
        assert "Retry-After" in r.headers
        c.delete(f"/v1/sessions/{ok.json()['id']}")
        assert c.post("/v1/sessions", json={"limits": {"memory_mb": 200}}).status_code == 201
    finally:
        srv.stop()


def test_a_tenants_processes_are_capped_together(tmp_root: Path) -> None:
    """Fork bombs in several sessions at their largest pids limit add up to no more than
    the tenant's share: the kernel holds the tenant's cgroup group to it."""
    srv = own_server(tmp_root, CHASER_MAX_PIDS_PER_TENANT="300")
    try:
        key, tenant_id = new_key(srv)  # a new key is a tenant of its own, named by its id
        bomber, other = srv.client(key), srv.client(new_key(srv)[0])
        group = "t_" + hashlib.sha256(tenant_id.encode()).hexdigest()[:16]
        sids = [bomber.post("/v1/sessions", json={"limits": {"pids": 16384}}).json()["id"]
                for _ in range(3)]
        assert bomber.get("/v1/usage").json()["limits"]["max_pids"] == 300
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            runs = [pool.submit(bomber.post, f"/v1/sessions/{sid}/exec", json={
                "command": "bomb(){ bomb | bomb & }; bomb; sleep 2", "shell": "bash",
                "timeout_ms": 2500}) for sid in sids]
            # The tenant's processes, as the kernel counts them in its group (one read of
            # one file: summing its sandboxes' lists read one after another over-counts).
            current = glob.glob(f"/sys/fs/cgroup/**/{group}/pids.current", recursive=True)
            assert current, group
            peak = 0
            for _ in range(15):
                time.sleep(0.1)
                peak = max(peak, int(Path(current[0]).read_text()))
            r = other.post("/v1/exec", json={"ephemeral": True, "command": "echo fine"})
            assert r.json()["output"] == "fine\n", r.text
            for f in runs:
                f.result()
        assert 100 < peak <= 300, peak  # the bombs ran, and together held to the share
        for sid in sids:  # back by itself once the bombs' trees are gone (429 until then)
            deadline = time.monotonic() + 15
            while True:
                r = bomber.post(f"/v1/sessions/{sid}/exec", json={"command": "echo back"})
                if r.status_code != 429 or time.monotonic() > deadline:
                    break
                assert r.json()["error"]["code"] == "pids_limit"
                time.sleep(0.2)
            assert r.json().get("output") == "back\n", r.text
    finally:
        srv.stop()


def test_a_bad_setting_names_itself_and_touches_nothing(tmp_root: Path) -> None:
    data = tmp_root / ("bad-" + secrets.token_hex(4))
    for value, words in (("x", "is not valid: it takes a whole number >= 8"),
                         ("3", "is out of range")):
        env = {**os.environ, "CHASER_PIDS": value}
        p = subprocess.run([sys.executable, "-m", "chaser", "server", "--port", "1",
                            "--data-dir", str(data)], env=env, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 2 and f"CHASER_PIDS='{value}' {words}" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr and not data.exists()
    p = subprocess.run([sys.executable, "-m", "chaser", "server", "--port", "1", "--data-dir",
                        str(data), "--set", "tenant_share=2"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "--set tenant_share='2' is out of range" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "chaser", "server", "--port", "1", "--data-dir",
                        str(data), "--set", "nope=1"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "NAME one of" in p.stderr and not data.exists(), p.stderr


def test_a_setting_by_flag_takes_effect(tmp_root: Path) -> None:
    data = tmp_root / ("flag-" + secrets.token_hex(4)) / "data"
    data.parent.mkdir(mode=0o711)
    srv = ServerProcess(data_dir=data)
    port = srv.port
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
    env["CHASER_API_KEY"] = srv.admin_key or ""
    env["CHASER_MAX_SANDBOXES"] = "100"
    proc = subprocess.Popen([sys.executable, "-m", "chaser", "server", "--port", str(port),
                             "--data-dir", str(data), "--set", "max_sandboxes=12"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with srv.client() as admin:
                    usage = admin.get("/v1/usage").json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert usage["server"]["limits"]["sandboxes"] == 12  # the flag won
        assert usage["limits"]["max_sandboxes"] == 3  # a quarter of it
    finally:
        proc.terminate()
        proc.wait(30)


# -- abandoned requests -------------------------------------------------------------------

def abandon(srv: ServerProcess, key: str, path: str, body: dict[str, Any]) -> None:
    """Send a request and hang up before it can be answered."""
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                  + raw)
        time.sleep(1.0)


def sleepers(marker: str, server: ServerProcess) -> list[str]:
    return [line for line in server.sandbox_processes() if marker in line]


@pytest.mark.parametrize("target", ["session", "workspace", "ephemeral"])
def test_an_abandoned_foreground_command_is_ended(server: ServerProcess, tenant: Tenant,
                                                  target: str) -> None:
    marker = f"40{secrets.randbelow(10**6)}.5"
    command = f"setsid sleep {marker} & sleep {marker}"
    sid = None
    body: dict[str, object]
    if target == "session":
        sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
        path, body = f"/v1/sessions/{sid}/exec", {"command": command}
    elif target == "workspace":
        path, body = "/v1/exec", {"workspace": "gone-" + marker[:6], "command": command}
    else:
        path, body = "/v1/exec", {"ephemeral": True, "command": command}
    abandon(server, tenant.key, path, body)
    deadline = time.monotonic() + 3
    while sleepers(marker, server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers(marker, server) == []
    if target == "ephemeral":
        return
    if sid is None:
        sid = next(s["id"] for s in tenant.client.get("/v1/sessions").json()["sessions"]
                   if s["workspace"] == body["workspace"])
    cmd = tenant.client.get(f"/v1/sessions/{sid}/commands").json()["commands"][0]
    assert cmd["status"] == "killed" and cmd["end_reason"] == "client_disconnected", cmd


def test_background_commands_outlive_their_request(server: ServerProcess, tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    marker = f"41{secrets.randbelow(10**6)}.5"
    abandon(server, tenant.key, f"/v1/sessions/{sid}/exec",
            {"command": f"sleep {marker}", "background": True})
    assert sleepers(marker, server), "a background command must not end with its request"


def test_a_tenants_workspace_disks_are_bounded_together(tmp_root: Path) -> None:
    srv = own_server(tmp_root, CHASER_MAX_DISK_MB_PER_TENANT="100")
    try:
        c = srv.client(new_key(srv)[0])
        a = c.post("/v1/sessions", json={"workspace": "a", "limits": {"disk_mb": 60}})
        assert a.status_code == 201, a.text
        r = c.post("/v1/sessions", json={"workspace": "b", "limits": {"disk_mb": 60}})
        assert r.status_code == 429 and "max_disk_mb=100" in r.text, r.text
        assert c.delete("/v1/workspaces/a", params={"force": "true"}).status_code == 200
        assert c.post("/v1/sessions", json={"workspace": "b",
                                            "limits": {"disk_mb": 60}}).status_code == 201
        assert c.get("/v1/usage").json()["limits"]["max_disk_mb"] == 100
    finally:
        srv.stop()
