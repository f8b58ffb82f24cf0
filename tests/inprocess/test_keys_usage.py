"""Keys (admin), usage, metrics, and the limits that answer 429 and 503."""

from __future__ import annotations

import asyncio

from tests.inprocess.harness import Api, Tenant, error


async def test_key_lifecycle(api: Api) -> None:
    r = await api.admin.post("/v1/keys", json={"name": "ci", "limits": {"max_sandboxes": 8}})
    assert r.status_code == 201
    made = r.json()
    assert made["key"].startswith("chs_") and made["id"].startswith("key_")
    assert (made["name"], made["admin"], made["tenant"]) == ("ci", False, made["id"])
    assert made["limits"]["max_sandboxes"] == 8 and made["revoked_at"] is None
    listed = {k["id"]: k for k in (await api.admin.get("/v1/keys")).json()["keys"]}
    assert listed[made["id"]]["key"] is None  # the secret is shown only once
    assert listed[made["id"]]["name"] == "ci"

    r = await api.admin.patch(f"/v1/keys/{made['id']}",
                              json={"limits": {"max_sessions": 4, "max_pids": 2000}})
    assert r.status_code == 200
    limits = r.json()["limits"]
    assert (limits["max_sessions"], limits["max_pids"]) == (4, 2000)
    assert limits["max_sandboxes"] == 8  # a merge: fields left out keep their value
    own = r.json()["own_limits"]
    assert (own["max_sandboxes"], own["max_sessions"], own["max_memory_mb"]) == (8, 4, None)
    # null: back to the server's default (and shown as not set)
    r = await api.admin.patch(f"/v1/keys/{made['id']}", json={"limits": {"max_sandboxes": None}})
    assert r.json()["own_limits"]["max_sandboxes"] is None
    assert r.json()["limits"]["max_sandboxes"] != 8
    assert r.json()["own_limits"]["max_sessions"] == 4
    ci = api.client(made["key"])
    mine = (await ci.get("/v1/usage")).json()
    assert mine["tenant"] == made["tenant"] and mine["limits"]["max_sessions"] == 4

    r = await api.admin.delete(f"/v1/keys/{made['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    error(await ci.get("/v1/usage"), 401, "unauthorized")
    error(await api.admin.delete("/v1/keys/key_nope"), 404, "not_found")
    error(await api.admin.patch("/v1/keys/key_nope", json={"limits": {}}), 404, "not_found")
    error(await api.admin.patch(f"/v1/keys/{made['id']}", json={"limits": {"max_pids": 1}}),
          422, "invalid_request")
    error(await api.admin.post("/v1/keys", json={"nam": "typo"}), 422, "invalid_request")


async def test_keys_of_one_tenant_share_it(api: Api, tenant: Tenant) -> None:
    r = await api.admin.post("/v1/keys", json={"name": "second", "tenant": tenant.id})
    second = api.client(r.json()["key"])
    sid = (await tenant.client.post("/v1/sessions")).json()["id"]
    assert (await second.get(f"/v1/sessions/{sid}")).json()["id"] == sid


async def test_usage_counts_what_the_tenant_holds(api: Api, tenant: Tenant) -> None:
    empty = (await tenant.client.get("/v1/usage")).json()
    assert empty["usage"] == {"sandboxes": 0, "sessions": 0, "commands": 0, "memory_mb": 0}
    assert empty["tenants"] is None and empty["server"] is None
    sid = (await tenant.client.post("/v1/sessions", json={"limits": {"memory_mb": 512}})).json()["id"]
    await tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30",
                                                               "background": True})
    held = (await tenant.client.get("/v1/usage")).json()["usage"]
    assert held == {"sandboxes": 1, "sessions": 1, "commands": 1, "memory_mb": 512}
    everyone = (await api.admin.get("/v1/usage")).json()
    assert tenant.id in {t["tenant"] for t in everyone["tenants"]}
    assert everyone["server"]["usage"]["sessions"] >= 1
    # derived from the host (capacity.py) when not set
    assert everyone["server"]["limits"]["sandboxes"] == api.app.state.core.ledger.max_sandboxes
    await tenant.client.delete(f"/v1/sessions/{sid}")
    assert (await tenant.client.get("/v1/usage")).json()["usage"]["sandboxes"] == 0


async def test_tenant_limits_are_429_with_retry_after(api: Api) -> None:
    t = await api.new_tenant("limited", limits={"max_sessions": 1, "max_commands": 1})
    sid = (await t.client.post("/v1/sessions")).json()["id"]
    r = await t.client.post("/v1/sessions")
    assert "max_sessions=1" in error(r, 429, "tenant_limit")
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
    await t.client.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30",
                                                         "background": True})
    r = await t.client.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
    assert "max_commands=1" in error(r, 429, "tenant_limit")
    assert "retry-after" in r.headers

    async def limit(**limits: int) -> None:  # these only: the others null (the defaults)
        every = dict.fromkeys(("max_sandboxes", "max_sessions", "max_commands",
                               "max_memory_mb", "max_pids", "max_disk_mb"))
        r = await api.admin.patch(f"/v1/keys/{t.key_id}", json={"limits": {**every, **limits}})
        assert r.status_code == 200, r.text

    await limit(max_sandboxes=1)
    r = await t.client.post("/v1/exec", json={"command": "true"})
    assert "max_sandboxes=1" in error(r, 429, "tenant_limit")
    await t.client.delete(f"/v1/sessions/{sid}")
    await limit(max_memory_mb=100)
    r = await t.client.post("/v1/exec", json={"command": "true", "limits": {"memory_mb": 64}})
    assert r.status_code == 200
    r = await t.client.post("/v1/exec", json={"command": "true", "limits": {"memory_mb": 128}})
    assert "max_memory_mb=100" in error(r, 429, "tenant_limit")
    await limit(max_disk_mb=100)
    r = await t.client.post("/v1/sessions", json={"workspace": "big", "limits": {"disk_mb": 200}})
    assert "max_disk_mb=100" in error(r, 429, "tenant_limit")
    assert (await t.client.post("/v1/sessions", json={"workspace": "big",
                                                      "limits": {"disk_mb": 50}})).status_code == 201


async def test_metrics_for_admins(api: Api, tenant: Tenant) -> None:
    await tenant.client.post("/v1/exec", json={"command": "true"})
    r = await api.admin.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("chaser_sandboxes", "chaser_sessions", "chaser_running_commands",
                 "chaser_memory_limits_mb", "chaser_exec_seconds", "chaser_sandbox_start_seconds",
                 "chaser_refused_total", "chaser_data_disk_free_bytes", "chaser_output_log_bytes"):
        assert f"\n{name}" in r.text, name
    assert 'chaser_exec_seconds_count{kind="one_shot"}' in r.text
    error(await api.client().get("/metrics"), 401, "unauthorized")


async def test_server_capacity_is_503(api: Api) -> None:
    """Full is 503 `no_capacity` with Retry-After; one session's running commands are
    bounded (429 `too_many_commands`). The shared server's cap and settings are made
    small for the test (the core reads them live): a second app in this process would replace the
    first one's child watcher (see the report on `_watch_children_by_pidfd`)."""
    a = await api.new_tenant("a", limits={"max_sandboxes": 1000, "max_sessions": 1000})
    sid = (await a.client.post("/v1/sessions")).json()["id"]
    held = (await api.admin.get("/v1/usage")).json()["server"]["usage"]["sandboxes"]
    s, ledger = api.settings, api.app.state.core.ledger
    saved = ledger.max_sandboxes, s.max_running_commands_per_session
    ledger.max_sandboxes, s.max_running_commands_per_session = held, 1
    try:
        r = await a.client.post("/v1/exec", json={"command": "true"})
        assert f"capacity of {held} sandboxes" in error(r, 503, "no_capacity")
        assert r.headers["retry-after"].isdigit()
        await a.client.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30",
                                                             "background": True})
        r = await a.client.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
        error(r, 429, "too_many_commands")
        assert "retry-after" in r.headers
    finally:
        ledger.max_sandboxes, s.max_running_commands_per_session = saved
    metrics = (await api.admin.get("/metrics")).text
    assert 'chaser_refused_total{limit="server_sandboxes"}' in metrics


async def test_concurrent_limit_patches_each_keep_their_field(api: Api) -> None:
    made = (await api.admin.post("/v1/keys", json={"name": "racing"})).json()
    fields = {"max_sessions": 7, "max_commands": 9, "max_memory_mb": 700, "max_pids": 900,
              "max_sandboxes": 5}
    answers = await asyncio.gather(*(api.admin.patch(f"/v1/keys/{made['id']}", json={
        "limits": {name: value}}) for name, value in fields.items()))
    assert [r.status_code for r in answers] == [200] * len(fields)
    listed = {k["id"]: k for k in (await api.admin.get("/v1/keys")).json()["keys"]}
    own = listed[made["id"]]["own_limits"]
    assert {name: own[name] for name in fields} == fields  # none lost to another's write
