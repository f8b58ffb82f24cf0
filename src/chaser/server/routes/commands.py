"""A session's commands: list, get (with output paging), stream, stdin, kill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from chaser.models import Command, CommandList, ExitEvent, KillRequest, StdinRequest, StdinResult
from chaser.server.bodies import OCTET, RawBody, is_raw, json_body
from chaser.server.connections import BODY_IDLE_EXTENSION
from chaser.server.deps import Caller, Core
from chaser.server.events import sse_response

router = APIRouter(prefix="/v1/sessions/{session_id}/commands", tags=["commands"])

EXIT_ID = "exit"  # the exit event's id: a reconnect after it is told 204, nothing more
STDIN_BODY = {"requestBody": {"content": {
    "application/json": {"schema": StdinRequest.model_json_schema()},
    OCTET: {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("", response_model=CommandList)
async def list_commands(session_id: str, core: Core, caller: Caller) -> CommandList:
    """Every command of the session, newest first (without output)."""
    return CommandList(commands=await core.executor.list_commands(caller.tenant, session_id))


@router.get("/{command_id}", response_model=Command)
async def get_command(session_id: str, command_id: str, core: Core, caller: Caller,
                      from_: Annotated[int, Query(alias="from", ge=0)] = 0,
                      limit: Annotated[int, Query(ge=0, le=16 * 1024 * 1024)] = 1024 * 1024) -> Command:
    """Status and output bytes [from, from+limit)."""
    return await core.executor.get_command(caller.tenant, session_id, command_id, from_, limit)


@router.get("/{command_id}/stream", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       204: {"description": "The exit event was delivered already"}})
async def stream_command(session_id: str, command_id: str, core: Core, caller: Caller,
                         from_: Annotated[int, Query(alias="from", ge=0)] = 0,
                         interval_ms: Annotated[int, Query(ge=0, le=60_000)] = 0,
                         last_event_id: Annotated[str | None, Header()] = None) -> Response:
    """Output as Server-Sent Events from `from` (or Last-Event-ID), then `exit`.

    Output is pushed as soon as it is read; `interval_ms` is accepted as the bound on
    coalescing, which is never longer than one read. The `exit` event's id is `exit`: a
    client reconnecting after it (as EventSource does) gets 204, the SSE way to stop.
    """
    if last_event_id and last_event_id.strip() == EXIT_ID:
        done = await core.executor.get_command(caller.tenant, session_id, command_id, 0, 0)
        if done.status != "running":
            return Response(status_code=204)
    if last_event_id and last_event_id.strip().isdigit() and len(last_event_id.strip()) <= 20:
        from_ = int(last_event_id.strip())
    events = await core.executor.events(caller.tenant, session_id, command_id, from_)

    async def sse() -> AsyncIterator[ServerSentEvent]:
        async for ev in events:
            if isinstance(ev, ExitEvent):
                yield ServerSentEvent(event="exit", id=EXIT_ID, data=ev.model_dump_json())
                return
            yield ServerSentEvent(event="output", id=str(ev.end),
                                  data=ev.model_dump_json(exclude_none=True))

    return sse_response(core, caller, sse())


@router.post("/{command_id}/stdin", response_model=StdinResult, openapi_extra=STDIN_BODY)
async def send_stdin(session_id: str, command_id: str, core: Core, caller: Caller,
                     request: Request, eof: bool = False) -> StdinResult:
    """Write to the command's stdin: JSON `{"input"}` (text) or `{"data_b64"}` (bytes),
    `"eof": true` to close; or a raw `application/octet-stream` body of any length,
    streamed at the command's pace, closed afterwards with `?eof=true`."""
    if is_raw(request):
        set_idle = request.scope.get("extensions", {}).get(BODY_IDLE_EXTENSION)
        if set_idle is not None:  # (absent in-process: no connection to bound)
            set_idle(core.settings.stdin_body_idle_s)
        body = RawBody(request)
        return await core.executor.stdin_stream(caller.tenant, session_id, command_id,
                                                body.chunks(), eof, body.gone)
    req = await json_body(request, StdinRequest)
    return await core.executor.stdin(caller.tenant, session_id, command_id, req)


@router.post("/{command_id}/kill", response_model=Command)
async def kill_command(session_id: str, command_id: str, core: Core, caller: Caller,
                       req: KillRequest | None = None) -> Command:
    """Signal the command's whole process group (default TERM)."""
    sig = req.signal if req is not None else "TERM"
    return await core.executor.kill(caller.tenant, session_id, command_id, sig)
