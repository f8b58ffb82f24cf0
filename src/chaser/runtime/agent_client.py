"""The server's side of the in-sandbox agent protocol (see `agent.py` for the messages)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from chaser.errors import Conflict, OverLimit, PayloadTooLarge, SandboxFailed, ServiceError
from chaser.runtime.base import ExitStatus, ProcessIO, ProcessSpec
from chaser.runtime.cgroups import Cgroup
from chaser.runtime.usage import ResourceUsage
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.runtime")

MAX_AGENT_PACKET = 4096  # the agent's messages are tiny; anything bigger is an attack
# Room for more descriptors than any message may carry: a message with too many is seen
# whole (and refused) rather than cut by the kernel.
FD_SPACE = socket.CMSG_SPACE(4 * 4)
PTY_MAJOR, PTMX_MINOR = 5, 2  # a terminal's master side, opened through /dev/ptmx
TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the pty's number, on a master only
# The largest message to the agent. The socket's buffer is forced to 8 MiB, but the
# kernel refuses SEQPACKET messages past about 4 MiB (ENOBUFS) on some kernels.
MAX_SEND_BYTES = 4 * 1024 * 1024 - 128 * 1024
MAX_MESSAGES_PER_WAKEUP = 64
CLOSE_GRACE_S = 2.0
# The agent (PID 1, which commands cannot stop) answers each spawn within 10 s even when
# a command stops the new shepherd; past this, the machine is badly overloaded.
SPAWN_TIMEOUT_S = 30.0
AGENT_REPORT_GRACE_S = 1.0


class AgentProcess:
    """A process the agent forked; `pid` is its pid inside the sandbox.

    The agent runs as the same uid as the commands, so a command can stop or trace it.
    What must hold even then does not depend on it: SIGKILL (timeouts, deletes) is also
    delivered from the host, and a command whose group is gone counts as ended even when
    the agent never reports it.
    """

    def __init__(self, sandbox: AgentSandbox, pid: int, exited: asyncio.Future[ExitStatus],
                 master: int = -1) -> None:
        self.sandbox = sandbox
        self.pid: int | None = pid
        self.master = master  # a tty spawn's terminal (master side), else -1
        self._exited = exited
        self._watchdog: asyncio.Task[None] | None = None

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exited)

    def signal(self, signum: int) -> None:
        if self._exited.done() or self.pid is None:
            return
        with contextlib.suppress(SandboxFailed):
            self.sandbox.send({"op": "kill", "pid": self.pid, "signal": signum})
        if signum == signal.SIGKILL and self._watchdog is None:
            self._watchdog = self.sandbox.tasks.spawn(self._confirm_end())

    async def _confirm_end(self) -> None:
        """After a SIGKILL, settle the exit ourselves if the agent does not report it.

        The agent (PID 1, which no command can stop) kills the command's whole tree; this
        is the fallback for an agent that is gone. The host's view means reading /proc
        for every process of the sandbox, which can be thousands: it runs in a thread,
        never on the event loop, and only after the agent had its chance.
        """
        assert self.pid is not None
        await asyncio.sleep(AGENT_REPORT_GRACE_S)
        while not self._exited.done():
            if not await asyncio.to_thread(self.sandbox.kill_group_from_host, self.pid):
                if not self._exited.done():
                    self._exited.set_result(ExitStatus(None, signal.SIGKILL))
                return
            await asyncio.sleep(0.2)


class AgentSandbox:
    """A running sandbox: its bwrap process, its cgroup and the socket to its agent."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, sock: socket.socket,
                 cgroup: Cgroup | None) -> None:
        self.name = name
        self.proc = proc
        self.sock = sock
        self.cgroup = cgroup
        # Where its files are, for `usage()`: a workspace disk's mount point, or the
        # size of each of its private tmpfs mounts (set by the runtime that made it).
        self.workspace_dir: Path | None = None
        self.tmpfs_bytes: int | None = None
        self._ids = itertools.count(1)
        self._last_id = 0  # ids above it were never issued
        self.failure: str | None = None  # why we ended the sandbox, when it was our doing
        self._closing = False  # close() was asked for: the agent's end is ours
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._started: dict[int, asyncio.Future[int]] = {}
        self._terminals: dict[int, int] = {}  # tty spawn id -> master fd, once started
        self._tty_requests: set[int] = set()  # tty spawns not yet answered
        self._exits: dict[int, asyncio.Future[ExitStatus]] = {}
        self._closed = asyncio.Event()
        self.tasks = TaskSet(f"sandbox {name}")  # its own close, its stderr's logging
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def usage(self) -> ResourceUsage | None:
        """What the sandbox uses now, from the host's side (blocking: call it from a
        thread); None once it has ended or when it has no cgroup."""
        if self.cgroup is None or not self.alive:
            return None
        return self.cgroup.usage(self.workspace_dir, self.tmpfs_bytes)

    async def ready(self) -> None:
        # Shielded: a waiter cancelled (a server closing mid-start) must not cancel the
        # future itself, or the agent's one 'ready' would then read as a second one.
        await asyncio.shield(self._ready)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        if not self.alive:
            raise SandboxFailed(f"sandbox {self.name} is not running")
        try:  # UTF-8, not \u escapes: six bytes a character would overflow the socket
            data = json.dumps(msg, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: only the escaped form carries it
            data = json.dumps(msg).encode()
        if len(data) > MAX_SEND_BYTES:
            raise _too_large()
        try:
            socket.send_fds(self.sock, [data], fds or [])
        except BlockingIOError:
            # The agent reads as fast as it can: megabytes of unread requests mean it was
            # stopped or traced from inside. Waiting would block the server; end the sandbox.
            self._shutdown()
            raise SandboxFailed(f"sandbox {self.name} stopped answering (its agent is "
                                "wedged) and has been ended") from None
        except OSError as e:
            if e.errno in (errno.EMSGSIZE, errno.ENOBUFS, errno.ENOMEM):
                raise _too_large() from None  # this request is too large; the sandbox is fine
            self._shutdown()
            raise SandboxFailed(f"sandbox {self.name} is gone: {e}") from e

    async def spawn(self, spec: ProcessSpec, io: ProcessIO) -> AgentProcess:
        """Ask the agent to fork `spec` with the caller's pipes; returns once it runs."""
        fds = [fd for fd in (io.stdin, io.stdout, io.stderr) if fd is not None]
        return await self._spawn({"argv": spec.argv, "env": spec.env, "cwd": spec.cwd,
                                  "stdin": io.stdin is not None}, fds)

    async def spawn_tty(self, spec: ProcessSpec, cols: int, rows: int,
                        echo: bool = True) -> AgentProcess:
        """Ask the agent to fork `spec` on a new terminal of the sandbox's own devpts;
        the process's `master` is the terminal's other side (the caller owns it)."""
        return await self._spawn({"argv": spec.argv, "env": spec.env, "cwd": spec.cwd,
                                  "tty": True, "cols": cols, "rows": rows, "echo": echo},
                                 [], tty=True)

    async def _spawn(self, fields: dict[str, Any], fds: list[int], tty: bool = False) -> AgentProcess:
        req = self._last_id = next(self._ids)
        started: asyncio.Future[int] = self._loop.create_future()
        exited: asyncio.Future[ExitStatus] = self._loop.create_future()
        self._started[req] = started
        self._exits[req] = exited
        if tty:
            self._tty_requests.add(req)
        try:
            self.send({"op": "spawn", "id": req, **fields}, fds)
        except (SandboxFailed, PayloadTooLarge):
            self._started.pop(req, None)
            self._exits.pop(req, None)
            self._tty_requests.discard(req)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        try:
            pid = await self._started_pid(req, started)
        except BaseException:
            self._exits.pop(req, None)
            _close(self._terminals.pop(req, -1))
            raise
        finally:
            self._tty_requests.discard(req)
        return AgentProcess(self, pid, exited, self._terminals.pop(req, -1))

    async def _started_pid(self, req: int, started: asyncio.Future[int]) -> int:
        try:
            return await asyncio.wait_for(started, SPAWN_TIMEOUT_S)
        except TimeoutError:
            self._shutdown()
            raise SandboxFailed(f"sandbox {self.name} did not start the command: its agent "
                                "is not answering (stopped or traced by a command?), so the "
                                "sandbox has been ended") from None

    # -- the host's own view, independent of the agent ----------------------------------

    def _members(self) -> list[tuple[int, int, str]]:
        """(host pid, in-sandbox process group, state) of every process of the sandbox."""
        pids = self.cgroup.pids() if self.cgroup is not None else descendants(self.proc.pid)
        out = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except (FileNotFoundError, ProcessLookupError):
                continue
            nspgid = fields.get("NSpgid", "").split()
            if nspgid:
                out.append((pid, int(nspgid[-1]), fields.get("State", "?").strip()[:1]))
        return out

    def kill_group_from_host(self, pgid: int) -> bool:
        """SIGKILL every live process in the sandbox whose process group is `pgid`;
        False when there was none left. Blocking: call it from a thread."""
        found = False
        for pid, group, state in self._members():
            if group == pgid and state != "Z":
                found = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return found

    def _on_readable(self) -> None:
        """Read what the agent sent. Everything from a sandbox is untrusted: packets are
        bounded, each wake-up does bounded work (the loop serves everyone else between
        wake-ups), and a malformed or impossible message ends this sandbox."""
        for _ in range(MAX_MESSAGES_PER_WAKEUP):
            try:
                data, ancdata, flags, _ = self.sock.recvmsg(MAX_AGENT_PACKET, FD_SPACE,
                                                            socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, ancdata, flags = b"", [], 0
            fds = _fds_of(ancdata)
            if not data:
                for fd in fds:
                    os.close(fd)
                self._shutdown()
                return
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    raise ProtocolViolation(f"a message over {MAX_AGENT_PACKET} bytes or "
                                            "with too many descriptors")
                self._handle(json.loads(data), fds)
                fds = []  # taken
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                self._violation(f"a malformed message ({type(e).__name__})")
                return
            except ProtocolViolation as e:
                self._violation(str(e))
                return
            finally:
                for fd in fds:
                    os.close(fd)
            if not self.alive:
                return

    def _handle(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg["op"]
        if fds and not (op == "started" and _req_id(msg) in self._tty_requests):
            raise ProtocolViolation("descriptors with a message that takes none")
        if op == "started" and _req_id(msg) in self._tty_requests:
            if len(fds) != 1 or not _is_terminal_master(fds[0]):
                raise ProtocolViolation("a terminal's 'started' without its master")
            if _req_id(msg) in self._started:
                self._terminals[_req_id(msg)] = fds.pop()
        if op == "ready":
            if self._ready.done():
                raise ProtocolViolation("a second 'ready'")
            self._ready.set_result(None)
        elif op == "started":
            fut = self._started.pop(_req_id(msg), None)
            if fut is None:
                raise ProtocolViolation("'started' for no pending spawn")
            if not fut.done():
                fut.set_result(_int(msg["pid"]))
        elif op == "failed":
            req = _req_id(msg)
            fut = self._started.pop(req, None)
            if fut is None:
                raise ProtocolViolation("'failed' for no pending spawn")
            self._exits.pop(req, None)
            reason = str(msg.get("reason") or "spawn_failed")[:64]
            error = str(msg.get("error") or "cannot start the command")[:500]
            if not fut.done():
                fut.set_exception(_refusal(error, reason))
        elif op == "exit":
            req = _req_id(msg)
            if req in self._started or not 0 < req <= self._last_id:
                raise ProtocolViolation("'exit' for a command that never started")
            exit_fut = self._exits.pop(req, None)
            code, sig = msg.get("code"), msg.get("signal")
            if code is not None:
                code = _int(code)
            if sig is not None:
                sig = _int(sig)
            if exit_fut and not exit_fut.done():
                exit_fut.set_result(ExitStatus(code, sig))
        else:
            raise ProtocolViolation("an unknown message")

    def _violation(self, what: str) -> None:
        """End this sandbox: its agent broke the protocol (logged once, bounded)."""
        self.failure = f"the sandbox sent {what} and was ended"
        log.warning("sandbox %s: %s", self.name, self.failure[:300])
        self._shutdown()
        self.tasks.spawn(self.close())

    def _shutdown(self) -> None:
        """The agent is gone: fail what waits on it; its processes died with the sandbox."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self._closing:
            self.tasks.spawn(self._log_agent_stderr())
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        gone = SandboxFailed(f"sandbox {self.name} ended")
        if not self._ready.done():
            self._ready.set_exception(gone)
            self._ready.exception()  # told to whoever awaits it; nobody may, after a cancel
        for fut in self._started.values():
            if not fut.done():
                fut.set_exception(gone)
        for exit_fut in self._exits.values():
            if not exit_fut.done():
                exit_fut.set_result(ExitStatus(None, signal.SIGKILL))
        self._started.clear()
        self._exits.clear()

    async def _log_agent_stderr(self) -> None:
        """The agent went by itself: log what it printed (a crash's traceback), bounded,
        since only the agent holds that pipe but it runs in the sandbox."""
        if self.proc.stderr is None:
            return
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(self.proc.stderr.read(2000), 1.0)
            if data:
                log.warning("sandbox %s: its agent ended and wrote: %r", self.name, data)

    async def close(self) -> None:
        """End the sandbox: closing the socket ends the agent, so bwrap's init exits, the
        kernel kills the rest of the pid namespace and each bwrap reaps its child. Killing
        from outside is the fallback; it can orphan bwrap's init as a zombie for the
        host's init to reap."""
        self._closing = True
        self._shutdown()
        try:
            await asyncio.wait_for(self.proc.wait(), CLOSE_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self.cgroup is not None:
            await asyncio.wrap_future(self.cgroup.remove_later())


class ProtocolViolation(Exception):
    """The agent sent something it never would: the sandbox is compromised or broken."""


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors a message carried (SCM_RIGHTS)."""
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder,
                                   signed=True) for i in range(0, usable, 4)]
    return fds


def _is_terminal_master(fd: int) -> bool:
    """Whether `fd` is the master side of a terminal (what a tty spawn must send back):
    the devpts ptmx device, which answers TIOCGPTN only on a master."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (
                PTY_MAJOR, PTMX_MINOR):
            return False
        fcntl.ioctl(fd, TIOCGPTN, b"\0\0\0\0")
    except OSError:
        return False
    return True


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _int(value: object) -> int:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        raise ProtocolViolation("a field that is not a small integer")
    return value


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("the command, its environment (the session's and the request's "
                           "together) and cwd are too large; send less (a file, or stdin)")


def _refusal(error: str, reason: str) -> ServiceError:
    """The error for a command the agent could not start, by the agent's reason."""
    if reason == "invalid_cwd":
        return Conflict(error, "invalid_cwd")
    if reason == "pids_limit":
        return OverLimit(error, "pids_limit")
    return SandboxFailed(error, "spawn_failed")


def _req_id(msg: dict[str, Any]) -> int:
    return _int(msg["id"])


def descendants(root: int) -> list[int]:
    """Host pids below `root` (for hosts where the sandbox has no cgroup to list)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return sorted(found)
