"""Keys and tenancy: 401 without a valid key, 404 across tenants, admin-only key management."""

from __future__ import annotations

import httpx

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant


def test_healthz_needs_no_key(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_missing_or_wrong_key_is_401_json(server: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {server.admin_key}x"}):
        r = httpx.post(server.url + "/v1/exec", json={"command": "true"}, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(server.url + "/v1/sessions").status_code == 401


def test_tenants_cannot_see_each_other(new_tenant: NewTenant) -> None:
    a: Tenant = new_tenant("a")
    b: Tenant = new_tenant("b")
    s = a.client.post("/v1/sessions", json={}).json()["id"]
    bg = a.client.post(f"/v1/sessions/{s}/exec", json={"command": "cat", "background": True}).json()
    cid = bg["command_id"]
    base = f"/v1/sessions/{s}"
    for method, path, body in [
        ("GET", base, None), ("DELETE", base, None), ("POST", base + "/exec", {"command": "true"}),
        ("GET", base + "/commands", None), ("GET", f"{base}/commands/{cid}", None),
        ("GET", f"{base}/commands/{cid}/stream", None),
        ("POST", f"{base}/commands/{cid}/stdin", {"input": "x"}),
        ("POST", f"{base}/commands/{cid}/kill", {"signal": "KILL"}),
    ]:
        r = b.client.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert s not in [x["id"] for x in b.client.get("/v1/sessions").json()["sessions"]]
    # Same workspace name, different tenants: different files.
    a.client.post("/v1/exec", json={"workspace": "shared-name", "command": "echo A > who"})
    r = b.client.post("/v1/exec", json={"workspace": "shared-name", "command": "cat who || echo none"})
    assert "none" in r.json()["output"]
    # a's command is untouched.
    assert a.client.get(f"{base}/commands/{cid}").json()["status"] == "running"


def test_key_management(server: ServerProcess, client: httpx.Client, tenant: Tenant) -> None:
    assert tenant.client.get("/v1/keys").status_code == 403
    r = client.post("/v1/keys", json={"name": "ci"})
    key = r.json()
    assert r.status_code == 201 and key["key"].startswith("chs_") and key["tenant"] == key["id"]
    listed = client.get("/v1/keys").json()["keys"]
    assert any(k["id"] == key["id"] and "key" not in k or k.get("key") is None for k in listed)
    with server.client(key["key"]) as c:
        assert c.get("/v1/sessions").status_code == 200
        assert client.delete(f"/v1/keys/{key['id']}").json()["revoked_at"]
        assert c.get("/v1/sessions").status_code == 401
    assert client.delete("/v1/keys/key_nope").status_code == 404
