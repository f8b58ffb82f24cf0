"""Client connections are bounded (chaser/server/connections.py): a cap in all and per
address, a deadline on request heads, an idle bound on request bodies the server waits
for, and a per-tenant cap on raw stdin streams. Through a real server on loopback; the
attackers connect from other loopback addresses (127.0.0.2...) so the per-address cap
does not count the test's own client."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, eventually, metric, server_with
from tests.types import Tenant

MAX_CONNECTIONS = 50
PER_CLIENT = 20
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # never the final blank line


@pytest.fixture(scope="module")
def bounded(tmp_root: Path) -> Iterator[ServerProcess]:
    with server_with(tmp_root, {"CHASER_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                                "CHASER_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
                                "CHASER_REQUEST_HEADER_TIMEOUT_S": "1",
                                "CHASER_REQUEST_BODY_IDLE_S": "1",
                                "CHASER_STDIN_BODY_IDLE_S": "1",
                                "CHASER_STDIN_STREAMS_PER_TENANT": "2"}) as srv:
        yield srv


def _tenant(srv: ServerProcess, name: str) -> Tenant:
    with srv.client() as admin:
        r = admin.post("/v1/keys", json={"name": name})
    assert r.status_code == 201, r.text
    body = r.json()
    return Tenant(key=body["key"], id=body["tenant"], client=srv.client(body["key"]))


def _open(srv: ServerProcess, source: str, first: bytes = PARTIAL_HEAD) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", srv.port))
    s.sendall(first)
    return s


def _answer(s: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing the socket; None if it is still open."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def _answered(sockets: list[socket.socket]) -> list[bytes | None]:
    """What the server sent and closed each socket with by now; None: still open."""
    closed = set(select.select(sockets, [], [], 0)[0])
    return [_answer(s, 1) if s in closed else None for s in sockets]


def _error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), str(json.loads(body)["error"]["code"])


def _open_fds(srv: ServerProcess) -> int:
    assert srv.proc is not None
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


class Prober:
    """A normal client asking /healthz over and over from 127.0.0.1 (one kept-alive
    connection), recording each answer and how long it took."""

    def __init__(self, srv: ServerProcess) -> None:
        self.client = httpx.Client(base_url=srv.url, timeout=5)
        self.results: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                status = self.client.get("/healthz").status_code
            except httpx.HTTPError:
                status = 0
            self.results.append((status, time.monotonic() - began))
            time.sleep(0.02)

    def __enter__(self) -> Prober:
        assert self.client.get("/healthz").status_code == 200  # connected before the flood
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


def test_a_slowloris_flood_is_capped_and_timed_out_while_others_are_answered(
        bounded: ServerProcess) -> None:
    baseline = _open_fds(bounded)
    sockets: list[socket.socket] = []
    try:
        with Prober(bounded) as prober:
            # From one address: past PER_CLIENT, refused at once with a 503.
            sockets = [_open(bounded, "127.0.0.2") for _ in range(60)]
            time.sleep(0.3)  # well within the heads' deadline
            answers = _answered(sockets)
            refused = [a for a in answers if a is not None]
            assert len(refused) == 60 - PER_CLIENT
            assert all(_error(a) == (503, "no_capacity") for a in refused)
            assert _open_fds(bounded) <= baseline + PER_CLIENT + 5
            # Past the heads' deadline every held connection is closed, unanswered.
            held = [s for s, a in zip(sockets, answers) if a is None]
            assert all(_answer(s, 3) == b"" for s in held)
            assert eventually(lambda: _open_fds(bounded) <= baseline + 2, 5)
            for s in sockets:
                s.close()
            # From four addresses at once, past the server's cap: the longest waiting
            # heads make room, and a new client is answered all the same.
            sockets = [_open(bounded, f"127.0.0.{3 + i // PER_CLIENT}")
                       for i in range(4 * PER_CLIENT)]
            time.sleep(0.3)
            still = [s for s, a in zip(sockets, _answered(sockets)) if a is None]
            assert len(still) <= MAX_CONNECTIONS - 1  # the prober holds one
            assert _open_fds(bounded) <= baseline + MAX_CONNECTIONS + 5
            assert httpx.get(bounded.url + "/healthz", timeout=5).status_code == 200
        # The established connection was answered all along.
        assert len(prober.results) > 20
        assert all(status == 200 for status, _ in prober.results), prober.results
    finally:
        for s in sockets:
            s.close()
    assert "Traceback" not in bounded.log()


def test_a_server_full_of_requests_in_flight_refuses_new_connections_at_once(
        bounded: ServerProcess) -> None:
    t = _tenant(bounded, "busy")
    stalled = (f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t.key}\r\n"
               "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode()
    # Each holds its connection until request_body_idle_s; none waits for a head.
    sockets = [_open(bounded, f"127.0.0.{10 + i // PER_CLIENT}", stalled)
               for i in range(MAX_CONNECTIONS + 10)]
    try:
        time.sleep(0.3)
        assert sum(a is None for a in _answered(sockets)) >= MAX_CONNECTIONS - 5
        full = httpx.get(bounded.url + "/healthz", timeout=5)
        assert full.status_code == 503 and full.json()["error"]["code"] == "no_capacity"
        assert full.headers["retry-after"] == "1"
        time.sleep(1.5)  # their bodies time out (408): connections are taken again
        assert httpx.get(bounded.url + "/healthz", timeout=5).status_code == 200
    finally:
        for s in sockets:
            s.close()
        t.client.close()


def test_a_head_dribbled_byte_by_byte_is_held_to_the_deadline(bounded: ServerProcess) -> None:
    s = _open(bounded, "127.0.0.1", b"G")
    began = time.monotonic()
    with contextlib.closing(s):
        for byte in PARTIAL_HEAD[1:]:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        assert _answer(s, 3) == b""
    assert time.monotonic() - began < 2.5  # from the first byte, never pushed back


def test_a_json_body_that_never_arrives_is_ended_with_408(bounded: ServerProcess) -> None:
    t = _tenant(bounded, "stalled-json")
    with contextlib.closing(_open(bounded, "127.0.0.1", (
            f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"env\"").encode())) as s:
        answer = _answer(s, 5)
    assert answer is not None and _error(answer) == (408, "request_timeout")
    assert t.client.get("/v1/sessions").json()["sessions"] == []  # nothing was made
    t.client.close()


def _stdin_stream(srv: ServerProcess, t: Tenant, sid: str, cid: str) -> socket.socket:
    """A raw stdin body of 64 MiB, sent until the server stops reading it."""
    s = _open(srv, "127.0.0.1", (
        f"POST /v1/sessions/{sid}/commands/{cid}/stdin HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {t.key}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {64 << 20}\r\n\r\n").encode())
    s.setblocking(False)
    sent, deadline = 0, time.monotonic() + 10
    chunk = b"z" * 65536
    while sent < 32 << 20 and time.monotonic() < deadline:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.2)  # full: once more, in case the server was between reads
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                break
    return s


def test_raw_stdin_bodies_end_when_stalled_not_while_the_command_is_full_and_are_capped(
        bounded: ServerProcess) -> None:
    t = _tenant(bounded, "feeder")
    sid = t.client.post("/v1/sessions", json={}).json()["id"]

    def background(command: str) -> str:
        r = t.client.post(f"/v1/sessions/{sid}/exec", json={"command": command,
                                                            "background": True})
        assert r.status_code == 201, r.text
        return str(r.json()["command_id"])

    # A body that stops while the command reads: the server waits on the client, 408.
    reader = background("cat > /dev/null")
    with contextlib.closing(_open(bounded, "127.0.0.1", (
            f"POST /v1/sessions/{sid}/commands/{reader}/stdin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {t.key}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 1000\r\n\r\nhello").encode())) as s:
        answer = _answer(s, 5)
    assert answer is not None and _error(answer) == (408, "request_timeout")
    # Bodies the server stops reading (the command's stdin is full) wait past the
    # idle bound: the client is waiting on the server, not the other way round.
    sleepers = [background("sleep 120") for _ in range(3)]
    streams = [_stdin_stream(bounded, t, sid, cid) for cid in sleepers[:2]]
    try:
        assert eventually(lambda: metric(bounded, "chaser_stdin_streams") == 2, 15)
        time.sleep(3)  # three times request_body_idle_s
        assert metric(bounded, "chaser_stdin_streams") == 2
        assert all(_answer(s, 0.1) is None for s in streams)
        # A third stream of the tenant is refused; another tenant's is not counted.
        r = t.client.post(f"/v1/sessions/{sid}/commands/{sleepers[2]}/stdin",
                          content=b"x", headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_stdin_streams"
        # One ends (its command is killed): the tenant may stream again.
        assert t.client.post(f"/v1/sessions/{sid}/commands/{sleepers[0]}/kill",
                             json={"signal": "KILL"}).status_code == 200
        assert eventually(lambda: metric(bounded, "chaser_stdin_streams") == 1, 15)
        r = t.client.post(f"/v1/sessions/{sid}/commands/{sleepers[2]}/stdin",
                          content=b"x", headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200 and r.json()["bytes"] == 1
    finally:
        for s in streams:
            s.close()
        t.client.close()
    assert "Traceback" not in bounded.log()


def test_a_piped_stdin_may_be_quiet_longer_than_other_bodies(tmp_root: Path) -> None:
    """A raw stdin body is a pipe (`tail -f log | chaser exec ...`): its own, longer bound
    (stdin_body_idle_s), not request_body_idle_s."""
    with server_with(tmp_root, {"CHASER_REQUEST_BODY_IDLE_S": "1"}) as srv:
        t = _tenant(srv, "piper")
        sid = t.client.post("/v1/sessions", json={}).json()["id"]
        r = t.client.post(f"/v1/sessions/{sid}/exec", json={"command": "cat > /dev/null",
                                                            "background": True})
        cid = r.json()["command_id"]
        with contextlib.closing(_open(srv, "127.0.0.1", (
                f"POST /v1/sessions/{sid}/commands/{cid}/stdin HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {t.key}\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: 10\r\n\r\nhello").encode())) as s:
            assert _answer(s, 2.5) is None  # quiet past request_body_idle_s, still open
            s.sendall(b"world")
            answer = _answer(s, 10)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["bytes"] == 10
