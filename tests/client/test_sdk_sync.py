"""The sync SDK end to end against a real server."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

import chaser
from chaser import Client, CommandHandle, ExitEvent, OutputEvent
from chaser.client import output_bytes
from tests.conftest import ServerProcess, free_port
from tests.types import NewTenant, Tenant



@pytest.fixture
def sdk(server: ServerProcess, tenant: Tenant) -> Iterator[Client]:
    with Client(server.url, tenant.key) as c:
        yield c


def collect(handle: CommandHandle, from_offset: int = 0) -> tuple[bytes, ExitEvent]:
    data = b""
    exit_event = None
    for ev in handle.stream(from_offset=from_offset, timeout=60):
        if isinstance(ev, OutputEvent):
            data += output_bytes(ev)
        else:
            exit_event = ev
    assert exit_event is not None
    return data, exit_event


def test_exec_ephemeral(sdk: Client) -> None:
    r = sdk.exec("python3 -c 'print(42)'")
    assert isinstance(r, chaser.ExecResult)
    assert (r.exit_code, r.output, r.output_truncated) == (0, "42\n", False)


def test_exec_workspace_reuses_session_and_files(sdk: Client) -> None:
    a = sdk.exec("echo hi > f.txt", workspace="sdk-ws")
    b = sdk.exec("cat f.txt; exit 3", workspace="sdk-ws", env={"X": "1"})
    assert a.session_id and a.session_id == b.session_id
    assert (b.exit_code, b.output) == (3, "hi\n")


def test_exec_stdin_env_cwd(sdk: Client) -> None:
    r = sdk.exec("cat; echo $FOO; pwd", stdin="in\n", env={"FOO": "bar"}, cwd="/tmp")
    assert r.output == "in\nbar\n/tmp\n"


def test_sessions_lifecycle(sdk: Client) -> None:
    with sdk.sessions.create(env={"A": "b"}) as s:
        assert s.status == "running" and s.id.startswith("ses_")
        assert s.id in [x.id for x in sdk.sessions.list()]
        assert sdk.sessions.get(s.id).id == s.id
        r = s.exec("echo $A")
        assert r.output == "b\n" and r.command_id
        assert [c.id for c in s.list_commands()] == [r.command_id]
        assert s.get_command(r.command_id).last_info.exit_code == 0  # type: ignore[union-attr]
    assert s.status == "stopped"
    assert s.info().status == "stopped"


def test_session_usage(sdk: Client) -> None:
    with sdk.sessions.create() as s:
        s.exec("head -c 20000000 /dev/zero > /tmp/blob")
        u = s.usage()
        assert isinstance(u, chaser.client.SessionUsage)
        assert u.disk_bytes is not None and u.disk_bytes >= 20_000_000  # its tmpfs
        assert u.memory_bytes is not None and u.memory_bytes >= 20_000_000
        assert u.pids is not None and u.pids >= 1 and u.cpu_ms is not None
        listed = {h.id: h.last_info.usage for h in sdk.sessions.list(usage=True)}
        mine = listed[s.id]
        assert mine is not None and mine.disk_bytes == u.disk_bytes
        assert {h.id: h.last_info.usage for h in sdk.sessions.list()}[s.id] is None
    assert s.usage() is None


def test_background_stream_and_resume_from_offset(sdk: Client) -> None:
    s = sdk.sessions.create()
    cmd = s.exec("for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.1; done; exit 4",
                 background=True)
    assert cmd.id.startswith("cmd_") and cmd.pid
    data, exit_event = collect(cmd)
    assert exit_event.status == "exited" and exit_event.exit_code == 4
    assert data.count(b"line") == 3 and data.count(b"err") == 3
    # A finished command replays from any offset, exactly.
    for k in (0, 1, 7, len(data) - 1, len(data)):
        tail, again = collect(cmd, from_offset=k)
        assert tail == data[k:] and again.exit_code == 4
    finished = cmd.wait()
    assert finished.status == "exited" and cmd.exit_code == 4
    assert cmd.output() == data.decode()
    assert cmd.output(from_offset=5) == data[5:].decode()
    s.delete()


def test_stream_separates_stdout_and_stderr(sdk: Client) -> None:
    s = sdk.sessions.create()
    cmd = s.exec("echo out; sleep 0.1; echo err >&2", background=True)
    streams = {"stdout": "", "stderr": ""}
    for ev in cmd.stream():
        if isinstance(ev, OutputEvent):
            streams[ev.stream] += ev.data
    assert streams == {"stdout": "out\n", "stderr": "err\n"}
    s.delete()


class _CutStream(httpx.SyncByteStream):
    """Passes `limit` bytes of a real response through, then breaks the connection."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            room = self.limit - sent
            if len(chunk) >= room:
                yield chunk[:room]
                raise httpx.ReadError("connection cut by the test")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _FlakyTransport(httpx.BaseTransport):
    """A real transport whose first few stream responses are cut short (fault injection)."""

    def __init__(self, cuts: int, limit: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.cuts, self.limit, self.streams = cuts, limit, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/stream"):
            self.streams += 1
            if self.cuts > 0:
                self.cuts -= 1
                assert isinstance(response.stream, httpx.SyncByteStream)
                return httpx.Response(response.status_code, headers=response.headers,
                                      stream=_CutStream(response.stream, self.limit),
                                      extensions=response.extensions)
        return response

    def close(self) -> None:
        self.inner.close()


def test_stream_resumes_after_dropped_connections(server: ServerProcess, tenant: Tenant) -> None:
    flaky = _FlakyTransport(cuts=3, limit=700)
    with Client(server.url, tenant.key, transport=flaky) as c:
        s = c.sessions.create()
        cmd = s.exec("seq 1 3000", background=True)
        data, exit_event = collect(cmd)
        assert exit_event.exit_code == 0
        assert data.decode() == "".join(f"{i}\n" for i in range(1, 3001))
        assert flaky.streams >= 4  # three cut connections, then one that finished
        s.delete()


def test_stdin_round_trip_with_cat(sdk: Client) -> None:
    s = sdk.sessions.create()
    cmd = s.exec("cat", background=True)
    assert cmd.send_stdin("hello\n").ok
    cmd.send_stdin("world\n")
    cmd.close_stdin()
    done = cmd.wait(timeout=30)
    assert done.status == "exited" and done.exit_code == 0
    assert done.output == "hello\nworld\n"
    with pytest.raises(chaser.ConflictError) as e:
        cmd.send_stdin("late\n")
    assert e.value.status_code == 409
    s.delete()


def test_kill_and_wait_timeout(sdk: Client) -> None:
    s = sdk.sessions.create()
    cmd = s.exec("sleep 30", background=True)
    t0 = time.monotonic()
    with pytest.raises(chaser.TimeoutError):
        cmd.wait(timeout=0.5)
    assert time.monotonic() - t0 < 10
    cmd.kill("TERM")
    done = cmd.wait(timeout=30)
    assert done.status == "killed" and done.signal == "TERM"
    assert cmd.refresh().status == "killed"
    s.delete()


def test_typed_errors(server: ServerProcess, sdk: Client) -> None:
    with pytest.raises(chaser.NotFoundError) as nf:
        sdk.sessions.get("ses_doesnotexist")
    assert (nf.value.status_code, nf.value.code) == (404, "not_found")
    with pytest.raises(chaser.ValidationError) as bad:
        sdk.exec("true", workspace=".hidden")
    assert bad.value.status_code in (400, 422)
    with Client(server.url, "wrong-key") as c, pytest.raises(chaser.AuthenticationError) as au:
        c.sessions.list()
    assert au.value.status_code == 401 and au.value.code == "unauthorized"
    with pytest.raises(chaser.PermissionDeniedError):
        sdk.keys.list()  # a tenant key is not an admin key
    assert isinstance(nf.value, chaser.APIError) and isinstance(nf.value, chaser.ChaserError)


def test_missing_key_says_what_to_do(server: ServerProcess,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHASER_API_KEY", raising=False)
    monkeypatch.setenv("CHASER_CONFIG", "/nonexistent/chaser.toml")
    with Client(server.url) as c:
        assert c.health()["status"] == "ok"
        with pytest.raises(chaser.AuthenticationError) as e:
            c.sessions.list()
    assert "CHASER_API_KEY" in str(e.value)


def test_unreachable_server() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "k", retries=1) as c, \
            pytest.raises(chaser.ConnectionError) as e:
        c.exec("true")
    assert "chaser server" in str(e.value) and "CHASER_API_URL" in str(e.value)


def test_tenant_isolation(server: ServerProcess, new_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = new_tenant("a"), new_tenant("b")
    with Client(server.url, a.key) as ca, Client(server.url, b.key) as cb:
        s = ca.sessions.create()
        cmd = s.exec("sleep 5", background=True)
        with pytest.raises(chaser.NotFoundError):
            cb.sessions.get(s.id)
        with pytest.raises(chaser.NotFoundError):
            cb.commands.get(s.id, cmd.id)
        with pytest.raises(chaser.NotFoundError):
            cb.commands.handle(s.id, cmd.id).kill()
        with pytest.raises(chaser.NotFoundError):
            list(cb.commands.handle(s.id, cmd.id).stream())
        assert s.id not in [x.id for x in cb.sessions.list()]
        s.delete()


def test_keys_admin(server: ServerProcess) -> None:
    with Client(server.url, server.admin_key) as admin:
        key = admin.keys.create("sdk-test")
        assert key.key and key.id in [k.id for k in admin.keys.list()]
        with Client(server.url, key.key) as user:
            assert user.sessions.list() == []
            admin.keys.revoke(key.id)
            with pytest.raises(chaser.AuthenticationError):
                user.sessions.list()


def test_stdin_bytes_and_streams(sdk: Client) -> None:
    s = sdk.sessions.create()
    cmd = s.exec("sha256sum", background=True)
    cmd.send_stdin(b"\xff\x00")
    blocks = [os.urandom(1 << 20) for _ in range(8)]
    assert cmd.stream_stdin(iter(blocks)).bytes == 8 << 20
    digest = hashlib.sha256(b"\xff\x00" + b"".join(blocks)).hexdigest()
    assert str(cmd.wait(timeout=60).output).split()[0] == digest
    r = s.exec("od -An -tx1", stdin=b"\x01\xfe")
    assert r.output.split() == ["01", "fe"]
    s.delete()
