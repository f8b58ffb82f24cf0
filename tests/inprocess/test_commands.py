"""A session's commands: background runs, listing, paging, SSE streams, stdin, signals."""

from __future__ import annotations

import base64
import json
import signal

from tests.inprocess.harness import SseEvent, Tenant, error, eventually, parse_sse


async def start(t: Tenant, sid: str, command: str) -> str:
    r = await t.client.post(f"/v1/sessions/{sid}/exec",
                            json={"command": command, "background": True})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "running" and body["session_id"] == sid
    assert isinstance(body["pid"], int) and body["started_at"]
    return str(body["command_id"])


async def command(t: Tenant, sid: str, cid: str, query: str = "") -> dict[str, object]:
    r = await t.client.get(f"/v1/sessions/{sid}/commands/{cid}{query}")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def finished(t: Tenant, sid: str, cid: str) -> dict[str, object]:
    async def done() -> bool:
        return (await command(t, sid, cid))["status"] != "running"

    await eventually(done)
    return await command(t, sid, cid)


async def stream(t: Tenant, sid: str, cid: str, query: str = "",
                 headers: dict[str, str] | None = None) -> list[SseEvent]:
    r = await t.client.get(f"/v1/sessions/{sid}/commands/{cid}/stream{query}",
                           headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


def joined(events: list[SseEvent]) -> str:
    return "".join(json.loads(e.data)["data"] for e in events if e.event == "output")


async def test_background_command_list_and_get(tenant: Tenant, session_id: str) -> None:
    first = await start(tenant, session_id, "echo one")
    second = await start(tenant, session_id, "sleep 30")
    running = await command(tenant, session_id, second)
    assert (running["status"], running["background"], running["exit_code"]) == ("running", True, None)
    assert running["command"] == "sleep 30" and running["cwd"] == "/workspace"
    r = await tenant.client.get(f"/v1/sessions/{session_id}/commands")
    listed = r.json()["commands"]
    assert [c["id"] for c in listed] == [second, first]  # newest first
    assert all(c["output"] is None for c in listed)
    done = await finished(tenant, session_id, first)
    assert (done["status"], done["exit_code"], done["output"]) == ("exited", 0, "one\n")
    error(await tenant.client.get(f"/v1/sessions/{session_id}/commands/cmd_nope"), 404, "not_found")
    error(await tenant.client.get("/v1/sessions/ses_nope/commands"), 404, "not_found")


async def test_output_paging(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "printf abcdefghij")
    await finished(tenant, session_id, cid)
    page = await command(tenant, session_id, cid, "?from=3&limit=4")
    assert page["output"] == "defg"
    assert (page["output_offset"], page["next_offset"], page["output_size"]) == (3, 7, 10)
    assert page["output_truncated"] is True and page["output_start"] == 0
    rest = await command(tenant, session_id, cid, "?from=7")
    assert (rest["output"], rest["next_offset"], rest["output_truncated"]) == ("hij", 10, False)
    past = await command(tenant, session_id, cid, "?from=50")
    assert past["output"] == "" and past["output_size"] == 10
    r = await tenant.client.get(f"/v1/sessions/{session_id}/commands/{cid}?from=-1")
    error(r, 422, "invalid_request")


async def test_stream_events_and_exact_resume(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id,
                      "printf 'one\\n'; sleep 0.05; printf 'two\\n' >&2; sleep 0.05; "
                      "printf 'three\\n'; exit 4")
    events = await stream(tenant, session_id, cid)  # follows it to its end
    outputs = [e for e in events if e.event == "output"]
    assert events[-1].event == "exit" and [e.event for e in events].count("exit") == 1
    assert json.loads(events[-1].data) == {"status": "exited", "exit_code": 4, "signal": None,
                                           "end_reason": "exit"}
    full = "one\ntwo\nthree\n"
    assert joined(events) == full
    pos = 0
    for e in outputs:  # offsets are contiguous; each id is the offset past its chunk
        data = json.loads(e.data)
        assert data["offset"] == pos and data["stream"] in ("stdout", "stderr")
        pos += len(data["data"].encode())
        assert e.id == str(pos)
    assert any(json.loads(e.data)["stream"] == "stderr" for e in outputs)
    # Resume after the first event, by Last-Event-ID: nothing lost, nothing repeated.
    first_id = outputs[0].id
    assert first_id is not None
    resumed = await stream(tenant, session_id, cid, headers={"Last-Event-ID": first_id})
    assert joined(resumed) == full[int(first_id):] and resumed[-1].event == "exit"
    # `from` may start mid-chunk; Last-Event-ID overrides it.
    assert joined(await stream(tenant, session_id, cid, "?from=6")) == full[6:]
    assert joined(await stream(tenant, session_id, cid, "?from=1",
                               {"Last-Event-ID": "8"})) == full[8:]
    tail = await stream(tenant, session_id, cid, f"?from={len(full)}")
    assert [e.event for e in tail] == ["exit"]


async def test_stream_of_bytes_that_are_not_utf8(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "printf 'ok\\377\\376'")
    events = [e for e in await stream(tenant, session_id, cid) if e.event == "output"]
    raw = b"".join(base64.b64decode(json.loads(e.data).get("data_b64") or "")
                   or json.loads(e.data)["data"].encode() for e in events)
    assert raw == b"ok\xff\xfe"
    assert any("data_b64" in json.loads(e.data) for e in events)


async def test_stdin_pipe(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "cat; echo end")
    url = f"/v1/sessions/{session_id}/commands/{cid}/stdin"
    r = await tenant.client.post(url, json={"input": "q\n"})
    assert r.json() == {"ok": True, "bytes": 2}
    r = await tenant.client.post(url, json={"input": "é", "eof": True})
    assert r.json() == {"ok": True, "bytes": 2}
    done = await finished(tenant, session_id, cid)
    assert (done["exit_code"], done["output"]) == (0, "q\néend\n")
    error(await tenant.client.post(url, json={"input": "late"}), 409, "command_finished")
    error(await tenant.client.post(url, json={"inputs": "x"}), 422, "invalid_request")


async def test_stdin_closed_is_409_while_running(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "sleep 30")
    url = f"/v1/sessions/{session_id}/commands/{cid}/stdin"
    assert (await tenant.client.post(url, json={"eof": True})).json()["bytes"] == 0
    error(await tenant.client.post(url, json={"input": "x"}), 409, "command_finished")
    # A foreground command's stdin is /dev/null unless given: it reads EOF at once.
    r = await tenant.client.post(f"/v1/sessions/{session_id}/exec",
                                 json={"command": "cat; echo eof"})
    assert r.json()["output"] == "eof\n"


async def test_kill_signals_the_whole_group(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "sleep 30 & echo $! > child; wait")
    r = await tenant.client.post(f"/v1/sessions/{session_id}/exec",
                                 json={"command": "while [ ! -s child ]; do sleep 0.01; done; cat child"})
    child = int(r.json()["output"])  # a host pid: the fake runtime's processes are the host's
    r = await tenant.client.post(f"/v1/sessions/{session_id}/commands/{cid}/kill",
                                 json={"signal": "SIGTERM"})
    killed = r.json()
    assert r.status_code == 200
    assert (killed["status"], killed["signal"], killed["end_reason"]) == ("killed", "TERM", "signal")

    async def child_gone() -> bool:  # gone, or a zombie nobody reaped yet
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    await eventually(child_gone)


async def test_kill_forms_and_errors(tenant: Tenant, session_id: str) -> None:
    base = f"/v1/sessions/{session_id}/commands"
    for sig, name in ((None, "TERM"), ("kill", "KILL"), (int(signal.SIGHUP), "HUP"), ("15", "TERM")):
        cid = await start(tenant, session_id, "sleep 30")
        url = f"{base}/{cid}/kill"
        r = await (tenant.client.post(url) if sig is None
                   else tenant.client.post(url, json={"signal": sig}))
        assert (r.json()["status"], r.json()["signal"]) == ("killed", name), r.text
    cid = await start(tenant, session_id, "sleep 30")
    for bad in ("NOPE", 0, 999, "SIG"):
        r = await tenant.client.post(f"{base}/{cid}/kill", json={"signal": bad})
        error(r, 400, "invalid_signal")
    assert (await command(tenant, session_id, cid))["status"] == "running"
    await tenant.client.post(f"{base}/{cid}/kill", json={"signal": "KILL"})
    error(await tenant.client.post(f"{base}/{cid}/kill"), 409, "command_finished")
    error(await tenant.client.post(f"{base}/cmd_nope/kill"), 404, "not_found")



async def test_stdin_takes_bytes(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "od -An -tx1")
    url = f"/v1/sessions/{session_id}/commands/{cid}/stdin"
    r = await tenant.client.post(url, json={"data_b64": base64.b64encode(b"x\xff").decode()})
    assert r.json() == {"ok": True, "bytes": 2}
    r = await tenant.client.post(url, content=b"\x00y", params={"eof": "true"},
                                 headers={"Content-Type": "application/octet-stream"})
    assert r.json() == {"ok": True, "bytes": 2}
    done = await finished(tenant, session_id, cid)
    assert str(done["output"]).split() == ["78", "ff", "00", "79"]
    error(await tenant.client.post(url, content=b"late",
                                   headers={"Content-Type": "application/octet-stream"}),
          409, "command_finished")
    error(await tenant.client.post(url, json={"data_b64": "%%%"}), 422, "invalid_request")
    error(await tenant.client.post(url, json={"data_b64": "eA==", "input": "x"}), 422,
          "invalid_request")
    error(await tenant.client.post(url, content=b"{nope"), 400, "invalid_json")
    r = await tenant.client.post(f"/v1/sessions/{session_id}/exec", json={
        "command": "od -An -tx1", "stdin_b64": base64.b64encode(b"\xfe\x00").decode()})
    assert r.json()["output"].split() == ["fe", "00"]
    error(await tenant.client.post(f"/v1/sessions/{session_id}/exec", json={
        "command": "cat", "stdin_b64": "eA==", "stdin": "x"}), 422, "invalid_request")


async def test_a_command_by_id_alone(tenant: Tenant, other: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "echo found")
    await finished(tenant, session_id, cid)
    r = await tenant.client.get(f"/v1/commands/{cid}")
    assert r.status_code == 200 and r.json()["session_id"] == session_id
    assert r.json()["output"] == "found\n"
    error(await other.client.get(f"/v1/commands/{cid}"), 404, "not_found")
    error(await tenant.client.get("/v1/commands/cmd_nope"), 404, "not_found")


async def test_a_reconnect_after_the_exit_event_is_204(tenant: Tenant, session_id: str) -> None:
    cid = await start(tenant, session_id, "echo bye")
    await finished(tenant, session_id, cid)
    url = f"/v1/sessions/{session_id}/commands/{cid}/stream"
    events = parse_sse((await tenant.client.get(url)).text)
    assert events[-1].event == "exit" and events[-1].id == "exit"
    again = await tenant.client.get(url, headers={"Last-Event-ID": "exit"})
    assert again.status_code == 204 and again.content == b""
    replay = await tenant.client.get(url, headers={"Last-Event-ID": "0"})
    assert parse_sse(replay.text)[-1].event == "exit"
