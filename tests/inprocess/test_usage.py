"""Sessions' usage on the wire: where it appears, its shape, and who may read it (the
fake runtime measures processes and bytes only; tests/server/test_usage.py has the real
figures)."""

from __future__ import annotations

from tests.inprocess.harness import Api, Tenant, error

FIELDS = {"cpu_ms", "memory_bytes", "memory_peak_bytes", "pids", "disk_bytes",
          "disk_limit_bytes", "sampled_at"}


async def test_a_running_session_carries_its_usage(tenant: Tenant, session_id: str) -> None:
    base = f"/v1/sessions/{session_id}"
    r = await tenant.client.post(f"{base}/exec", json={
        "command": "head -c 300000 /dev/zero > blob", "timeout_ms": 10000})
    assert r.json()["exit_code"] == 0, r.text
    await tenant.client.post(f"{base}/exec", json={"command": "sleep 30", "background": True})
    usage = (await tenant.client.get(base)).json()["usage"]
    assert set(usage) == FIELDS
    assert usage["pids"] >= 1  # the sleep's process group
    assert usage["disk_bytes"] >= 300000
    assert usage["sampled_at"].endswith("Z")
    assert usage["cpu_ms"] is None and usage["memory_bytes"] is None  # the fake has no cgroup


async def test_the_list_carries_usage_only_when_asked(tenant: Tenant, session_id: str) -> None:
    plain = (await tenant.client.get("/v1/sessions")).json()["sessions"]
    assert [s["usage"] for s in plain] == [None]
    r = await tenant.client.get("/v1/sessions", params={"usage": "true"})
    assert r.status_code == 200
    [listed] = r.json()["sessions"]
    assert listed["id"] == session_id and set(listed["usage"]) == FIELDS
    error(await tenant.client.get("/v1/sessions", params={"usage": "lots"}), 422,
          "invalid_request")


async def test_a_stopped_session_has_no_usage(tenant: Tenant, session_id: str) -> None:
    base = f"/v1/sessions/{session_id}"
    assert (await tenant.client.delete(base)).json()["usage"] is None
    assert (await tenant.client.get(base)).json()["usage"] is None
    listed = (await tenant.client.get("/v1/sessions?usage=true")).json()["sessions"]
    assert [(s["status"], s["usage"]) for s in listed] == [("stopped", None)]


async def test_another_tenants_usage_is_404(tenant: Tenant, other: Tenant,
                                           session_id: str) -> None:
    error(await other.client.get(f"/v1/sessions/{session_id}"), 404, "not_found")
    assert (await other.client.get("/v1/sessions?usage=true")).json()["sessions"] == []


async def test_tenant_usage_has_a_measured_part(api: Api, tenant: Tenant) -> None:
    report = (await tenant.client.get("/v1/usage")).json()
    assert report["measured"] is None  # nothing measured without cgroups
    everyone = (await api.admin.get("/v1/usage")).json()
    assert all("measured" in t for t in everyone["tenants"])
