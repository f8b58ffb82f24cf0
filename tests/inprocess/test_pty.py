"""The PTY route over the fake runtime (host terminals): refusals before the upgrade,
the frame protocol, agent-mode events, exec mode, tickets, viewers and reattach."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.inprocess.harness import Api, Tenant, WebSocket, WebSocketRefused

Frame = bytes | dict[str, Any] | None


async def frames_until(ws: WebSocket, done: Any, timeout: float = 10.0) -> list[Frame]:
    got: list[Frame] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        assert left > 0, got
        frame = await ws.receive(left)
        got.append(frame)
        if frame is None:
            break
    assert done(got), got
    return got


def text(frames: list[Frame]) -> str:
    return b"".join(f for f in frames if isinstance(f, bytes)).decode(errors="replace")


def kinds(frames: list[Frame], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if isinstance(f, dict) and f["type"] == kind]


async def open_pty(api: Api, tenant: Tenant, sid: str, query: str = "") -> tuple[WebSocket, dict[str, Any]]:
    ws = await api.websocket(f"/v1/sessions/{sid}/pty?{query}", tenant.key)
    hello = await ws.receive()
    assert isinstance(hello, dict) and hello["type"] == "hello"
    return ws, hello


async def refused(api: Api, path: str, key: str | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, str]:
    with pytest.raises(WebSocketRefused) as e:
        await api.websocket(path, key, headers)
    body = json.loads(e.value.body)
    assert set(body) == {"error"} and body["error"]["message"]
    return e.value.status, str(body["error"]["code"])


async def test_refusals_are_json_before_the_upgrade(api: Api, tenant: Tenant, other: Tenant,
                                                    session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/pty"
    assert await refused(api, path + "?mode=nope", tenant.key) == (400, "invalid_mode")
    assert await refused(api, path) == (401, "unauthorized")
    assert await refused(api, path, "chs_wrong") == (401, "unauthorized")
    assert await refused(api, path + "?ticket=pty_x") == (401, "unauthorized")
    assert await refused(api, path, other.key) == (404, "not_found")
    assert await refused(api, path + "?rows=5000", tenant.key) == (400, "invalid_size")
    assert await refused(api, path + "?shell=zsh", tenant.key) == (400, "invalid_shell")
    assert await refused(api, path + "?from=-1", tenant.key) == (400, "invalid_request")
    assert await refused(api, path, tenant.key, {"Origin": "https://evil.example"}) == (
        403, "origin_not_allowed")
    ws, _ = await open_pty(api, tenant, session_id, "mode=agent")  # own origin is fine
    await ws.close()
    same = await api.websocket(path, tenant.key, {"Origin": "http://test"})
    await same.close()


async def test_agent_mode_events_and_exit(api: Api, tenant: Tenant, session_id: str) -> None:
    ws, hello = await open_pty(api, tenant, session_id, "mode=agent")
    assert hello["mode"] == "agent" and (hello["cols"], hello["rows"]) == (200, 50)
    await ws.send(b"echo one; false\n")
    got = await frames_until(ws, lambda fs: kinds(fs, "command_end"))
    assert kinds(got, "command_start")[0]["command"] == "echo one; false"
    assert kinds(got, "command_end")[0]["exit_code"] == 1 and "one\r\n" in text(got)
    await ws.send({"type": "resize", "cols": 3, "rows": 0})
    assert kinds(await frames_until(ws, lambda fs: kinds(fs, "error")), "error")[0]["code"] == "invalid_size"
    await ws.send("{")
    assert kinds(await frames_until(ws, lambda fs: kinds(fs, "error")), "error")[0]["code"] == "invalid_frame"
    await ws.send(b"exit 9\n")
    got = await frames_until(ws, lambda fs: None in fs)
    assert kinds(got, "exit") == [{"type": "exit", "exit_code": 9, "signal": None, "status": "exited"}]
    rows = (await tenant.client.get(f"/v1/sessions/{session_id}/commands")).json()["commands"]
    assert rows[0]["id"] == hello["pty_id"] and rows[0]["kind"] == "pty"


async def test_exec_mode_with_stdin_and_eof(api: Api, tenant: Tenant, session_id: str) -> None:
    ws, hello = await open_pty(api, tenant, session_id, "mode=exec&command=cat")
    assert hello["mode"] == "exec"
    await ws.send(b"\x00\xffbytes")
    await ws.send({"type": "eof"})
    got = await frames_until(ws, lambda fs: None in fs)
    assert b"".join(f for f in got if isinstance(f, bytes)) == b"\x00\xffbytes"
    assert kinds(got, "exit")[0]["exit_code"] == 0
    first = await api.websocket(f"/v1/sessions/{session_id}/pty?mode=exec", tenant.key)
    await first.send({"type": "exec", "command": "echo framed"})
    got = await frames_until(first, lambda fs: None in fs)
    assert kinds(got, "hello") and b"framed\n" in got and kinds(got, "exit")[0]["exit_code"] == 0
    bad = await api.websocket(f"/v1/sessions/{session_id}/pty?mode=exec", tenant.key)
    await bad.send({"type": "resize", "cols": 1, "rows": 1})
    got = await frames_until(bad, lambda fs: None in fs)
    assert kinds(got, "error")[0]["code"] == "missing_command"


async def test_tickets_are_single_use_and_per_session(api: Api, tenant: Tenant, other: Tenant,
                                                      session_id: str) -> None:
    r = await tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket")
    assert r.status_code == 201
    url = r.json()["url"]
    ws = await api.websocket(url + "&mode=agent")
    hello = await ws.receive()
    assert isinstance(hello, dict) and hello["type"] == "hello"
    await ws.close()
    assert await refused(api, url) == (401, "unauthorized")
    assert (await other.client.post(f"/v1/sessions/{session_id}/pty-ticket")).status_code == 404
    theirs = (await other.client.post("/v1/sessions", json={})).json()["id"]
    ticket = (await tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket")).json()["ticket"]
    assert await refused(api, f"/v1/sessions/{theirs}/pty?ticket={ticket}") == (401, "unauthorized")


async def test_viewers_and_reattach(api: Api, tenant: Tenant, other: Tenant, session_id: str) -> None:
    ws, hello = await open_pty(api, tenant, session_id, "mode=agent")
    pty_id = hello["pty_id"]
    await ws.send(b"v=1; echo first\n")
    await frames_until(ws, lambda fs: kinds(fs, "command_end"))
    await ws.close()  # detached: the shell goes on
    viewer, vhello = await open_pty(api, tenant, session_id, f"pty_id={pty_id}&view=true&from=0")
    assert vhello["view"] is True and vhello["offset"] == 0
    replay = await frames_until(viewer, lambda fs: "first" in text(fs))
    assert "first" in text(replay)
    await viewer.send(b"echo nope\n")
    assert kinds(await frames_until(viewer, lambda fs: kinds(fs, "error")), "error")[0]["code"] == "read_only"
    assert await refused(api, f"/v1/sessions/{session_id}/pty?pty_id={pty_id}", other.key) == (
        404, "not_found")
    back, _ = await open_pty(api, tenant, session_id, f"pty_id={pty_id}")
    await back.send(b"echo v=$v\n")
    got = await frames_until(back, lambda fs: "v=1" in text(fs))
    assert "v=1" in text(got)
    seen = await frames_until(viewer, lambda fs: "v=1" in text(fs))
    assert "v=1" in text(seen)
    await back.send({"type": "close"})
    assert kinds(await frames_until(back, lambda fs: None in fs), "exit")[0]["signal"] == "KILL"
    await asyncio.wait_for(viewer.close(), 10)


async def test_outstanding_tickets_are_bounded_per_tenant(api: Api) -> None:
    flood = await api.new_tenant("ticket-flood")
    sid = (await flood.client.post("/v1/sessions", json={})).json()["id"]
    for _ in range(100):
        assert (await flood.client.post(f"/v1/sessions/{sid}/pty-ticket")).status_code == 201
    over = await flood.client.post(f"/v1/sessions/{sid}/pty-ticket")
    assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_tickets"
    assert int(over.headers["retry-after"]) > 0
    calm = await api.new_tenant("ticket-calm")
    calm_sid = (await calm.client.post("/v1/sessions", json={})).json()["id"]
    assert (await calm.client.post(f"/v1/sessions/{calm_sid}/pty-ticket")).status_code == 201
