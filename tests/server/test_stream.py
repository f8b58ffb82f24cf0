"""SSE streaming: live output, exact resume, many clients, slow and vanished clients."""

from __future__ import annotations

import base64
import json
import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import httpx
from httpx_sse import connect_sse

from tests.conftest import ServerProcess
from tests.types import Json, Tenant


@dataclass
class Streamed:
    data: bytes
    last_id: int
    exit: Json | None
    events: list[Json]


def chunk_bytes(ev: Json) -> bytes:
    return base64.b64decode(ev["data_b64"]) if "data_b64" in ev else ev["data"].encode()


def stream(c: httpx.Client, sid: str, cid: str, start: int = 0, max_events: int | None = None,
           last_event_id: str | None = None) -> Streamed:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    url = f"/v1/sessions/{sid}/commands/{cid}/stream"
    out, last = bytearray(), start
    events: list[Json] = []
    with connect_sse(c, "GET", url, params={"from": start}, headers=headers) as es:
        assert es.response.headers["content-type"].startswith("text/event-stream")
        for sse in es.iter_sse():
            if sse.event == "exit":
                return Streamed(bytes(out), last, json.loads(sse.data), events)
            ev = json.loads(sse.data)
            assert ev["offset"] == last or not events, (ev["offset"], last)
            out += chunk_bytes(ev)
            last = int(sse.id)
            assert last == ev["offset"] + len(chunk_bytes(ev))
            events.append(ev)
            if max_events is not None and len(events) >= max_events:
                break
    return Streamed(bytes(out), last, None, events)


def bg(c: httpx.Client, sid: str, command: str) -> str:
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": command, "background": True})
    assert r.status_code == 201, r.text
    return str(r.json()["command_id"])


def test_document_curl_streams_and_ends_with_exit(server: ServerProcess, tenant: Tenant,
                                                  session_id: str) -> None:
    cid = bg(tenant.client, session_id, "for i in 1 2 3; do echo line $i; sleep 0.1; done; echo err >&2")
    out = subprocess.run(
        ["curl", "-N", "-sS",
         f"{server.url}/v1/sessions/{session_id}/commands/{cid}/stream?from=0&interval_ms=500",
         "-H", f"Authorization: Bearer {tenant.key}"],
        capture_output=True, text=True, timeout=20)
    text = out.stdout
    last = text.rstrip().split("\n\n")[-1].splitlines()
    assert "event: output" in text and "event: exit" in last and "id: exit" in last
    datas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    outputs = [d for d in datas if "stream" in d]
    assert "".join(d["data"] for d in outputs if d["stream"] == "stdout") == "line 1\nline 2\nline 3\n"
    assert [d["data"] for d in outputs if d["stream"] == "stderr"] == ["err\n"]
    assert datas[-1] == {"status": "exited", "exit_code": 0, "signal": None, "end_reason": "exit"}


def test_resume_at_random_offsets_is_byte_exact(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    cid = bg(c, session_id, "python3 -c \"import sys,time\nfor i in range(400):\n"
                            "    (sys.stdout if i % 3 else sys.stderr).write(f'{i} ' + 'é✓' * (i % 7) + '\\n')\n"
                            "    sys.stdout.flush(); sys.stderr.flush(); time.sleep(0.002)\"")
    # Read in pieces while it runs, reconnecting from the last id each time.
    got, pos, exit_ev = bytearray(), 0, None
    rng = random.Random(3)
    while exit_ev is None:
        part = stream(c, sid=session_id, cid=cid, start=pos, max_events=rng.randint(1, 8))
        got += part.data
        pos = part.last_id
        exit_ev = part.exit
    full = stream(c, session_id, cid)
    assert bytes(got) == full.data
    assert exit_ev == {"status": "exited", "exit_code": 0, "signal": None, "end_reason": "exit"}
    # Random offsets after the end: each tail matches the full log exactly.
    for _ in range(15):
        off = rng.randrange(len(full.data))
        tail = stream(c, session_id, cid, start=off)
        assert tail.data == full.data[off:]
    # Last-Event-ID takes precedence over from=.
    off = len(full.data) // 2
    assert stream(c, session_id, cid, start=0, last_event_id=str(off)).data == full.data[off:]


def test_output_written_while_nobody_listens_is_kept(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    cid = bg(c, session_id, "echo a; sleep 0.5; echo b; sleep 0.5; echo c")
    first = stream(c, session_id, cid, max_events=1)
    assert first.data == b"a\n"
    time.sleep(1.3)  # b and c are written while disconnected
    rest = stream(c, session_id, cid, start=first.last_id)
    assert rest.data == b"b\nc\n" and rest.exit is not None


def test_many_clients_and_a_stalled_one_do_not_block(server: ServerProcess, tenant: Tenant,
                                                     session_id: str) -> None:
    c = tenant.client
    cid = bg(c, session_id, "for i in $(seq 1 3000); do echo line-$i-$(printf '%0100d' 0); done; sleep 0.2")
    # A client that connects and never reads: its socket buffers fill, nothing else may stall.
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.sendall(f"GET /v1/sessions/{session_id}/commands/{cid}/stream?from=0 HTTP/1.1\r\n"
                f"Host: x\r\nAuthorization: Bearer {tenant.key}\r\n\r\n".encode())
    results: list[bytes] = []

    def reader() -> None:
        with server.client(tenant.key) as own:
            results.append(stream(own, session_id, cid).data)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert time.monotonic() - t0 < 30
    assert len(results) == 4 and len(set(results)) == 1
    assert results[0].count(b"\n") == 3000
    raw.close()
    # A client that vanished mid-stream leaves the server serving.
    assert c.get("/healthz").status_code == 200


def test_client_disconnect_mid_stream_keeps_command_running(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    cid = bg(c, session_id, "for i in $(seq 1 30); do echo $i; sleep 0.05; done")
    part = stream(c, session_id, cid, max_events=2)
    assert part.exit is None
    rest = stream(c, session_id, cid, start=part.last_id)
    assert (part.data + rest.data).decode().split() == [str(i) for i in range(1, 31)]


def test_invalid_utf8_and_split_characters(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    # A 3-byte character written in two writes with a pause between, then invalid bytes.
    cid = bg(c, session_id, "printf '\\342\\234'; sleep 0.3; printf '\\223 ok\\n'; printf '\\377\\376bad\\n'")
    s = stream(c, session_id, cid)
    assert s.data == "✓ ok\n".encode() + b"\xff\xfebad\n"
    texts = [ev["data"] for ev in s.events]
    assert "✓ ok\n" in "".join(texts)  # never split into replacement characters
    bad = [ev for ev in s.events if "data_b64" in ev]
    assert bad and b"\xff\xfebad" in base64.b64decode(bad[0]["data_b64"])
    assert "\ufffd" in bad[0]["data"]


def test_finished_command_replays_then_exits(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    r = c.post(f"/v1/sessions/{session_id}/exec", json={"command": "echo done; exit 4"}).json()
    s = stream(c, session_id, r["command_id"])
    assert s.data == b"done\n" and s.exit == {"status": "exited", "exit_code": 4, "signal": None,
                                               "end_reason": "exit"}
    beyond = stream(c, session_id, r["command_id"], start=10_000)
    assert beyond.data == b"" and beyond.exit is not None


def test_killed_command_exit_event(server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    cid = bg(c, session_id, "echo started; sleep 100")
    time.sleep(0.2)

    def kill_soon() -> None:
        time.sleep(0.3)
        with server.client(tenant.key) as own:  # httpx clients are not shared across threads
            own.post(f"/v1/sessions/{session_id}/commands/{cid}/kill", json={"signal": "INT"})

    threading.Thread(target=kill_soon).start()
    s = stream(c, session_id, cid)
    assert s.data == b"started\n"
    assert s.exit is not None and s.exit["status"] == "killed" and s.exit["signal"] == "INT"
