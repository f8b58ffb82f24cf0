"""Sessions and one-shot exec: `/v1/exec`, `/v1/sessions[/{id}[/exec]]`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response

from chaser.models import (
    BackgroundStarted,
    ExecRequest,
    ExecResult,
    Session,
    SessionCreate,
    SessionExecRequest,
    SessionList,
)
from chaser.server.deps import Caller, Core
from chaser.server.disconnect import unless_disconnected

router = APIRouter(prefix="/v1", tags=["exec"])


@router.post("/exec", response_model=ExecResult)
async def exec_once(req: ExecRequest, core: Core, caller: Caller, request: Request) -> ExecResult:
    """Run one foreground command in a workspace's sandbox or an ephemeral one; if the
    client disconnects first, the command's whole tree is ended."""
    return await unless_disconnected(request, core.executor.exec(caller.tenant, req))


@router.post("/sessions", status_code=201, response_model=Session, tags=["sessions"])
async def create_session(core: Core, caller: Caller, req: SessionCreate | None = None) -> Session:
    """Start a sandbox that later commands join."""
    return await core.sessions.create(caller.tenant, req or SessionCreate())


@router.get("/sessions", response_model=SessionList, tags=["sessions"])
async def list_sessions(core: Core, caller: Caller,
                        status: Literal["running", "stopped"] | None = None,
                        usage: bool = False) -> SessionList:
    """The caller's sessions, newest first; `usage=true` adds what each running one
    uses now (memory, CPU time, processes, disk), as `GET /v1/sessions/{id}` has it."""
    return SessionList(sessions=await core.sessions.list(caller.tenant, status, usage))


@router.get("/sessions/{session_id}", response_model=Session, tags=["sessions"])
async def get_session(session_id: str, core: Core, caller: Caller) -> Session:
    """One session; a running one with its `usage` now."""
    return await core.sessions.get(caller.tenant, session_id)


@router.delete("/sessions/{session_id}", response_model=Session, tags=["sessions"])
async def delete_session(session_id: str, core: Core, caller: Caller,
                         purge: bool = False) -> Session:
    """Kill everything in the session and stop it; `purge=true` also drops its commands'
    output at once (their records stay, with `output_start == output_size`)."""
    return await core.sessions.delete(caller.tenant, session_id, purge)


@router.post("/sessions/{session_id}/exec", response_model=ExecResult | BackgroundStarted,
             tags=["commands"])
async def session_exec(session_id: str, req: SessionExecRequest, core: Core, caller: Caller,
                       response: Response, request: Request) -> ExecResult | BackgroundStarted:
    """Run a command in the session: foreground (waits; ended if the client disconnects)
    or `background: true` (returns at once, runs on regardless)."""
    if req.background:
        response.status_code = 201
        return await core.executor.start(caller.tenant, session_id, req)
    return await unless_disconnected(request, core.executor.run(caller.tenant, session_id, req))
