"""The SDK's terminals (`Pty`, `AsyncPty`) against a real server with real sandboxes.

Agent mode is driven as an agent drives it: commands one after the other, each output
and exit code checked, shell state kept between them. The first tests pin the frame
bookkeeping (`PtyCore`) offline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import chaser
from chaser.client import (
    AsyncClient,
    Client,
    PtyCommandEnd,
    PtyCommandStart,
    PtyErrorFrame,
    PtyEvent,
    PtyExit,
    PtyHello,
    PtyOutput,
    PtyResult,
    resolve_config,
)
from chaser.client._pty_protocol import PtyCore, parse_hello, pty_params, pty_url
from tests.conftest import ServerProcess, free_port
from tests.types import NewTenant, Tenant

# ---- offline: the frames and the pairing of commands -------------------------------


def _core(mode: str = "agent") -> PtyCore:
    hello = parse_hello(json.dumps({"type": "hello", "pty_id": "cmd_1", "mode": mode,
                                    "cols": 80, "rows": 24, "offset": 10, "view": False}))
    return PtyCore(hello, "ses_1")


def _frame(**fields: Any) -> str:
    return json.dumps(fields)


def test_hello_and_offsets() -> None:
    core = _core()
    assert core.hello == PtyHello("cmd_1", "agent", 80, 24, 10, False)
    out = core.event(b"abc")
    assert out == PtyOutput(b"abc", 10) and core.offset == 13
    assert core.event("not json") is None
    assert core.event(_frame(type="something-new")) is None
    err = core.event(_frame(type="error", code="bad_frame", message="no"))
    assert err == PtyErrorFrame("bad_frame", "no")
    ex = core.event(_frame(type="exit", exit_code=None, signal="KILL", status="killed"))
    assert ex == PtyExit(None, "KILL", "killed") and core.exit_status() == 137
    with pytest.raises(chaser.ConnectionError):
        parse_hello(b"\x00binary")


def test_agent_commands_pair_with_their_start_and_end_frames() -> None:
    core = _core()
    sent = core.start_command("echo a\necho b\n")
    assert sent == b"echo a\necho b\n"
    core.event(b"$ ")  # a prompt before the command: not part of its output
    core.event(_frame(type="command_start", command="echo a", offset=12))
    core.event(b"a\r\n")
    core.event(_frame(type="command_end", exit_code=0, offset=15))
    assert core.take_result() is None  # "echo b" is still to come
    core.event(b"$ ")
    core.event(_frame(type="command_start", command="echo b", offset=17))
    core.event(b"b\r\n")
    core.event(_frame(type="command_end", exit_code=3, offset=20))
    assert core.take_result() == PtyResult("a\nb\n", 3)
    # A command typed by hand with send() is reported but waited for by nobody.
    core.event(_frame(type="command_start", command="ls", offset=20))
    core.event(_frame(type="command_end", exit_code=0, offset=20))
    assert core.take_result() is None and not core.pending


def test_refusals_before_sending() -> None:
    with pytest.raises(chaser.ChaserError, match="agent"):
        _core("human").start_command("ls")
    with pytest.raises(chaser.ChaserError, match="empty"):
        _core().start_command("  \n")


def test_url_never_carries_the_key() -> None:
    config = resolve_config("https://example.test:9000/base", "chs_secret")
    url = pty_url(config, "ses 1", pty_params("exec", 80, 24, None, True, "echo hi", None,
                                              None, 5))
    assert url.startswith("wss://example.test:9000/base/v1/sessions/ses%201/pty?")
    assert "chs_secret" not in url
    assert "view=true" in url and "from=5" in url and "command=echo+hi" in url


def test_unreachable_server_is_a_connection_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "chs_k") as client:
        with pytest.raises(chaser.ConnectionError, match="cannot open a terminal"):
            client.pty("ses_1")


async def test_unreachable_server_is_a_connection_error_async() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "chs_k") as client:
        with pytest.raises(chaser.ConnectionError, match="cannot open a terminal"):
            await client.pty("ses_1")


# ---- against a real server ----------------------------------------------------------


@pytest.fixture
def sdk(server: ServerProcess, tenant: Tenant) -> Iterator[Client]:
    with Client(server.url, tenant.key) as client:
        yield client


def read_until(term: chaser.Pty, needle: bytes, timeout: float = 30) -> bytes:
    """Output until `needle` appears (everything read, `needle` included)."""
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        chunk = term.read(timeout=max(0.01, deadline - time.monotonic()))
        assert chunk, f"terminal ended before {needle!r}; got {got!r}"
        got += chunk
    return got


def test_human_mode_size_resize_and_exit(sdk: Client, session_id: str) -> None:
    with sdk.pty(session_id, cols=100, rows=30) as term:
        assert term.mode == "human" and term.pty_id and term.exit_code is None
        term.send("stty size; echo term=$TERM\n")
        assert b"30 100" in read_until(term, b"term=xterm")
        term.resize(120, 40)
        term.send(b"stty size\n")
        assert b"40 120" in read_until(term, b"40 120")
        term.send("exit 5\n")
        assert term.wait(timeout=30) == 5
    assert term.exit is not None and term.exit.exit_code == 5
    listed = {c.id: c for c in sdk.commands.list(session_id)}
    assert listed[term.pty_id].kind == "pty"


def test_agent_mode_driven_like_an_agent(sdk: Client, session_id: str) -> None:
    with sdk.pty(session_id, mode="agent") as term:
        assert term.run("cd /tmp && X=hello && echo $X") == ("hello\n", 0)
        assert term.run("pwd; echo $X") == ("/tmp\nhello\n", 0)  # state is kept
        output, code = term.run("ls /nonexistent-dir")
        assert code == 2 and "No such file or directory" in output
        assert term.run("for i in 1 2 3\ndo\n  echo line $i\ndone") == (
            "line 1\nline 2\nline 3\n", 0)
        # "started" comes from the very process Ctrl-C is for, once it dies of SIGINT:
        # a Ctrl-C between a fork and an exec would reach no program (as on any
        # terminal), and this test is about the terminal, not that race.
        term.start_command("python3 -c \"import signal, time; signal.signal(signal.SIGINT, "
                           "signal.SIG_DFL); print('started', flush=True); time.sleep(30)\"; "
                           "echo never")
        for event in term.events(timeout=30):
            if isinstance(event, PtyOutput) and b"started" in event.data:
                break
        term.send(b"\x03")
        output, code = term.wait_command(timeout=30)
        # bash ends the interrupted line with a newline of its own.
        assert (output.rstrip("\n"), code) == ("started", 130)
        assert term.run("echo $X still") == ("hello still\n", 0)


def test_agent_mode_stdin_no_newline_and_timeout(sdk: Client, session_id: str) -> None:
    with sdk.pty(session_id, mode="agent") as term:
        assert term.run("printf abc") == ("abc", 0)
        term.start_command("read -r line; echo got $line")
        term.send("typed input\n")
        assert term.wait_command(timeout=30) == ("got typed input\n", 0)
        with pytest.raises(chaser.TimeoutError, match="interrupted"):
            term.run("sleep 30", timeout=1)
        assert term.run("echo after") == ("after\n", 0)
        assert term.run("bash -c 'exit 7'") == ("", 7)
        term.resize(0, 5)  # refused by an error frame; the next command is unaffected
        term.start_command("wc -c")
        term.send((b"y" * 99 + b"\n") * 20_000)  # a 2 MB paste, sent in 64 KiB frames
        term.send(b"\x04")  # Ctrl-D at the start of a line: end of input
        assert term.wait_command(timeout=60) == ("2000000\n", 0)


def test_exec_mode_stdin_eof_and_exit(sdk: Client, session_id: str) -> None:
    term = sdk.pty(session_id, mode="exec", command="cat; echo done >&2; exit 4")
    term.send(b"hello \x00binary")
    term.eof()
    output = b"".join(term)
    assert output == b"hello \x00binarydone\n"
    assert term.exit_code == 4


def test_detach_then_reattach_loses_nothing(sdk: Client, session_id: str) -> None:
    term = sdk.pty(session_id, mode="agent")
    assert term.run("echo ready") == ("ready\n", 0)
    term.start_command("for i in 1 2 3 4 5; do echo n$i; sleep 0.3; done; echo fin")
    read_until(term, b"n1")
    term.detach()
    time.sleep(2.5)  # the rest is printed while nobody is attached
    again = sdk.pty(session_id, pty_id=term.pty_id, from_offset=term.offset)
    assert again.pty_id == term.pty_id and again.mode == "agent"
    rest = read_until(again, b"fin\r\n")
    assert rest.replace(b"\r\n", b"\n").startswith(b"n2\nn3\nn4\nn5\nfin\n"), rest
    # Without from_offset: the scrollback is replayed, older output included.
    replay = sdk.pty(session_id, pty_id=term.pty_id, view=True)
    assert b"ready" in read_until(replay, b"fin")
    replay.detach()
    assert again.run("echo still here") == ("still here\n", 0)
    assert again.close() is not None
    status = sdk.commands.get(session_id, term.pty_id).info().status
    assert status != "running"


def test_viewer_watches_and_cannot_type(sdk: Client, session_id: str) -> None:
    with sdk.pty(session_id, mode="agent") as term:
        viewer = sdk.pty(session_id, pty_id=term.pty_id, view=True)
        assert viewer.view
        assert term.run("echo shared") == ("shared\n", 0)
        assert b"shared" in read_until(viewer, b"shared")
        viewer.send(b"echo from-viewer\n")
        events: list[PtyEvent] = []
        for event in viewer.events(timeout=10):
            events.append(event)
            if isinstance(event, PtyErrorFrame):
                break
        assert any(isinstance(e, PtyErrorFrame) for e in events)
        assert term.run("echo only-mine") == ("only-mine\n", 0)
        viewer.close()  # a viewer cannot end the terminal: it only detaches
        assert term.run("echo still-running") == ("still-running\n", 0)


def test_refused_upgrades_are_typed_errors(server: ServerProcess, sdk: Client,
                                           session_id: str, tenant: Tenant,
                                           new_tenant: NewTenant) -> None:
    with pytest.raises(chaser.ValidationError):
        sdk.pty(session_id, mode="tty")  # type: ignore[arg-type]
    with pytest.raises(chaser.AuthenticationError):
        Client(server.url, "chs_wrong").pty(session_id)
    other = new_tenant("other")
    with pytest.raises(chaser.NotFoundError):
        Client(server.url, other.key).pty(session_id)
    with pytest.raises(chaser.NotFoundError):
        sdk.pty(session_id, pty_id="cmd_doesnotexist")
    sdk.sessions.delete(session_id)
    with pytest.raises((chaser.ConflictError, chaser.NotFoundError)):
        sdk.pty(session_id)


def test_session_handle_pty(sdk: Client, session_id: str) -> None:
    session = sdk.sessions.get(session_id)
    with session.pty(mode="agent") as term:
        assert term.session_id == session_id
        assert term.run("echo $((6*7))") == ("42\n", 0)


async def test_async_pty(server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    async with AsyncClient(server.url, tenant.key) as client:
        async with await client.pty(session_id, mode="agent") as term:
            assert await term.run("Y=5; echo $((Y*2))") == ("10\n", 0)
            assert await term.run("echo $Y; false") == ("5\n", 1)
            events: list[PtyEvent] = []
            await term.start_command("echo hi")
            async for event in term.events(timeout=30):
                events.append(event)
                if isinstance(event, PtyCommandEnd):
                    break
            starts = [i for i, e in enumerate(events) if isinstance(e, PtyCommandStart)]
            assert len(starts) == 1
            start = events[starts[0]]
            assert isinstance(start, PtyCommandStart) and start.command == "echo hi"
            output = [e.data for e in events[starts[0]:] if isinstance(e, PtyOutput)]
            assert b"".join(output) == b"hi\r\n"
            # Before the start: at most the prompt, never an echo of the line typed.
            assert b"echo" not in b"".join(
                e.data for e in events[:starts[0]] if isinstance(e, PtyOutput))
        with pytest.raises(chaser.NotFoundError):
            await client.pty(session_id, pty_id="cmd_doesnotexist")
        session = await client.sessions.get(session_id)
        human = await session.pty(cols=90, rows=20)
        await human.send("exit 9\n")
        assert [c async for c in human] is not None
        assert human.exit_code == 9
