"""`/v1/workspaces`: list, get, delete (busy, force), and the disk quota's rules."""

from __future__ import annotations

from tests.inprocess.harness import Tenant, error


async def workspace_session(t: Tenant, name: str, **fields: object) -> str:
    r = await t.client.post("/v1/sessions", json={"workspace": name, **fields})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_list_and_get(tenant: Tenant, other: Tenant) -> None:
    assert (await tenant.client.get("/v1/workspaces")).json() == {"workspaces": []}
    sid = await workspace_session(tenant, "site")
    r = await tenant.client.post(f"/v1/sessions/{sid}/exec",
                                 json={"command": "head -c 100000 /dev/zero > blob"})
    assert r.json()["exit_code"] == 0
    listed = (await tenant.client.get("/v1/workspaces")).json()["workspaces"]
    assert [w["name"] for w in listed] == ["site"]
    ws = (await tenant.client.get("/v1/workspaces/site")).json()
    assert ws["session_id"] == sid and ws["disk_bytes"] >= 100000
    assert ws["created_at"] and ws["last_used_at"]
    error(await other.client.get("/v1/workspaces/site"), 404, "not_found")
    error(await other.client.delete("/v1/workspaces/site"), 404, "not_found")
    assert (await other.client.get("/v1/workspaces")).json() == {"workspaces": []}
    error(await tenant.client.get("/v1/workspaces/never"), 404, "not_found")
    await tenant.client.delete(f"/v1/sessions/{sid}")
    assert (await tenant.client.get("/v1/workspaces/site")).json()["session_id"] is None


async def test_delete_busy_force_and_files_gone(tenant: Tenant) -> None:
    sid = await workspace_session(tenant, "doomed")
    await tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": "echo x > f"})
    r = await tenant.client.delete("/v1/workspaces/doomed")
    assert sid in error(r, 409, "workspace_busy")
    r = await tenant.client.delete("/v1/workspaces/doomed?force=true")
    assert r.status_code == 200 and r.json()["name"] == "doomed"
    session = (await tenant.client.get(f"/v1/sessions/{sid}")).json()
    assert (session["status"], session["end_reason"]) == ("stopped", "workspace_deleted")
    error(await tenant.client.get("/v1/workspaces/doomed"), 404, "not_found")
    # The name can be used again, with none of the old files.
    sid = await workspace_session(tenant, "doomed")
    r = await tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": "ls -A"})
    assert r.json()["output"] == ""
    await tenant.client.delete(f"/v1/sessions/{sid}")
    r = await tenant.client.delete("/v1/workspaces/doomed")  # idle: no force needed
    assert r.status_code == 200


async def test_disk_grows_only_while_unused(tenant: Tenant) -> None:
    await workspace_session(tenant, "disk", limits={"disk_mb": 100})
    r = await tenant.client.post("/v1/sessions", json={"workspace": "disk",
                                                       "limits": {"disk_mb": 200}})
    error(r, 409, "workspace_busy")
    await workspace_session(tenant, "disk", limits={"disk_mb": 50})  # smaller: size kept
    for s in (await tenant.client.get("/v1/sessions?status=running")).json()["sessions"]:
        await tenant.client.delete(f"/v1/sessions/{s['id']}")
    await workspace_session(tenant, "disk", limits={"disk_mb": 200})  # unused: it grows
