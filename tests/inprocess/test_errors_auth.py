"""Health, authentication, and the one JSON error shape on every kind of failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chaser import __version__
from tests.inprocess.harness import Api, Tenant, error


async def test_healthz_needs_no_key(api: Api) -> None:
    r = await api.client().get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["limits"] == api.runtime.describe()
    assert body["limits"]["cgroup"] == "none"


async def test_missing_wrong_and_malformed_keys_are_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer chs_wrong"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer "}):
        r = await api.client().get("/v1/sessions", headers=headers)
        error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_admin_only_endpoints_are_403_for_tenants(tenant: Tenant) -> None:
    error(await tenant.client.get("/metrics"), 403, "forbidden")
    error(await tenant.client.post("/v1/keys", json={"name": "x"}), 403, "forbidden")
    error(await tenant.client.get("/v1/keys"), 403, "forbidden")
    error(await tenant.client.patch(f"/v1/keys/{tenant.key_id}", json={"limits": {}}),
          403, "forbidden")
    error(await tenant.client.delete(f"/v1/keys/{tenant.key_id}"), 403, "forbidden")


async def test_unknown_paths_and_methods(tenant: Tenant) -> None:
    assert "ses_nope" in error(await tenant.client.get("/v1/sessions/ses_nope"), 404, "not_found")
    error(await tenant.client.get("/v1/nothing-here"), 404, "not_found")
    error(await tenant.client.put("/v1/sessions"), 405, "method_not_allowed")
    error(await tenant.client.get("/v1/exec"), 405, "method_not_allowed")


async def test_schema_violations_are_422_with_details(tenant: Tenant) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"command": ""}, "command"),
        ({"command": "   "}, "command"),
        ({"command": "true", "bogus": 1}, "bogus"),
        ({"command": "true", "cwd": "relative"}, "cwd"),
        ({"command": "true", "timeout_ms": 0}, "timeout_ms"),
        ({"command": "true", "shell": "zsh"}, "shell"),
        ({"command": "true", "env": {"1BAD": "x"}}, "env"),
        ({"command": "true", "workspace": ".hidden"}, "workspace"),
        ({"command": "x" * (128 * 1024)}, "command"),
        ({"command": "true", "max_output_bytes": -1}, "max_output_bytes"),
    ]
    for body, field in cases:
        r = await tenant.client.post("/v1/exec", json=body)
        error(r, 422, "invalid_request")
        fields = [d["field"] for d in r.json()["error"]["details"]]
        assert any(f.startswith(field) for f in fields), (body, fields)
    # Both targets, or ephemeral false without a workspace: one model-level detail.
    for body in ({"command": "true", "workspace": "w", "ephemeral": True},
                 {"command": "true", "ephemeral": False}):
        error(await tenant.client.post("/v1/exec", json=body), 422, "invalid_request")
    error(await tenant.client.post("/v1/sessions", json={"idle_timeout_s": 0}), 422,
          "invalid_request")
    error(await tenant.client.post("/v1/sessions", json={"limits": {"memory_mb": 1}}), 422,
          "invalid_request")


async def test_lone_surrogate_is_422(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/exec", content=b'{"command": "echo \\ud800"}',
                                 headers={"Content-Type": "application/json"})
    error(r, 422, "invalid_request")


async def test_bad_json_and_non_objects(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/exec", content=b'{"command":',
                                 headers={"Content-Type": "application/json"})
    error(r, 400, "invalid_json")
    assert "details" not in r.json()["error"]
    r = await tenant.client.post("/v1/exec", content=b"[1]",
                                 headers={"Content-Type": "application/json"})
    assert error(r, 422, "invalid_request") == "request body must be a JSON object"


async def test_body_without_content_type_is_read_as_json(tenant: Tenant) -> None:
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        r = await tenant.client.post("/v1/exec", content=b'{"command": "echo ok"}',
                                     headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["output"] == "ok\n"


async def test_body_over_the_limit_is_413(api: Api, tenant: Tenant) -> None:
    limit = api.settings.max_body_bytes
    assert limit == 4 * 1024 * 1024  # what docs/api.md promises
    big = b'{"command": "' + b"x" * limit + b'"}'
    r = await tenant.client.post("/v1/exec", content=big,
                                 headers={"Content-Type": "application/json"})
    error(r, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    # Streamed (no Content-Length): counted as it arrives.
    r = await tenant.client.post("/v1/sessions", content=chunks(),
                                 headers={"Content-Type": "application/json"})
    error(r, 413, "payload_too_large")
