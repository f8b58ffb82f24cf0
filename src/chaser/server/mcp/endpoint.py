"""`POST /v1/mcp`: the MCP Streamable HTTP endpoint, on the official `mcp` SDK.

The SDK's session manager runs stateless with JSON responses: every POST is one JSON-RPC
exchange, so a plain `curl` may call `tools/call` without `initialize` first, while
standard clients still `initialize` (2025 protocol versions) or `server/discover`
(2026-07-28) as they like. The route is a FastAPI route so it shares the API's Bearer
authentication and JSON errors; the authenticated caller travels to the tool handlers
in the ASGI scope (the SDK hands handlers the request it was given).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import mcp_types as types
from fastapi import APIRouter, Request
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chaser import __version__
from chaser.errors import ServiceError
from chaser.server.deps import Caller
from chaser.server.deps import Core
from chaser.server.mcp import schemas
from chaser.server.mcp.tools import TOOLS, ToolContext

log = logging.getLogger("chaser.mcp")

CALLER_SCOPE_KEY = "chaser.mcp.caller"
BOTH = b"application/json, text/event-stream"
INSTRUCTIONS = (
    "Chaser runs commands in Linux sandboxes. Use `terminal` to run a command and get its "
    "output and exit code; reuse the session_id it returns (or name a workspace) to keep "
    "state between calls. Use start_command/read_output/send_input/send_signal for "
    "long-running processes, read_file/write_file for files, list_sessions to find sandboxes."
)


class McpEndpoint:
    """The MCP server, its session manager and the FastAPI router that serves it."""

    def __init__(self) -> None:
        self.server: Server[Any] = Server(
            "chaser", version=__version__, instructions=INSTRUCTIONS,
            on_list_tools=_list_tools, on_call_tool=_call_tool,
            get_tool_input_schema=_input_schema)
        # No DNS-rebinding guard (security_settings=None): a self-hosted server is reached
        # by any IP or hostname, and every request needs a Bearer key a browser never adds.
        self.manager = StreamableHTTPSessionManager(self.server, json_response=True,
                                                    stateless=True, security_settings=None)
        self.router = APIRouter(prefix="/v1", tags=["mcp"])
        for path in ("/mcp", "/mcp/"):  # both, so neither answers a redirect
            self.router.add_api_route(
                path, self._endpoint, methods=["POST"], include_in_schema=path == "/mcp",
                summary="MCP Streamable HTTP endpoint (JSON-RPC 2.0)",
                description="See docs/mcp.md. Tools: " + ", ".join(TOOLS) + ".",
                openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "description": "A JSON-RPC 2.0 request"}}}}},
                responses={200: {"content": {"application/json": {}}}})

    def run(self) -> AbstractAsyncContextManager[None]:
        """The session manager's lifetime; enter it in the app's lifespan."""
        return self.manager.run()

    async def _endpoint(self, request: Request, core: Core, caller: Caller) -> Response:
        return _Delegate(self.manager.handle_request, ToolContext(core, caller.tenant))


class _Delegate(Response):
    """A response that hands the raw request to the SDK, with the caller in its scope."""

    def __init__(self, app: ASGIApp, caller: ToolContext) -> None:
        super().__init__()
        self.app = app
        self.caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(_normalise(scope, self.caller), receive, send)


def _normalise(scope: Scope, caller: ToolContext) -> Scope:
    """Let plain HTTP clients in: a missing Accept header means both kinds the SDK wants,
    and a body sent without (or with a form) Content-Type is read as JSON."""
    headers = [(k, v) for k, v in scope["headers"] if k not in (b"accept", b"content-type")]
    accept = b", ".join(v for k, v in scope["headers"] if k == b"accept").strip()
    ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"").strip()
    if not ctype or ctype.split(b";")[0].strip() == b"application/x-www-form-urlencoded":
        ctype = b"application/json"
    headers += [(b"accept", accept or BOTH), (b"content-type", ctype)]
    return {**scope, "headers": headers, CALLER_SCOPE_KEY: caller}


# -- handlers ---------------------------------------------------------------------------


def _tool(spec_name: str) -> types.Tool:
    spec = TOOLS[spec_name]
    return types.Tool(name=spec.name, title=spec.title, description=spec.description,
                      input_schema=schemas.input_schema(spec.args),
                      output_schema=schemas.output_schema(spec.result),
                      annotations=types.ToolAnnotations(title=spec.title, **spec.hints))


def _input_schema(name: str) -> Mapping[str, Any] | None:
    spec = TOOLS.get(name)
    return schemas.input_schema(spec.args) if spec else None


async def _list_tools(ctx: ServerRequestContext[Any],
                      params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_tool(name) for name in TOOLS])


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _invalid(name: str, exc: ValidationError) -> types.CallToolResult:
    problems = []
    for err in exc.errors()[:8]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{loc or 'arguments'}: {err.get('msg', 'invalid')}")
    return _error(f"invalid arguments for {name}: " + "; ".join(problems))


async def _call_tool(ctx: ServerRequestContext[Any],
                     params: types.CallToolRequestParams) -> types.CallToolResult:
    spec = TOOLS.get(params.name)
    if spec is None:
        raise MCPError(types.INVALID_PARAMS,
                       f"unknown tool {params.name!r}; tools: {', '.join(TOOLS)}")
    request = ctx.request
    caller = request.scope.get(CALLER_SCOPE_KEY) if isinstance(request, Request) else None
    if not isinstance(caller, ToolContext):  # every request comes through _Delegate
        raise MCPError(types.INTERNAL_ERROR, "request did not pass authentication")
    try:
        args = spec.args.model_validate(params.arguments or {})
    except ValidationError as exc:
        return _invalid(spec.name, exc)
    try:
        out = await spec.run(caller, args)
    except ValidationError as exc:  # a core request model refused a combination
        return _invalid(spec.name, exc)
    except ServiceError as exc:
        hint = "; call without session_id to start a new session" \
            if exc.code == "session_stopped" else ""
        return _error(f"error ({exc.code}): {exc.message}{hint}")
    except Exception:
        log.exception("MCP tool %s failed", spec.name)
        return _error("internal error (logged on the server)")
    return types.CallToolResult(content=[types.TextContent(text=t) for t in out.texts],
                                structured_content=out.data.model_dump(mode="json"))
