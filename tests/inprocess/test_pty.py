"""The PTY route over the fake runtime (host terminals): refusals before the upgrade,
the frame protocol, agent-mode events, exec mode, tickets, viewers and reattach."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from chaser.core import terminal, terminals
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


async def test_clients_are_bounded_per_terminal_and_per_tenant(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    me = await api.new_tenant("crowd")
    sid = (await me.client.post("/v1/sessions", json={})).json()["id"]
    monkeypatch.setattr(terminal, "MAX_CLIENTS", 3)
    ws, hello = await open_pty(api, me, sid, "mode=agent")
    viewers = [await api.websocket(f"/v1/sessions/{sid}/pty?pty_id={hello['pty_id']}&view=true",
                                   me.key) for _ in range(2)]
    for v in viewers:
        await v.receive()  # hello: each is attached once it follows
    path = f"/v1/sessions/{sid}/pty?pty_id={hello['pty_id']}&view=true"
    assert await refused(api, path, me.key) == (429, "too_many_clients")
    await viewers[0].close()
    again = await api.websocket(path, me.key)  # a place came free
    monkeypatch.setattr(terminals, "MAX_ATTACHED_PER_TENANT", 3)
    assert await refused(api, f"/v1/sessions/{sid}/pty?mode=agent", me.key) == (
        429, "too_many_clients")
    other = await api.new_tenant("calm")
    other_sid = (await other.client.post("/v1/sessions", json={})).json()["id"]
    ok, _ = await open_pty(api, other, other_sid, "mode=agent")
    for conn in (ok, again, viewers[1], ws):
        await conn.close()
    fine, _ = await open_pty(api, me, sid, "mode=agent")  # places given back on close
    await fine.close()
    monkeypatch.setattr(terminals, "MAX_ATTACHED_PER_TENANT", 2)
    waiting = [await api.websocket(f"/v1/sessions/{sid}/pty?mode=exec", me.key) for _ in range(2)]
    assert await refused(api, f"/v1/sessions/{sid}/pty?mode=exec", me.key) == (
        429, "too_many_clients")  # exec sockets still waiting for their command count too
    for w in waiting:
        await w.close()


async def test_malformed_requests_and_frames_are_clear_errors(api: Api, tenant: Tenant,
                                                              session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/pty"
    for query in ("cols=\u00b2", "rows=\u2460", "from=\uff15", "cols=99999999999999999999"):
        assert (await refused(api, path + "?" + query, tenant.key))[0] == 400, query
    assert await refused(api, path + "?mode=exec&command=%00", tenant.key) == (400, "invalid_request")
    first = await api.websocket(path + "?mode=exec", tenant.key)
    await first.send(b"binary first")
    got = await frames_until(first, lambda fs: None in fs)
    assert kinds(got, "error")[0]["code"] == "missing_command"
    nul = await api.websocket(path + "?mode=exec", tenant.key)
    await nul.send({"type": "exec", "command": "echo \u0000"})
    got = await frames_until(nul, lambda fs: None in fs)
    assert kinds(got, "error")[0]["code"] == "invalid_request"
    cwd = await api.websocket(path + "?mode=exec", tenant.key)
    await cwd.send({"type": "exec", "command": "pwd", "cwd": "/tmp"})
    got = await frames_until(cwd, lambda fs: None in fs)  # the fake maps /tmp to a host dir
    assert any(isinstance(f, bytes) and f.endswith(b"/tmp\n") for f in got), got
    ws, _ = await open_pty(api, tenant, session_id, "mode=agent")
    await ws.send('{"a":' * 5000 + "1" + "}" * 5000)
    assert kinds(await frames_until(ws, lambda fs: kinds(fs, "error")), "error")[0]["code"] == "invalid_frame"
    await ws.send('{"type": "input", "data": "\\ud800"}')
    assert kinds(await frames_until(ws, lambda fs: kinds(fs, "error")), "error")[0]["code"] == "invalid_frame"
    await ws.send({"type": "input", "data": "echo still\n"})
    assert "still" in text(await frames_until(ws, lambda fs: "still" in text(fs)))
    await ws.close()


async def test_exec_mode_holds_input_back_instead_of_dropping_it(api: Api, tenant: Tenant,
                                                                 session_id: str) -> None:
    ws, _ = await open_pty(api, tenant, session_id, "mode=exec&command=sleep%201%3B%20wc%20-c")
    chunk = b"y" * 65536
    for _ in range(80):  # 5 MiB to a command that reads nothing for a second
        await ws.send(chunk)
    await ws.send({"type": "eof"})
    got = await frames_until(ws, lambda fs: None in fs, timeout=30)
    assert not kinds(got, "error"), kinds(got, "error")
    assert text(got).strip() == str(80 * 65536)


async def test_revoking_a_key_refuses_its_tickets_and_closes_its_terminals(
        api: Api, session_id: str, tenant: Tenant) -> None:
    second = await api.admin.post("/v1/keys", json={"name": "second", "tenant": tenant.id})
    doomed = api.client(second.json()["key"])
    ticket = (await doomed.post(f"/v1/sessions/{session_id}/pty-ticket")).json()["url"]
    ws, _ = await open_pty(api, Tenant(second.json()["key"], second.json()["id"], tenant.id,
                                       doomed), session_id, "mode=agent")
    kept, _ = await open_pty(api, tenant, session_id, "mode=agent")  # the tenant's other key
    assert (await api.admin.delete(f"/v1/keys/{second.json()['id']}")).status_code == 200
    got = await frames_until(ws, lambda fs: None in fs)
    assert kinds(got, "error")[-1]["code"] == "key_revoked"
    assert (ws.close_code, ws.close_reason) == (4401, "API key revoked")
    # A ticket taken before the revoke opens nothing after it.
    assert await refused(api, ticket) == (401, "unauthorized")
    await kept.send(b"echo still-here\n")
    assert "still-here" in text(await frames_until(kept, lambda fs: "still-here" in text(fs)))
    await kept.close()


async def test_a_refused_upgrade_uses_its_ticket_up(api: Api, tenant: Tenant,
                                                    session_id: str) -> None:
    async def url() -> str:
        r = await tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket")
        return str(r.json()["url"])

    first = await url()
    assert await refused(api, first, headers={"Origin": "https://evil.example"}) == (
        403, "origin_not_allowed")
    assert await refused(api, first) == (401, "unauthorized")
    second = await url()
    assert await refused(api, second + "&mode=root") == (400, "invalid_mode")
    assert await refused(api, second) == (401, "unauthorized")


async def test_browsers_must_name_a_host_the_server_answers_to(api: Api, tenant: Tenant,
                                                               session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/pty?mode=agent"
    rebound = {"host": "evil.example:8080", "Origin": "http://evil.example:8080"}
    assert await refused(api, path, tenant.key, rebound) == (403, "host_not_allowed")
    page = await tenant.client.get("/console/", headers={"host": "evil.example:8080"})
    assert page.status_code == 403 and page.json()["error"]["code"] == "host_not_allowed"
    for host in ("127.0.0.1:8080", "[::1]:8080", "localhost:8080", "box.localhost", "test"):
        ws = await api.websocket(path, tenant.key, {"host": host, "Origin": f"http://{host}"})
        await ws.close()
        assert (await tenant.client.get("/console/", headers={"host": host})).status_code != 403
    # Clients that are not browsers (no Origin: the CLI, SDKs) are not held to it.
    ws = await api.websocket(path, tenant.key, {"host": "evil.example"})
    await ws.close()
