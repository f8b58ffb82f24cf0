"""The files API's resources: slots per tenant and per server, stalled clients and
stalled operations ended, each through a real server of its own (small settings)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, eventually, metric, server_with
from tests.types import Tenant

BIG = 50_000_000


def _tenant(srv: ServerProcess, admin: httpx.Client, name: str) -> Tenant:
    r = admin.post("/v1/keys", json={"name": name})
    assert r.status_code == 201, r.text
    body = r.json()
    return Tenant(key=body["key"], id=body["tenant"], client=srv.client(body["key"]))


def _session_with_big_file(t: Tenant, **create: object) -> str:
    r = t.client.post("/v1/sessions", json=create)
    assert r.status_code == 201, r.text
    sid = str(r.json()["id"])
    r = t.client.post(f"/v1/sessions/{sid}/exec",
                      json={"command": f"head -c {BIG} /dev/zero > /tmp/z"})
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    return sid


def _stalled_download(srv: ServerProcess, key: str, sid: str) -> socket.socket:
    """A download whose client reads its status line and then nothing."""
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall((f"GET /v1/sessions/{sid}/files?path=/tmp/z HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {key}\r\n\r\n").encode())
    s.settimeout(20)
    assert s.recv(12) == b"HTTP/1.1 200", "the download did not start"
    return s


def _probe(t: Tenant, sid: str) -> httpx.Response:
    return t.client.get(f"/v1/sessions/{sid}/files", params={"path": "/tmp/z"},
                        headers={"Range": "bytes=0-9"})


@pytest.fixture(scope="module")
def capped(tmp_root: Path) -> Iterator[ServerProcess]:
    with server_with(tmp_root, {"CHASER_FILE_OPS_TOTAL": "5", "CHASER_FILE_OPS_PER_TENANT": "3",
                            "CHASER_FILE_SEND_STALL_S": "3600"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def stalling(tmp_root: Path) -> Iterator[ServerProcess]:
    with server_with(tmp_root, {"CHASER_FILE_OPS_PER_TENANT": "2",
                            "CHASER_FILE_SEND_STALL_S": "3",
                            "CHASER_FILE_OP_IDLE_S": "2"}) as srv:
        yield srv


def test_file_operations_are_capped_per_tenant_and_for_the_server(capped: ServerProcess) -> None:
    with capped.client() as admin, contextlib.ExitStack() as held:
        a, b = _tenant(capped, admin, "a"), _tenant(capped, admin, "b")
        a1, a2, b1 = (_session_with_big_file(t) for t in (a, a, b))
        mine = [held.enter_context(_stalled_download(capped, a.key, sid)) for sid in (a1, a1, a2)]
        r = _probe(a, a2)  # another of its sessions: the cap is the tenant's
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_file_ops", r.text
        assert "file_ops_per_tenant" in r.json()["error"]["message"]
        assert r.headers["retry-after"]
        for _ in range(2):
            held.enter_context(_stalled_download(capped, b.key, b1))
        r = _probe(b, b1)  # b is under its own cap; the server is at its total
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_capacity", r.text
        assert metric(capped, "chaser_file_operations") == 5
        for s in mine:  # a's clients leave: their slots come back at once
            s.close()
        assert eventually(lambda: _probe(b, b1).status_code == 206, 15)
        assert _probe(a, a2).status_code == 206
    assert eventually(lambda: metric(capped, "chaser_file_operations") == 0, 15)


def test_a_download_nobody_reads_is_ended_and_frees_its_slot(stalling: ServerProcess) -> None:
    with stalling.client() as admin:
        t = _tenant(stalling, admin, "reader")
        sid = _session_with_big_file(t, idle_timeout_s=4)
        socks = [_stalled_download(stalling, t.key, sid) for _ in range(2)]
        assert _probe(t, sid).status_code == 429  # both slots held...
        started = time.monotonic()
        # ...until the send stall (3 s) ends them: a following operation gets through
        assert eventually(lambda: _probe(t, sid).status_code == 206, 20)
        assert time.monotonic() - started < 15
        for s in socks:  # the connection was reset, far short of the file's end
            got = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            assert got < BIG // 2
            s.close()
        assert stalling.log().count("took nothing for 3 s") >= 2
        # and the session idles out once nothing moves (the stall kept it only so long)
        assert eventually(lambda: t.client.get(f"/v1/sessions/{sid}").json()["status"]
                           == "stopped", 20)


STOP_AGENT = ("for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in "
              "'/.chaser/agent files '*) kill -STOP ${p#/proc/} && echo stopped;; esac; done")


def test_a_stopped_files_agent_is_ended_and_frees_its_slot(stalling: ServerProcess) -> None:
    with stalling.client() as admin:
        t = _tenant(stalling, admin, "stopper")
        sid = _session_with_big_file(t)
        url = f"/v1/sessions/{sid}/files"
        with t.client.stream("GET", url, params={"path": "/tmp/z"}) as r:
            assert r.status_code == 200
            parts = r.iter_bytes()
            got = len(next(parts))
            out = t.client.post(f"/v1/sessions/{sid}/exec", json={"command": STOP_AGENT})
            assert "stopped" in out.json()["output"], out.text
            with pytest.raises(httpx.HTTPError):  # cut short: a reset, not a clean end
                for part in parts:
                    got += len(part)
        assert got < BIG

        def body() -> Iterator[bytes]:  # an upload whose agent is stopped mid-way
            yield b"x" * 65536
            assert eventually(lambda: "stopped" in t.client.post(  # once it has started
                f"/v1/sessions/{sid}/exec", json={"command": STOP_AGENT}).json()["output"], 10)
            for _ in range(200):
                yield b"y" * 65536
        r = t.client.put(url, params={"path": "up.bin"}, content=body(), timeout=60)
        assert r.status_code == 502 and r.json()["error"]["code"] == "file_op_stalled", r.text
        assert _probe(t, sid).status_code == 206  # the slots came back
        names = [e["name"] for e in t.client.get(url + "/list", params={"path": "."})
                 .json()["entries"]]
        assert "up.bin" not in names  # nothing under the final name
        assert eventually(lambda: "agent files" not in t.client.post(
            f"/v1/sessions/{sid}/exec", json={"command": "ps -eo args"}).json()["output"], 10)
    assert stalling.log().count("moved no byte for 2 s") >= 1


def test_stdin_of_a_command_that_never_reads_is_freed_when_its_client_leaves(
        stalling: ServerProcess) -> None:
    with stalling.client() as admin:
        t = _tenant(stalling, admin, "feeder")
        sid = t.client.post("/v1/sessions", json={}).json()["id"]
        r = t.client.post(f"/v1/sessions/{sid}/exec", json={
            "command": "sleep 60", "background": True})
        assert r.status_code == 201, r.text
        cid = r.json()["command_id"]
        s = socket.create_connection(("127.0.0.1", stalling.port))
        s.sendall((f"POST /v1/sessions/{sid}/commands/{cid}/stdin HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {t.key}\r\nContent-Type: application/octet-stream"
                   f"\r\nContent-Length: 10000000\r\n\r\n").encode())
        s.sendall(b"z" * 1_200_000)  # past the pipe and the server's high-water mark
        assert eventually(lambda: metric(stalling, "chaser_stdin_streams") == 1, 10)
        s.close()
        assert eventually(lambda: metric(stalling, "chaser_stdin_streams") == 0, 5)
        cmd = t.client.get(f"/v1/sessions/{sid}/commands/{cid}").json()
        assert cmd["status"] == "running"  # the command goes on, its stdin still open
