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
WHY = {400: "Bad input (invalid_json, invalid_path, ...)", 401: "No key, or a wrong one",
       403: "Not allowed for this key (or for the sandbox's user)",
       404: "Unknown, or another tenant's", 405: "Method not allowed (see Allow)",
       409: "Wrong state (a stopped session, a finished command, ...)",
       413: "Body too large", 416: "Range past the end of the file",
       422: "Schema violation (details lists the fields)",
       429: "Over a limit (Retry-After)", 500: "A bug (logged on the server)",
       502: "A registry failed", 503: "No capacity (Retry-After)",
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
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            for status in statuses(path, method):
                responses[str(status)] = _error(status)
    _specifics(schema["paths"])
    return schema


def _specifics(paths: dict[str, Any]) -> None:
    """What the routes' signatures cannot say."""
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
    stream = paths.get("/v1/sessions/{session_id}/commands/{command_id}/stream", {}).get("get")
    if stream is not None:
        stream["responses"]["200"] = {
            "description": "Server-Sent Events: `event: output` (id: the offset just past "
                           "the chunk; data: OutputEvent), then `event: exit` (id: exit; "
                           "data: ExitEvent); `: ping` comments every 15 s while idle",
            "content": {"text/event-stream": {"schema": {"anyOf": [
                {"$ref": "#/components/schemas/OutputEvent"},
                {"$ref": "#/components/schemas/ExitEvent"}]}}}}


def install(app: FastAPI) -> None:
    """Serve `build(app)` at /openapi.json (built on first use, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
