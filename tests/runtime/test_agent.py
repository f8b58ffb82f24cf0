"""The in-sandbox agent (agent.c, and agent.py as the fallback), through real sandboxes.

Most tests drive a `BwrapRuntime` of their own (its own data dir, no warm pool) to reach
the agent's protocol below what the HTTP API lets through: both of the server's string
encodings, strings no execve can carry, packets no server sends. The agent binary is
never run on the host in its agent mode (its sweep would kill the host's processes): only
as PID 1 of a sandbox, or inside a PID namespace of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chaser.errors import Conflict, OverLimit, SandboxFailed
from chaser.runtime import agent_build, images
from chaser.runtime.agent_client import AgentProcess, AgentSandbox, descendants
from chaser.runtime.base import ExitStatus, ProcessIO, ProcessSpec, SandboxSpec
from chaser.runtime.bwrap import BwrapRuntime
from chaser.runtime.cgroups import ResourceLimits
from chaser.runtime.oneshot import read_all
from chaser.runtime.uids import allocate
from tests.conftest import ServerProcess
from tests.types import Tenant

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
Result = tuple[ExitStatus, bytes, bytes]


async def _runtime(root: Path) -> BwrapRuntime:
    data_dir = Path(tempfile.mkdtemp(dir=root))
    data_dir.chmod(0o711)  # sandboxes (unprivileged uids) traverse to the prepared root
    uids = await asyncio.to_thread(allocate, data_dir)
    return await asyncio.to_thread(BwrapRuntime, data_dir / "runtime", uids, 0)


@pytest.fixture(scope="module")
async def runtime(tmp_root: Path) -> AsyncIterator[BwrapRuntime]:
    rt = await _runtime(tmp_root)
    assert images.has_static_agent(rt.rootfs), "the static agent was not built"
    yield rt
    await rt.close()


@pytest.fixture(scope="module")
async def sandbox(runtime: BwrapRuntime) -> AsyncIterator[AgentSandbox]:
    box = await runtime.start(SandboxSpec(name="agent_" + secrets.token_hex(6)))
    yield box
    await box.close()


async def run(box: AgentSandbox, argv: list[str], env: dict[str, str] | None = None,
              cwd: str = "/", stdin: bytes | None = None) -> Result:
    """Run a command through the agent: how it ended, its stdout and its stderr."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r = in_w = None
    if stdin is not None:
        in_r, in_w = os.pipe()
    try:
        proc = await box.spawn(ProcessSpec(argv, ENV if env is None else env, cwd),
                               ProcessIO(out_w, err_w, in_r))
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd is not None:
                os.close(fd)
        raise
    if in_w is not None:
        assert stdin is not None
        await asyncio.to_thread(os.write, in_w, stdin)
        os.close(in_w)
    out, err = await asyncio.gather(asyncio.to_thread(read_all, out_r),
                                    asyncio.to_thread(read_all, err_r))
    return await asyncio.wait_for(proc.wait(), 30), out, err


def encoded(monkeypatch: pytest.MonkeyPatch, box: AgentSandbox,
            encode: Callable[[dict[str, Any]], bytes]) -> None:
    """Make `box` send its messages encoded by `encode`."""
    def send(msg: dict[str, Any], fds: list[int] | None = None) -> None:
        socket.send_fds(box.sock, [encode(msg)], fds or [])
    monkeypatch.setattr(box, "send", send)


def agent_host_pid(box: AgentSandbox) -> int:
    """The host pid of the sandbox's PID 1."""
    for pid in descendants(box.proc.pid):
        with open(f"/proc/{pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()
        if nspid[-1] == "1" and len(nspid) > 2:
            return pid
    raise AssertionError("no PID 1 in the sandbox")


# -- which agent runs ---------------------------------------------------------------------

async def test_sessions_run_the_static_agent(runtime: BwrapRuntime, sandbox: AgentSandbox) -> None:
    exe = Path(f"/proc/{agent_host_pid(sandbox)}/exe")
    assert os.readlink(exe) == "/.chaser/agent"  # as its own mount namespace names it
    assert exe.samefile(runtime.rootfs / ".chaser" / "agent")
    status, out, _ = await run(sandbox, ["/bin/sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; "
                                         "echo; echo x 2>/dev/null >/.chaser/agent || echo ro"])
    assert status == ExitStatus(0, None)
    assert out == b"/.chaser/agent \nro\n", out


def test_the_servers_sessions_run_the_static_agent(server: ServerProcess, tenant: Tenant,
                                                    session_id: str) -> None:
    r = tenant.client.post(f"/v1/sessions/{session_id}/exec",
                           json={"command": "tr '\\0' ' ' </proc/1/cmdline"}).json()
    assert r["output"] == "/.chaser/agent ", r


# -- strings, both encodings ----------------------------------------------------------------

UNICODE_ARGS = ["héllo wörld", "日本語", "emoji 😀 𝄞", "tab\tnewline\nquote\" back\\ slash/",
                "\x01\x1f\x7f control", ""]
UNICODE_ENV = {"ÜNÏ": "çödé 😀", "A": "x=y=z", "EMPTY": "", "Q": "\"\\\n"}
SHOW = ["/usr/bin/python3", "-c", "import os, sys, json; print(json.dumps([sys.argv[1:], "
        "{k: v for k, v in os.environ.items() if k != 'LC_CTYPE'}, os.getcwd()]))"]


@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "escaped"])
async def test_unicode_argv_env_and_cwd_arrive_intact(sandbox: AgentSandbox,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      ascii_only: bool) -> None:
    encoded(monkeypatch, sandbox, lambda m: json.dumps(m, ensure_ascii=ascii_only).encode())
    status, _, _ = await run(sandbox, ["/bin/mkdir", "-p", "/tmp/dïr ✓"])
    assert status == ExitStatus(0, None)
    status, out, err = await run(sandbox, [*SHOW, *UNICODE_ARGS], UNICODE_ENV, "/tmp/dïr ✓")
    assert status == ExitStatus(0, None), err
    assert json.loads(out) == [UNICODE_ARGS, UNICODE_ENV, "/tmp/dïr ✓"]


async def test_raw_escapes_are_decoded_as_json_loads_does(sandbox: AgentSandbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # What json.dumps never writes but JSON allows: escaped '/', upper-case hex,
    # \b \f, a surrogate pair in upper case, whitespace between tokens.
    def encode(msg: dict[str, Any]) -> bytes:
        body = json.dumps(msg, separators=(" ,\n\t", " : "))
        return (" \r\n" + body.replace('"MARK"', r'"\/\u00C9\b\f\uD83D\uDE00"') + "\n").encode()
    encoded(monkeypatch, sandbox, encode)
    status, out, _ = await run(sandbox, [*SHOW, "MARK"])
    assert status == ExitStatus(0, None)
    assert json.loads(out)[0] == ["/É\b\f😀"]


async def test_a_lone_surrogate_is_refused(sandbox: AgentSandbox) -> None:
    for argv, env in ((["/bin/echo", "a\ud800b"], ENV), (["/bin/echo"], {"X": "\udfff"}),
                      (["/bin/echo"], {"\ud83d": "x"})):
        with pytest.raises(SandboxFailed) as e:
            await run(sandbox, argv, env)
        assert e.value.code == "spawn_failed" and "lone surrogate" in str(e.value), e.value
    assert (await run(sandbox, ["/bin/echo", "ok"]))[1] == b"ok\n"  # the sandbox lives on


async def test_a_nul_is_refused_before_anything_runs(sandbox: AgentSandbox) -> None:
    for argv, env in ((["/bin/echo", "a\0b"], ENV), (["/bin/echo"], {"X": "a\0b"}),
                      (["/bin/echo"], {"X\0Y": "1"})):
        with pytest.raises(SandboxFailed) as e:
            await run(sandbox, argv, env)
        assert e.value.code == "spawn_failed" and "NUL" in str(e.value), e.value
    with pytest.raises(Conflict) as bad_cwd:  # no directory has such a name
        await run(sandbox, ["/bin/echo"], cwd="/tmp\0/x")
    assert bad_cwd.value.code == "invalid_cwd", bad_cwd.value


async def test_large_requests(sandbox: AgentSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # 3.6 MB on the wire: 12 arguments of 50,000 'é' each, every one escaped as \u00e9.
    args = ["é" * 50_000] * 12
    encoded(monkeypatch, sandbox, lambda m: json.dumps(m).encode())
    status, out, err = await run(sandbox, ["/bin/sh", "-c", 'printf %s "$@" | wc -c', "sh",
                                           *args])
    assert status == ExitStatus(0, None), err
    assert out == b"1200000\n"
    # One 3 MiB argument travels too; no kernel lets a single argument of that size
    # through execve (128 KiB at most), which the command's stderr says.
    status, out, err = await run(sandbox, ["/bin/echo", "x" * (3 << 20)])
    assert status == ExitStatus(127, None)
    assert err == b"chaser: cannot start command: Argument list too long: '/bin/echo'\n"


# -- the rest of a command's start ---------------------------------------------------------

async def test_a_command_starts_as_agent_py_started_it(sandbox: AgentSandbox) -> None:
    script = ("umask; pwd; ps -o pid=,pgid=,sid= -p $$ | awk '{print ($1==$2 && $2==$3)}'; "
              "grep -E '^(SigIgn|SigBlk)' /proc/self/status; ls /proc/self/fd | wc -l; "
              "cat; trap -p")
    status, out, _ = await run(sandbox, ["/bin/bash", "-c", script], cwd="/tmp", stdin=b"in\n")
    assert status == ExitStatus(0, None)
    assert out.decode().split("\n") == [
        "0022", "/tmp", "1", "SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000",
        "4", "in", ""], out  # 0-2 and ls's own directory fd
    status, _, err = await run(sandbox, ["/nonexistent"])
    assert status == ExitStatus(127, None)
    assert err == (b"chaser: cannot start command: this image has no /nonexistent "
                   b"(No such file or directory)\n")


async def test_signals_and_kills(sandbox: AgentSandbox) -> None:
    async def start(script: str) -> tuple[AgentProcess, int]:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.close(err_r)
        proc = await sandbox.spawn(ProcessSpec(["/bin/bash", "-c", script], ENV, "/"),
                                   ProcessIO(out_w, err_w))
        return proc, out_r

    proc, out = await start("trap 'echo term; exit 3' TERM; setsid sleep 300 & "
                            "until [ $(ps -o sid= -p $!) = $! ]; do sleep 0.01; done; "
                            "echo up; wait")
    assert await asyncio.to_thread(os.read, out, 100) == b"up\n"
    proc.signal(15)  # to its process group: not the setsid'd sleep
    assert await asyncio.wait_for(proc.wait(), 10) == ExitStatus(3, None)
    assert await asyncio.to_thread(os.read, out, 100) == b"term\n"
    os.close(out)
    proc, out = await start("setsid sleep 301 & sleep 302 & echo up; wait")
    assert await asyncio.to_thread(os.read, out, 100) == b"up\n"
    proc.signal(9)  # the whole tree below its shepherd
    assert await asyncio.wait_for(proc.wait(), 10) == ExitStatus(None, 9)
    assert await asyncio.to_thread(read_all, out) == b""  # every holder of its pipe gone
    _, ps, _ = await run(sandbox, ["/bin/sh", "-c", "pgrep -fc 'sleep 30[012]'"])
    assert ps == b"1\n", ps  # only the first command's setsid'd sleep, left running


async def test_a_command_that_kills_its_shepherd_loses_its_processes(
        sandbox: AgentSandbox) -> None:
    status, _, _ = await run(sandbox, ["/bin/bash", "-c",
                                       "setsid sleep 303 & sleep 0.2; kill -9 $PPID; sleep 5"])
    assert status == ExitStatus(None, 9)  # its shepherd could not report it
    _, ps, _ = await run(sandbox, ["/bin/sh", "-c", "pgrep -fc 'sleep [35]0?3?$' || true"])
    assert ps == b"0\n", ps  # swept: the command, and what it had started


async def test_a_full_process_table_refuses_a_spawn(runtime: BwrapRuntime) -> None:
    if not runtime.cgroups.describe().get("pids"):
        pytest.skip("no pids controller here")
    box = await runtime.start(SandboxSpec(name="pids_" + secrets.token_hex(6),
                                          limits=ResourceLimits(pids=12)))
    try:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.close(err_r)
        fill = ("import os, time\n"
                "while True:\n"
                "    try:\n"
                "        if os.fork() == 0:\n"
                "            time.sleep(100); os._exit(0)\n"
                "    except BlockingIOError:\n"
                "        break\n"
                "print('full', flush=True); time.sleep(100)")
        filler = await box.spawn(ProcessSpec(["/usr/bin/python3", "-c", fill], ENV, "/"),
                                 ProcessIO(out_w, err_w))
        assert await asyncio.to_thread(os.read, out_r, 100) == b"full\n"
        with pytest.raises(OverLimit) as e:
            await run(box, ["/bin/true"])
        assert e.value.code == "pids_limit" and "process limit" in str(e.value)
        filler.signal(9)
        assert await asyncio.wait_for(filler.wait(), 10) == ExitStatus(None, 9)
        os.close(out_r)
        assert (await run(box, ["/bin/echo", "room again"]))[1] == b"room again\n"
    finally:
        await box.close()


# -- what no server sends ---------------------------------------------------------------------

MALFORMED = [
    b"", b"not json", b"{", b'{"op": "spawn"', b"[]", b"null", b'"spawn"', b"{}",
    b'{"op": "spawn"}',  # no id: nobody to answer
    b'{"op": "spawn", "id": "7", "argv": ["/bin/true"], "env": {}}',
    b'{"op": "spawn", "id": 1.5, "argv": ["/bin/true"], "env": {}}',
    b'{"op": "spawn", "id": 99999999999999999999999, "argv": ["/bin/true"], "env": {}}',
    b'{"op": "spawn", "id": 8, "argv": ["/bin/true"], "env": {}} trailing',
    b'{"op": "spawn", "id": 9, "argv": ["/bin/\xff\xfe"], "env": {}',
    b'{"op": "spawn", "id": 01, "argv": [], "env": {}}',
    b'{"op": "spawn", "id": 10, "argv": ["\\u12"], "env": {}}',
    b'{"op": "spawn", "id": 11, "argv": ["raw\ncontrol"], "env": {}}',
    b'{"op": "kill", "pid": 1, "signal": 9}', b'{"op": "kill", "pid": -1, "signal": 9}',
    b'{"op": "kill", "pid": 2, "signal": 99999}', b'{"op": "kill", "pid": "x", "signal": 9}',
    b'{"op": "kill"}', b'{"op": "kill\\u0000", "pid": 2, "signal": 9}', b'{"op": 5}',
    b'{"op": "nope", "x": [1, 2.5e10, -0, true, false, null, NaN, -Infinity, {"a": []}]}',
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"op": "spawn", "x": "' + b"\\u00e9" * 500_000 + b'"',
    b"\0" * 1000, bytes(range(256)),
]


async def test_malformed_packets_do_not_end_the_agent(sandbox: AgentSandbox) -> None:
    pid = agent_host_pid(sandbox)
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    for packet in MALFORMED:
        # Each carries a pipe's write end: the agent must close what it drops.
        r, w = os.pipe()
        await asyncio.to_thread(socket.send_fds, sandbox.sock, [packet], [w])
        os.close(w)
        assert await asyncio.wait_for(asyncio.to_thread(os.read, r, 1), 10) == b"", packet[:80]
        os.close(r)
        assert sandbox.alive, packet[:80]
    assert len(os.listdir(f"/proc/{pid}/fd")) == fds_before
    assert (await run(sandbox, ["/bin/echo", "alive"]))[1] == b"alive\n"
    assert sandbox.failure is None


# -- the binary outside a session --------------------------------------------------------------

def test_agent_mode_refuses_to_run_but_as_pid_1(runtime: BwrapRuntime) -> None:
    binary = runtime.rootfs / ".chaser" / "agent"
    # In a PID namespace of its own all the same, as a child of its PID 1 (a shell): were
    # the guard missing, its sweep could only reach that namespace.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c",
         f'"{binary}"; echo "rc=$?"; ls /proc | grep -c "^[0-9]"'],
        stdin=theirs.fileno(), capture_output=True, timeout=30)
    theirs.close()
    assert proc.stderr == b"chaser agent: must run as PID 1 of a sandbox\n", proc
    assert proc.stdout == b"rc=2\n3\n", proc  # the shell, ls and grep: nothing was killed
    assert ours.recv(100) == b""  # the end of the channel: it did not even say "ready"
    ours.close()
    # Arguments do not get past the guard either (only `exec` is another entry).
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c",
                           f'"{binary}" x; echo $?'],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert proc.stdout == b"2\n" and b"must run as PID 1" in proc.stderr, proc


async def test_oneshot_entry(runtime: BwrapRuntime) -> None:
    assert images.oneshot_argv(runtime.rootfs) == ["/.chaser/agent", "exec"]

    async def once(argv: list[str], env: dict[str, str], cwd: str = "/") -> Result:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        spec = SandboxSpec(name="once_" + secrets.token_hex(6))
        proc = await runtime.run_once(spec, ProcessSpec(argv, env, cwd), ProcessIO(out_w, err_w))
        out, err = await asyncio.gather(asyncio.to_thread(read_all, out_r),
                                        asyncio.to_thread(read_all, err_r))
        return await proc.wait(), out, err

    big = "echo " + "é" * 60_000 + " >/dev/null; "  # 120 kB: travels in two halves
    status, out, err = await once(
        ["/bin/bash", "-c", big + "umask; pwd; env | sort; echo \"$0 $#\""],
        {"PATH": "/usr/bin:/bin", "ÜNÏ": "çödé"}, "/tmp")
    assert status == ExitStatus(0, None), err
    assert out.decode().split("\n") == ["0022", "/tmp", "PATH=/usr/bin:/bin", "PWD=/tmp",
                                        "SHLVL=1", "_=/usr/bin/env", "ÜNÏ=çödé",
                                        "/bin/bash 0", ""], out
    status, out, err = await once(["/no/such/shell", "-c", "echo hi"], {"PATH": "/usr/bin"})
    assert status == ExitStatus(127, None) and out == b""
    assert err == (b"chaser: cannot start command: this image has no /no/such/shell "
                   b"(No such file or directory)\n")


# -- building it, and the fallback without a compiler ----------------------------------------

def test_the_source_compiles_without_warnings(tmp_path: Path) -> None:
    cc = agent_build.compiler()
    assert cc is not None, "gcc is not installed (scripts/install.sh installs it)"
    proc = subprocess.run([cc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
                           str(tmp_path / "agent"), str(agent_build.SOURCE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_builds_are_reused_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "agent.c"
    shutil.copy(agent_build.SOURCE, source)
    first = agent_build.build_agent(tmp_path / "out", source)
    assert first is not None and first.stat().st_mode & 0o777 == 0o755
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(agent_build, "compiler", lambda: None)  # reuse needs no compiler
    assert agent_build.build_agent(tmp_path / "out", source) == first
    assert first.stat().st_mtime_ns == mtime
    source.write_text(source.read_text() + "\n/* changed */\n")
    assert agent_build.build_agent(tmp_path / "out", source) is None  # and no compiler
    monkeypatch.undo()
    second = agent_build.build_agent(tmp_path / "out", source)
    assert second is not None and second != first
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [second.name]
    source.write_text("this is not C\n")
    assert agent_build.build_agent(tmp_path / "out", source) is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [second.name]


async def test_the_python_agent_is_the_fallback(tmp_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_build, "build_agent", lambda out_dir: None)
    rt = await _runtime(tmp_root)
    try:
        assert not images.has_static_agent(rt.rootfs)
        assert images.agent_argv(rt.rootfs)[-1] == "/.chaser/agent.pyc"
        assert images.oneshot_argv(rt.rootfs)[:2] == ["/bin/sh", "-c"]
        box = await rt.start(SandboxSpec(name="pyagent_" + secrets.token_hex(6)))
        try:
            status, out, _ = await run(box, ["/bin/sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; "
                                             "echo; echo \"$1\"", "sh", "ünï 😀"])
            assert status == ExitStatus(0, None)
            assert out.decode() == "/usr/bin/python3 -I -S /.chaser/agent.pyc \nünï 😀\n"
            await check_tty_spawn(box)
        finally:
            await box.close()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        once = await rt.run_once(SandboxSpec(name="pyonce_" + secrets.token_hex(6)),
                                 ProcessSpec(["/bin/sh", "-c", "echo one-shot"], ENV, "/"),
                                 ProcessIO(out_w, err_w))
        assert await asyncio.to_thread(read_all, out_r) == b"one-shot\n"
        os.close(err_r)
        assert await once.wait() == ExitStatus(0, None)
    finally:
        await rt.close()


# -- terminals ---------------------------------------------------------------------------------

async def read_terminal(master: int, until: bytes, timeout: float = 10.0) -> bytes:
    """What the terminal printed, up to `until` (its master side, read off the loop)."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while until not in data:
        assert loop.time() < deadline, data
        try:
            chunk = await asyncio.to_thread(os.read, master, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        data += chunk
    return data


async def check_tty_spawn(box: AgentSandbox) -> None:
    proc = await box.spawn_tty(ProcessSpec(
        ["/bin/sh", "-c", "tty; stty size; ps -o tty=,pid= -p $$; read line; echo got-$line; "
         "exit 3"], ENV, "/"), cols=132, rows=43)
    try:
        assert proc.master >= 0
        os.write(proc.master, b"typed\n")
        out = await read_terminal(proc.master, b"got-typed")
        text = out.decode().replace("\r\n", "\n")
        # A terminal of the sandbox's own devpts, its size as asked, the command's
        # controlling terminal (ps shows it), its input and echo through the line discipline.
        lines = text.split("\n")
        assert {"/dev/pts/0", "43 132", "typed", "got-typed"} <= set(lines), text
        assert any(line.split() and line.split()[0] == "pts/0" for line in lines), text
        assert await asyncio.wait_for(proc.wait(), 10) == ExitStatus(3, None)
    finally:
        os.close(proc.master)


async def test_a_tty_spawn_runs_on_a_terminal_of_the_sandbox(sandbox: AgentSandbox) -> None:
    await check_tty_spawn(sandbox)


async def test_tty_spawns_the_agent_cannot_take_are_refused(sandbox: AgentSandbox) -> None:
    spec = {"argv": ["/bin/true"], "env": ENV, "cwd": "/", "tty": True}
    for bad in ({"cols": 0, "rows": 24}, {"cols": 80, "rows": 70000}, {"cols": 80},
                {"cols": "80", "rows": 24}):
        with pytest.raises(SandboxFailed):
            await sandbox._spawn({**spec, **bad}, [], tty=True)
    r, w = os.pipe()
    with pytest.raises(SandboxFailed):  # a tty spawn carries no descriptors
        await sandbox._spawn({**spec, "cols": 80, "rows": 24}, [w], tty=True)
    os.close(r)
    assert sandbox.alive and sandbox.failure is None
    assert (await run(sandbox, ["/bin/echo", "alive"]))[1] == b"alive\n"


@pytest.mark.parametrize("fake", ["a pipe", "no fd", "two fds", "host tty"])
async def test_a_started_terminal_must_come_with_its_master_only(fake: str) -> None:
    """The sandbox is untrusted: an agent answering a tty spawn with anything but one
    terminal master (a pipe, a host terminal's other side, extra fds) ends the sandbox,
    and the server never uses what it sent."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    keeper = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    box = AgentSandbox("fake_" + secrets.token_hex(4), keeper, ours, None)
    theirs.send(b'{"op": "ready", "pid": 1}')
    await box.ready()
    spawn = asyncio.ensure_future(box.spawn_tty(ProcessSpec(["/bin/sh"], ENV, "/"), 80, 24))
    packet = await asyncio.to_thread(theirs.recv, 65536)
    assert json.loads(packet)["tty"] is True
    r, w = os.pipe()
    master, slave = os.openpty()
    fds = {"a pipe": [r], "no fd": [], "two fds": [master, r], "host tty": [slave]}[fake]
    started = json.dumps({"op": "started", "id": json.loads(packet)["id"], "pid": 2}).encode()
    await asyncio.to_thread(socket.send_fds, theirs, [started], fds)
    with pytest.raises(SandboxFailed):
        await asyncio.wait_for(spawn, 10)
    assert box.failure is not None and "terminal" in box.failure
    assert not box.alive
    for fd in (r, w, master, slave):
        os.close(fd)
    theirs.close()
    await box.close()


async def test_a_tty_spawn_can_start_with_echo_off(sandbox: AgentSandbox) -> None:
    proc = await sandbox.spawn_tty(ProcessSpec(
        ["/bin/sh", "-c", "stty -a | grep -o -- '-echo ' ; read line; echo got-$line"],
        ENV, "/"), cols=80, rows=24, echo=False)
    try:
        os.write(proc.master, b"secret\n")
        out = (await read_terminal(proc.master, b"got-secret")).decode()
        assert "-echo" in out and "secret\r\n" not in out.replace("got-secret", ""), out
        assert await asyncio.wait_for(proc.wait(), 10) == ExitStatus(0, None)
    finally:
        os.close(proc.master)
