"""The OpenAPI schema as the contract: every operation lists the statuses it can
answer, each error with the one error shape (a component), instead of FastAPI's default
422 body that this server never sends. Also the background exec's 201, the SSE events,
and `/healthz`'s shape. Built once, from the routes, by `install(app)`.
"""

from __future__ import annotations

from typing import Any

from collections.abc import Iterable, Iterator

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from chaser.models import BackgroundStarted, ExitEvent, OutputEvent

ERROR_REF = "#/components/schemas/Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "machine-readable, e.g. not_found"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object", "properties": {"field": {"type": "string"},
                                                 "message": {"type": "string"}}}},
        }}},
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["status", "version", "limits", "sandboxes"],
    "properties": {"status": {"type": "string", "enum": ["ok"]},
                   "version": {"type": "string"},
                   "limits": {"type": "object", "description": "what this host enforces"},
                   "sandboxes": {"type": "integer", "minimum": 0}},
}
JSON_RPC_ERROR: dict[str, Any] = {
    "type": "object", "required": ["jsonrpc", "error"],
    "description": "A JSON-RPC 2.0 error: MCP's own shape, not this API's Error",
    "properties": {"jsonrpc": {"const": "2.0"}, "id": {},
                   "error": {"type": "object", "required": ["code", "message"], "properties": {
                       "code": {"type": "integer"}, "message": {"type": "string"},
                       "data": {}}}},
}


def _sse_event(name: str, data: dict[str, Any], id_: dict[str, Any] | None,
               id_required: bool = True) -> dict[str, Any]:
    """One Server-Sent Event as OpenAPI 3.2 reads it: its name, id and JSON data."""
    props: dict[str, Any] = {"event": {"const": name}, "data": {
        "type": "string", "contentMediaType": "application/json", "contentSchema": data}}
    if id_ is not None:
        props["id"] = id_
    required = ["event", "data", *(["id"] if id_ is not None and id_required else [])]
    return {"type": "object", "required": required, "properties": props}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# Every stream's events, by component name: (event name, data schema, id schema).
SSE_EVENTS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None, bool]] = {
    "OutputSseEvent": ("output", _ref("OutputEvent"),
                       {"type": "string", "pattern": "^[0-9]+$",
                        "description": "The offset just past the chunk (resume with from=)"},
                       True),
    "ExitSseEvent": ("exit", _ref("ExitEvent"), {"const": "exit"}, True),
    # A job's events carry an id where a stream can resume from them (output mostly).
    **{f"Job{n.capitalize()}SseEvent": (n, {"type": "object"}, {
        "type": "string", "pattern": "^[0-9]+:[0-9]+:[0-9]+$",
        "description": "ATTEMPT:STEP:OFFSET (resume with from= or Last-Event-ID)"}, False)
       for n in ("attempt", "step", "output", "exit")},
    **{f"Pull{n.capitalize()}SseEvent": (n, {"type": "object"}, None, False)
       for n in ("resolving", "resolved", "progress", "unpacking", "done", "error")},
}
STREAMS = {  # path -> (the events it sends, what the description says)
    "/v1/sessions/{session_id}/commands/{command_id}/stream": (
        ["OutputSseEvent", "ExitSseEvent"],
        "Server-Sent Events: `output` (id: the offset just past the chunk; data: "
        "OutputEvent), then `exit` (id: exit; data: ExitEvent); a `: ping` comment every "
        "15 s while idle; 204 for a reconnect after the exit event was delivered"),
    "/v1/jobs/{job_id}/stream": (
        ["JobAttemptSseEvent", "JobStepSseEvent", "JobOutputSseEvent", "JobExitSseEvent"],
        "Server-Sent Events: `attempt`, `step`, `output` (ids ATTEMPT:STEP:OFFSET), then "
        "`exit`; a `: ping` comment every 15 s while idle"),
    "/v1/images/pull": (
        [f"Pull{n.capitalize()}SseEvent" for n in
         ("resolving", "resolved", "progress", "unpacking", "done", "error")],
        "With `Accept: text/event-stream`: the pull's progress as Server-Sent Events"),
}
WHY = {400: "Bad input (invalid_json, invalid_path, ...)", 401: "No key, or a wrong one",
       403: "Not allowed for this key (or for the sandbox's user)",
       404: "Unknown, or another tenant's", 405: "Method not allowed (see Allow)",
       409: "Wrong state (a stopped session, a finished command, a cwd the sandbox lacks, ...)",
       413: "Body too large", 416: "Range past the end of the file",
       422: "Schema violation (details lists the fields)",
       429: "Over a limit (Retry-After)", 500: "A bug (logged on the server)",
       502: "A registry, or a sandbox's file operation, failed", 503: "No capacity (Retry-After)",
       507: "Storage full: the sandbox's quota or the server's data dir"}


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute below `routes`: FastAPI 0.16x keeps included routers as wrappers
    (their routes are no longer copied into the app's list)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes)


def statuses(path: str, method: str) -> set[int]:
    """The error statuses an operation can answer (a superset is safe: it must never
    answer one that is not listed)."""
    if not path.startswith("/v1/"):
        return {401, 500} if path == "/metrics" else {500}
    out = {400, 401, 403, 405, 422, 429, 500, 503}
    if "{" in path:
        out |= {404, 409}
    if method in ("post", "put", "patch", "delete"):
        out |= {409, 413, 507}
    if path.startswith("/v1/images"):
        out |= {404, 409, 502}
    if path.endswith("/files") and method == "get":
        out.add(416)
    if "/files" in path or path.endswith("/archive"):  # the sandbox's operation failed
        out |= {502, 507}
    if path in ("/v1/exec", "/v1/mcp"):
        out |= {404, 409, 507}
    if method == "post":  # may start a sandbox on an image it pulls first
        out.add(502)
    return out


def _error(status: int) -> dict[str, Any]:
    return {"description": WHY.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


def build(app: FastAPI) -> dict[str, Any]:
    """The schema of `app`, with the error contract applied to every operation."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Error"] = ERROR_SCHEMA
    components["Health"] = HEALTH_SCHEMA
    for model in (OutputEvent, ExitEvent, BackgroundStarted):
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}")
    components["JsonRpcError"] = JSON_RPC_ERROR
    for name, (event, data, id_, id_required) in SSE_EVENTS.items():
        components[name] = _sse_event(event, data, id_, id_required)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                param["schema"] = _without_null(param.get("schema", {}))
            responses = op.setdefault("responses", {})
            for status in statuses(path, method):
                responses[str(status)] = _error(status)
    _specifics(schema["paths"])
    return schema


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's `null` choice for an optional one: a query
    string or a header has no null (leaving the parameter out is how to say it), and
    a client that sent the text `null` would be sending that string."""
    choices = schema.get("anyOf")
    if not choices or {"type": "null"} not in choices:
        return schema
    rest = [c for c in choices if c != {"type": "null"}]
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **outer}
    return {**outer, "anyOf": rest}


def _specifics(paths: dict[str, Any]) -> None:
    """What the routes' signatures cannot say."""
    submit = paths.get("/v1/jobs", {}).get("post")
    if submit is not None:  # a known idempotency_key answers the first job, 200
        submit["responses"]["200"] = {**submit["responses"]["201"],
                                      "description": "The job of this idempotency_key"}
    exec_op = paths.get("/v1/sessions/{session_id}/exec", {}).get("post")
    if exec_op is not None:
        exec_op["responses"]["201"] = {
            "description": "A background command started",
            "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/BackgroundStarted"}}}}
    health = paths.get("/healthz", {}).get("get")
    if health is not None:
        health["responses"]["200"]["content"] = {"application/json": {"schema": {
            "$ref": "#/components/schemas/Health"}}}
    for path, (events, description) in STREAMS.items():
        op = paths.get(path, {}).get("get") or paths.get(path, {}).get("post")
        if op is None:
            continue
        ok = op["responses"].setdefault("200", {"description": description})
        ok["description"] = description
        # Before OpenAPI 3.2, a text/event-stream's `schema` describes each event.
        ok.setdefault("content", {})["text/event-stream"] = {
            "schema": {"oneOf": [_ref(e) for e in events]}}
        if path.endswith("/commands/{command_id}/stream"):
            op["responses"]["204"] = {"description": "The exit event was already delivered "
                                                     "(the SSE spec's stop)"}
    _mcp(paths.get("/v1/mcp", {}).get("post"))
    imp = paths.get("/v1/images/import", {}).get("post")
    if imp is not None:
        imp["requestBody"] = {"required": True, "content": {"application/x-tar": {
            "schema": {"type": "string", "format": "binary"}}},
            "description": "A `docker save` tarball or an OCI archive, streamed"}


def _mcp(op: dict[str, Any] | None) -> None:
    """/v1/mcp speaks JSON-RPC: its protocol errors are JSON-RPC's, not the Error shape
    (401 and the limits in front of it are this API's)."""
    if op is None:
        return
    op["requestBody"]["content"]["application/json"]["schema"] = {
        "type": "object", "required": ["jsonrpc", "method"],
        "description": "A JSON-RPC 2.0 request or notification (MCP, streamable HTTP)",
        "properties": {"jsonrpc": {"const": "2.0"}, "method": {"type": "string"},
                       "id": {"type": ["string", "integer"]}, "params": {"type": "object"}}}
    for status in ("400", "404", "406", "415"):
        op["responses"][status] = {
            "description": "A JSON-RPC error (MCP's transport)",
            "content": {"application/json": {"schema": _ref("JsonRpcError")}}}


def install(app: FastAPI) -> None:
    """Serve `build(app)` at /openapi.json (built on first use, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
