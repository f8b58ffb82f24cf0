"""The OpenAPI schema as the contract, and the one error shape on every route."""

from __future__ import annotations

import json
import re

from chaser.server.openapi import api_routes
from tests.inprocess.harness import Api, Tenant, error

ERROR_REF = {"$ref": "#/components/schemas/Error"}
JSON_RPC_REF = {"$ref": "#/components/schemas/JsonRpcError"}


async def test_every_operation_documents_its_errors(api: Api) -> None:
    schema = (await api.admin.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(schema)
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            if not path.startswith("/v1/"):
                continue
            for status in ("400", "401", "422", "429", "503"):
                # MCP's protocol errors are JSON-RPC's (401 and the limits are ours)
                want = JSON_RPC_REF if path == "/v1/mcp" and status == "400" else ERROR_REF
                assert responses[status]["content"]["application/json"]["schema"] == want, \
                    (method, path, status)
            if "{" in path:
                assert "404" in responses, (method, path)
    exec_op = schema["paths"]["/v1/sessions/{session_id}/exec"]["post"]["responses"]
    assert exec_op["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "BackgroundStarted")
    health = schema["paths"]["/healthz"]["get"]["responses"]["200"]
    assert health["content"]["application/json"]["schema"]["$ref"].endswith("Health")
    stream = schema["paths"]["/v1/sessions/{session_id}/commands/{command_id}/stream"]["get"]
    events = stream["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    components = schema["components"]["schemas"]
    named = {components[e["$ref"].rsplit("/", 1)[1]]["properties"]["event"]["const"]: e
             for e in events}
    assert set(named) == {"output", "exit"}
    exit_event = components[named["exit"]["$ref"].rsplit("/", 1)[1]]
    assert exit_event["properties"]["id"] == {"const": "exit"}
    assert exit_event["properties"]["data"]["contentSchema"]["$ref"].endswith("/ExitEvent")
    assert "204" in stream["responses"]


async def test_every_route_answers_the_error_shape(api: Api, tenant: Tenant) -> None:
    """Each route, with no key and with unknown ids, answers the one error shape with a
    status its operation documents."""
    anon = api.client()
    paths = (await api.admin.get("/openapi.json")).json()["paths"]
    seen = 0
    for route in api_routes(api.app.routes):
        if not route.path.startswith("/v1/") or not route.include_in_schema:
            continue
        seen += 1
        path = re.sub(r"\{[^}]+\}", "nope", route.path)
        for method in sorted(route.methods or ()):
            error(await anon.request(method, path), 401, "unauthorized")
            r = await tenant.client.request(method, path, params={"path": "x"})
            documented = paths[route.path.replace(":path}", "}")][method.lower()]["responses"]
            assert str(r.status_code) in documented, (method, path, r.status_code)
            if r.status_code >= 400 and route.path != "/v1/mcp":  # MCP answers JSON-RPC errors
                body = r.json()
                assert set(body) == {"error"} and set(body["error"]) <= {
                    "code", "message", "details"}, (method, path, body)
    assert seen > 40  # every route was tried


async def test_types_are_strict_and_405_says_allow(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    error(await c.post(f"/v1/sessions/{session_id}/exec",
                       json={"command": "true", "background": 0}), 422, "invalid_request")
    error(await c.post(f"/v1/sessions/{session_id}/exec",
                       json={"command": "true", "timeout_ms": "5"}), 422, "invalid_request")
    r = await c.patch("/v1/sessions")
    error(r, 405, "method_not_allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


async def test_an_admin_gets_422_for_a_non_boolean_admin(api: Api) -> None:
    error(await api.admin.post("/v1/keys", json={"admin": 0}), 422, "invalid_request")
