"""Terminals over WebSockets (`GET /v1/sessions/{id}/pty`) and the tickets browsers open
them with. Every refusal (mode, key or ticket, session, Origin, Host) is answered on
plain HTTP with the JSON error shape before any upgrade; the frames are in docs/pty.md.
A terminal open with a key that gets revoked is closed (4401)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chaser.core.keys import Principal
from chaser.core.service import Chaser
from chaser.core.terminals import MODES, Attachment, TerminalOpen, Ticket
from chaser.errors import BadRequest, Forbidden, ServiceError, Unauthorized
from chaser.models import PtyTicket
from chaser.server.deps import Caller, Core
from chaser.server.errors import error_response, status_for
from chaser.server.hosts import host_allowed

router = APIRouter(tags=["terminals"])

MAX_CONTROL_FRAME = 64 * 1024
INPUT_CHUNK = 64 * 1024  # a large paste goes to the terminal in pieces, each awaited
FIRST_FRAME_TIMEOUT_S = 10.0
REVOKED_CLOSE = 4401  # the 4000s are the application's: 4401 mirrors HTTP's 401


@router.post("/v1/sessions/{session_id}/pty-ticket", response_model=PtyTicket, status_code=201)
async def pty_ticket(session_id: str, core: Core, caller: Caller) -> PtyTicket:
    """A single-use ticket (valid for a minute) that opens one terminal on this session:
    for browsers, which cannot send an Authorization header on a WebSocket."""
    await core.sessions.require_live(caller.tenant, session_id)
    ticket, ttl = core.terminals.ticket(caller.key_id, caller.tenant, session_id)
    return PtyTicket(ticket=ticket, expires_in_s=int(ttl),
                     url=f"/v1/sessions/{session_id}/pty?ticket={ticket}")


@router.websocket("/v1/sessions/{session_id}/pty")
async def pty(websocket: WebSocket, session_id: str) -> None:
    """A terminal on the session (see docs/pty.md for the frames)."""
    core: Chaser = websocket.app.state.core
    release = None
    ticket = websocket.query_params.get("ticket")
    taken = core.terminals.take(ticket) if ticket else None  # used up, refused or not
    try:
        req = _request(websocket)
        _check_origin(websocket, core)
        caller = await _caller(websocket, core, session_id, ticket, taken)
        tenant = caller.tenant
        release = core.terminals.reserve(tenant)  # every connection counts, from here
        attachment = None
        if not (req.mode == "exec" and req.command is None and req.pty_id is None):
            attachment = await core.terminals.open(tenant, session_id, req)
        else:
            await core.sessions.require_live(tenant, session_id)  # 404 before the upgrade
    except ServiceError as e:
        if release is not None:
            release()
        await websocket.send_denial_response(
            error_response(status_for(e), e.code, e.message, e.retry_after))
        return
    opened = [attachment] if attachment is not None else []
    try:
        with core.keys.connections.hold(caller.key_id) as revoked:
            await websocket.accept()
            work = asyncio.ensure_future(_run(websocket, core, tenant, session_id, req, opened))
            await _unless_revoked(websocket, work, revoked)
    except ServiceError as e:
        await _send_error(websocket, e)
        await _close(websocket, 1008)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        for att in opened:
            await att.detach()
        release()


async def _run(ws: WebSocket, core: Chaser, tenant: str, session_id: str, req: TerminalOpen,
               opened: list[Attachment]) -> None:
    """Serve the connection (`opened` holds its attachment, to detach however it ends)."""
    if not opened:  # exec mode, its command in the first frame
        opened.append(await _exec_from_first_frame(ws, core, tenant, session_id, req))
    await _serve(ws, opened[0])


async def _unless_revoked(ws: WebSocket, work: asyncio.Future[None],
                          revoked: asyncio.Event) -> None:
    """Await `work`; if the key is revoked first, stop it and close with 4401."""
    waiter = asyncio.ensure_future(revoked.wait())
    try:
        await asyncio.wait((work, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait((work,))
    if not work.cancelled():
        work.result()  # its own end, or its error
        return
    await _send_error(ws, Unauthorized("the API key was revoked; log in again", "key_revoked"))
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(REVOKED_CLOSE, "API key revoked")


def _request(ws: WebSocket) -> TerminalOpen:
    q = ws.query_params
    mode = q.get("mode", "human")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}", "invalid_mode")
    return TerminalOpen(mode=mode, cols=_int(q, "cols"), rows=_int(q, "rows"),
                        shell=q.get("shell") or None, cwd=q.get("cwd") or None,
                        command=q.get("command") or None, pty_id=q.get("pty_id") or None,
                        view=q.get("view", "false").lower() in ("1", "true", "yes"),
                        offset=_int(q, "from"))


def _int(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"{name} must be a whole number >= 0", "invalid_request")
    return int(raw)


def _check_origin(ws: WebSocket, core: Chaser) -> None:
    """A browser page may open a terminal only from the server's own origin or one the
    admin allowed, and only by a host name the server answers to (DNS rebinding): a
    page elsewhere must not drive a terminal with a user's ticket."""
    origin = ws.headers.get("origin")
    if origin is None:
        return  # not a browser (browsers always send Origin on a WebSocket)
    settings = core.settings
    if not host_allowed(ws.headers.get("host"), settings):
        raise Forbidden("this server is not reached by that host name (allowed_hosts)",
                        "host_not_allowed")
    if origin.rstrip("/") in (a.rstrip("/") for a in settings.pty_allowed_origins):
        return
    if urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower():
        return
    raise Forbidden(f"origin {origin[:200]!r} may not open terminals (pty_allowed_origins)",
                    "origin_not_allowed")


async def _caller(ws: WebSocket, core: Chaser, session_id: str, ticket: str | None,
                  taken: Ticket | None) -> Principal:
    """Who opens the terminal: the key of the ticket (if that key is still valid), or
    the Bearer key."""
    if ticket:
        grant = core.terminals.check(taken, session_id)
        caller = await core.keys.by_id(grant.key_id)
        if caller.tenant != grant.tenant:
            raise Unauthorized("the terminal ticket is no longer valid")
        return caller
    auth = ws.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else ""
    return await core.keys.authenticate(key or None)


async def _exec_from_first_frame(ws: WebSocket, core: Chaser, tenant: str, session_id: str,
                                 req: TerminalOpen) -> Attachment:
    try:
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
            first = await ws.receive()
    except TimeoutError:
        raise BadRequest("exec mode: no exec frame came", "missing_command") from None
    if first["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(first.get("code", 1000))
    msg = _control(first["text"]) if first.get("text") is not None else {}
    if msg.get("type") != "exec" or not isinstance(msg.get("command"), str):
        raise BadRequest('exec mode: the first frame must be {"type": "exec", "command": ...}',
                         "missing_command")
    cwd = msg.get("cwd") if isinstance(msg.get("cwd"), str) else req.cwd
    return await core.terminals.open(tenant, session_id, TerminalOpen(
        mode="exec", command=msg["command"], cwd=cwd))


async def _serve(ws: WebSocket, att: Attachment) -> None:
    await ws.send_text(json.dumps(att.hello))
    sender = asyncio.ensure_future(_send_frames(ws, att))
    try:
        await _receive(ws, att, sender)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _send_frames(ws: WebSocket, att: Attachment) -> None:
    async for frame in att.frames:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_text(json.dumps(frame))
            if frame.get("type") == "exit":
                await _close(ws, 1000)
                return


async def _receive(ws: WebSocket, att: Attachment, sender: asyncio.Future[None]) -> None:
    while not sender.done():
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        try:
            if msg.get("bytes") is not None:
                data: bytes = msg["bytes"]
                for i in range(0, len(data), INPUT_CHUNK):
                    await att.send(data[i:i + INPUT_CHUNK])
            elif msg.get("text") is not None:
                await _on_control(att, _control(msg["text"]))
        except ServiceError as e:
            await _send_error(ws, e)


def _control(text: str) -> dict[str, Any]:
    if len(text) > MAX_CONTROL_FRAME:
        raise BadRequest(f"a control frame is at most {MAX_CONTROL_FRAME} bytes", "frame_too_large")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser
        raise BadRequest("a text frame must be a JSON object", "invalid_frame") from None
    if not isinstance(msg, dict):
        raise BadRequest("a text frame must be a JSON object", "invalid_frame")
    return msg


async def _on_control(att: Attachment, msg: dict[str, Any]) -> None:
    kind = msg.get("type")
    if kind == "resize":
        att.resize(msg.get("cols"), msg.get("rows"))
    elif kind == "eof":
        att.eof()
    elif kind == "close":
        att.close_for_good()
    elif kind == "input" and isinstance(msg.get("data"), str):  # text input, for convenience
        try:
            data = msg["data"].encode()
        except UnicodeEncodeError:  # a lone surrogate: no bytes stand for it
            raise BadRequest("input data is not valid Unicode", "invalid_frame") from None
        await att.send(data)
    else:
        raise BadRequest("unknown control frame (resize, eof, close, input)", "invalid_frame")


async def _send_error(ws: WebSocket, e: ServiceError) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"type": "error", "code": e.code, "message": e.message}))


async def _close(ws: WebSocket, code: int) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(code)
