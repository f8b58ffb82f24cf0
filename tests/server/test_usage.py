"""Sessions' and tenants' resource use, read from the kernel for real sandboxes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess
from tests.types import Json, Tenant

MIB = 1024 * 1024
# 100 MiB written (not only allocated), the CPU time it took, then asleep.
HOLD_MEMORY = ("python3 -c \"b = b'x' * (100 << 20); import time; time.sleep(120)\"")
BURN_CPU = ("python3 -c \"import time; t = time.process_time()\n"
            "while time.process_time() - t < 0.6: pass\"")


def usage_of(tenant: Tenant, sid: str) -> Json:
    r = tenant.client.get(f"/v1/sessions/{sid}")
    assert r.status_code == 200, r.text
    usage: Json = r.json()["usage"]
    assert usage is not None, r.text
    return usage


def wait_for(tenant: Tenant, sid: str, ok: Any, what: str, timeout: float = 30) -> Json:
    deadline = time.monotonic() + timeout
    while True:
        usage = usage_of(tenant, sid)
        if ok(usage):
            return usage
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s: {usage}")
        time.sleep(0.2)


def run(tenant: Tenant, sid: str, command: str) -> Json:
    r = tenant.client.post(f"/v1/sessions/{sid}/exec",
                           json={"command": command, "timeout_ms": 60000})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    body: Json = r.json()
    return body


def test_memory_cpu_and_processes_of_a_running_session(tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={"limits": {"memory_mb": 512}}).json()["id"]
    idle = usage_of(tenant, sid)
    assert idle["memory_bytes"] < 64 * MIB and idle["pids"] >= 1 and idle["cpu_ms"] >= 0
    r = tenant.client.post(f"/v1/sessions/{sid}/exec",
                           json={"command": HOLD_MEMORY, "background": True})
    assert r.status_code == 201, r.text
    held = wait_for(tenant, sid, lambda u: u["memory_bytes"] >= 100 * MIB, "100 MiB in use")
    assert held["memory_bytes"] < 512 * MIB  # its own, not the host's
    assert held["memory_peak_bytes"] >= held["memory_bytes"]
    assert held["pids"] >= 2  # the agent and the python holding the memory
    run(tenant, sid, BURN_CPU)
    # 0.6 s of CPU burnt (figures are at most a second old: read until they are newer)
    after = wait_for(tenant, sid, lambda u: u["cpu_ms"] - held["cpu_ms"] >= 550,
                     "the CPU time burnt", timeout=5)
    assert after["sampled_at"] > held["sampled_at"]
    # The list has the same figures when asked, and none otherwise.
    listed = {s["id"]: s for s in tenant.client.get(
        "/v1/sessions", params={"usage": "true"}).json()["sessions"]}
    assert listed[sid]["usage"]["memory_bytes"] >= 100 * MIB
    assert tenant.client.get("/v1/sessions").json()["sessions"][0]["usage"] is None
    # The tenant's sandboxes together hold at least this one's memory.
    measured = tenant.client.get("/v1/usage").json()["measured"]
    assert measured["memory_bytes"] >= 100 * MIB and measured["pids"] >= 2
    assert measured["cpu_ms"] >= after["cpu_ms"] - 50
    stopped = tenant.client.delete(f"/v1/sessions/{sid}").json()
    assert stopped["usage"] is None
    assert tenant.client.get(f"/v1/sessions/{sid}").json()["usage"] is None
    gone = tenant.client.get("/v1/usage").json()["measured"]
    assert gone["pids"] == 0 and gone["memory_bytes"] < 100 * MIB


def test_files_in_a_private_session_count_as_disk_and_memory(tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={"limits": {"disk_mb": 256}}).json()["id"]
    before = usage_of(tenant, sid)
    assert before["disk_limit_bytes"] == 256 * MIB
    run(tenant, sid, "head -c 30000000 /dev/urandom > /tmp/blob")
    after = wait_for(tenant, sid, lambda u: u["disk_bytes"] - before["disk_bytes"] >= 29e6,
                     "30 MB more on its tmpfs")
    assert after["memory_bytes"] - before["memory_bytes"] >= 25e6  # tmpfs is memory
    run(tenant, sid, "rm /tmp/blob")
    wait_for(tenant, sid, lambda u: u["disk_bytes"] - before["disk_bytes"] < 1e6,
             "the disk given back")


def test_workspace_disk_use_grows_with_its_files(tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={"workspace": "usage-ws",
                                                   "limits": {"disk_mb": 300}}).json()["id"]
    before = usage_of(tenant, sid)
    # The disk's own size (its filesystem's blocks), not the host's.
    assert 250 * MIB < before["disk_limit_bytes"] <= 300 * MIB
    run(tenant, sid, "head -c 40000000 /dev/urandom > /workspace/blob")
    after = wait_for(tenant, sid, lambda u: u["disk_bytes"] - before["disk_bytes"] >= 39e6,
                     "40 MB more on its disk", timeout=5)
    ws = tenant.client.get("/v1/workspaces/usage-ws").json()
    assert abs(ws["disk_bytes"] - after["disk_bytes"]) < 2 * MIB


def test_another_tenants_session_usage_is_404(tenant: Tenant, new_tenant: Any) -> None:
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    other: Tenant = new_tenant("other")
    r = other.client.get(f"/v1/sessions/{sid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert other.client.get("/v1/sessions", params={"usage": "true"}).json()["sessions"] == []
    assert other.client.get("/v1/usage").json()["measured"]["pids"] == 0


def test_a_sandbox_cannot_reach_its_cgroup(tenant: Tenant, session_id: str) -> None:
    """Its counters are read on the host from files it can neither see nor write."""
    out = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={"command": (
        "ls /sys/fs/cgroup 2>&1; mkdir -p /tmp/cg; mount -t cgroup -o memory none /tmp/cg; "
        "echo mount=$?; mount -t cgroup2 none /tmp/cg; echo mount2=$?; cat /proc/self/cgroup")
    }).json()["output"]
    assert "No such file" in out and "mount=0" not in out and "mount2=0" not in out, out
    assert "chaser" not in out  # its cgroup namespace hides the host's paths


def test_metrics_have_sandbox_totals(server: ServerProcess, tenant: Tenant,
                                     session_id: str) -> None:
    with server.client() as admin:
        text = admin.get("/metrics").text
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert found["chaser_sandbox_pids"] >= 1
    assert found["chaser_sandbox_memory_bytes"] > 0
    assert found["chaser_sandbox_cpu_seconds_total"] > 0
    assert not any("ses_" in line for line in text.splitlines())  # no series per session
