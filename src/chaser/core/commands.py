"""A running command: its pipes, its output log, its timeout, stdin and signals.

The runtime starts the process with pipes made here; this module pumps them into the
command's `OutputLog` and records how the command ended. The same class serves
foreground and background commands, in sessions and in one-shot sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chaser.core.output import STDERR, STDOUT, OutputLog
from chaser.core.util import now_iso, signal_name
from chaser.errors import BadRequest, Conflict, OverLimit, Unavailable
from chaser.runtime.base import ExitStatus, Process, ProcessIO

log = logging.getLogger("chaser.core")

F_SETPIPE_SZ = 1031
PIPE_BYTES = 1024 * 1024  # bigger pipes: fewer wake-ups for chatty commands
DRAIN_GRACE_S = 0.25  # after exit, how long output held open by orphans may still arrive
MAX_STDIN_BUFFER = 16 * 1024 * 1024
STDIN_HIGH_WATER = 1024 * 1024  # a streamed stdin waits for the command past this
STDIN_IDLE_S = 300.0  # a streamed stdin the command takes nothing of this long ends
READ_BYTES = 256 * 1024  # per wake-up of a pipe, as asyncio's pipe transports read

Launcher = Callable[[ProcessIO], Awaitable[Process]]
OnEnd = Callable[["RunningCommand"], None]


class _Pump:
    """Reads one pipe into the log, straight from the event loop's reader callback (a
    transport per pipe costs more than the reads themselves for a short command)."""

    def __init__(self, fd: int, out: OutputLog, stream: int) -> None:
        self.fd = fd
        self.out = out
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.out.append(self.stream, data)
        else:
            self.close()

    def close(self) -> None:
        """Stop reading (at the end of the pipe, or when output held open by orphans is
        no longer waited for)."""
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


class _StdinFlow(asyncio.Protocol):
    """Flow control of a command's stdin pipe: `writable()` waits while the transport's
    buffer is over its high-water mark, and returns at once when the pipe is gone."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._ready.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.set_write_buffer_limits(high=STDIN_HIGH_WATER)

    def pause_writing(self) -> None:
        self._ready.clear()

    def resume_writing(self) -> None:
        self._ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def writable(self) -> None:
        await self._ready.wait()


def _pipes(n: int) -> list[tuple[int, int]]:
    """`n` fresh pipes; out of file descriptors, none and a 503 the client may retry."""
    made: list[tuple[int, int]] = []
    try:
        for _ in range(n):
            made.append(os.pipe2(os.O_CLOEXEC))
    except OSError as e:
        for pair in made:
            for fd in pair:
                os.close(fd)
        raise Unavailable(f"the server cannot start a command now ({e.strerror}); try "
                          "again later", retry_after=5) from None
    return made


@dataclass
class CommandState:
    """What is recorded about a command (the store's row, minus output)."""

    id: str
    session_id: str
    tenant: str
    command: str
    cwd: str
    background: bool
    started_at: str = field(default_factory=now_iso)
    pid: int | None = None
    status: str = "running"
    kind: str = "command"  # or "pty": a terminal
    exit_code: int | None = None
    signal: str | None = None
    end_reason: str | None = None
    ended_at: str | None = None

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RunningCommand:
    """One command from start to end; `finished` resolves once its output is complete."""

    def __init__(self, state: CommandState, output: OutputLog) -> None:
        self.state = state
        self.output = output
        self.process: Process | None = None
        self.exit_status: ExitStatus | None = None
        self.finished = asyncio.Event()
        self.started_mono = time.monotonic()
        self.ended_mono: float | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._stdin_flow = _StdinFlow()
        self._pumps: list[_Pump] = []
        self._timed_out = False
        self._end_reason: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.abandoned = False  # its request went away (see abandon)
        self.saved: asyncio.Future[None] | None = None  # its end being stored, once ended
        output.on_failure = self._storage_failed

    @property
    def running(self) -> bool:
        return not self.finished.is_set()

    async def start(self, launch: Launcher, *, stdin_pipe: bool, stdin_text: bytes | None,
                    timeout_ms: int | None) -> None:
        """Start the process with fresh pipes; raises what the runtime raises."""
        loop = asyncio.get_running_loop()
        (out_r, out_w), (err_r, err_w), *stdin = _pipes(3 if stdin_pipe or stdin_text is not None
                                                        else 2)
        in_r, in_w = stdin[0] if stdin else (None, None)
        for fd in (out_r, err_r):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self.process = await launch(ProcessIO(stdout=out_w, stderr=err_w, stdin=in_r))
        except BaseException:
            for leftover in (out_r, err_r, in_w):
                if leftover is not None:
                    os.close(leftover)
            self.output.close()
            raise
        self.state.pid = self.process.pid
        if self.abandoned:  # its request left while it started
            self.abandon()
        self._pumps = [_Pump(out_r, self.output, STDOUT), _Pump(err_r, self.output, STDERR)]
        if in_w is not None:
            os.set_blocking(in_w, False)
            transport, self._stdin_flow = await loop.connect_write_pipe(
                _StdinFlow, os.fdopen(in_w, "wb", 0))
            self._stdin = transport
            if stdin_text is not None:
                self.write_stdin(stdin_text, eof=True)
        if timeout_ms is not None:
            self._timer = loop.call_later(timeout_ms / 1000, self._on_timeout)

    async def run(self, on_end: OnEnd | None = None) -> None:
        """Wait for the process, drain its output, record the end, call `on_end`, then
        set `finished`. `on_end` runs before anyone waiting on `finished` does; what it
        stores it starts, and does not wait for (the answer does not wait on the disk)."""
        assert self.process is not None
        status = self.exit_status = await self.process.wait()
        if self._timer is not None:
            self._timer.cancel()
        await self._drain()
        self._record_end(status)
        self._close_stdin()
        self.output.close()
        self.ended_mono = time.monotonic()
        try:
            if on_end is not None:
                on_end(self)
        finally:
            self.finished.set()

    async def _drain(self) -> None:
        waiting = [p.done for p in self._pumps if not p.done.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=DRAIN_GRACE_S)
        for p in self._pumps:
            p.close()

    def _storage_failed(self, error: OSError) -> None:
        """Output can no longer be recorded (the disk is full): end the command rather
        than lose what it prints."""
        log.warning("command %s: cannot record its output (%s); ending it", self.state.id, error)
        if self.running and self.process is not None:
            self.kill(signal.SIGKILL, reason="storage_full")

    def _record_end(self, status: ExitStatus) -> None:
        s = self.state
        s.ended_at = now_iso()
        if self._timed_out:
            s.status, s.signal, s.end_reason = "timed_out", "KILL", "timeout"
        elif status.signal is not None:
            s.status, s.signal = "killed", signal_name(status.signal)
            s.end_reason = self._end_reason or "signal"
        else:
            s.status, s.exit_code, s.end_reason = "exited", status.code, "exit"

    def _on_timeout(self) -> None:
        self._timed_out = True
        self.kill(signal.SIGKILL)

    # -- control ----------------------------------------------------------------------

    def abandon(self) -> None:
        """Nobody waits for this command any more: end its whole tree now, or as soon as
        it has started."""
        self.abandoned = True
        if self.running and self.process is not None:
            with contextlib.suppress(Conflict):
                self.kill(signal.SIGKILL, reason="client_disconnected")

    def kill(self, signum: int, reason: str | None = None) -> None:
        """Signal the command's whole process group."""
        if not self.running or self.process is None:
            raise Conflict(f"command {self.state.id} has already finished", "command_finished")
        if reason:
            self._end_reason = reason
        self.process.signal(signum)

    def write_stdin(self, data: bytes, eof: bool = False) -> int:
        """Queue bytes for the command's stdin, in order; `eof` closes it afterwards."""
        if not self.running or self._stdin is None or self._stdin.is_closing():
            raise Conflict(f"stdin of command {self.state.id} is closed", "command_finished")
        if self._stdin.get_write_buffer_size() + len(data) > MAX_STDIN_BUFFER:
            raise OverLimit("the command is not reading its stdin; too much input is queued",
                            "stdin_buffer_full")
        if data:
            self._stdin.write(data)
        if eof:
            self._stdin.close()  # flushes what is queued, then closes
        return len(data)

    async def stdin_room(self) -> None:
        """Wait while the command's stdin is over its high-water mark (or until the
        command ends): whoever writes is held back at the pace the command reads."""
        if self.running and self._stdin is not None and not self._stdin.is_closing():
            await self._stdin_flow.writable()

    async def feed_stdin(self, chunks: AsyncIterator[bytes], eof: bool,
                         gone: Callable[[], Awaitable[None]] | None = None,
                         idle_s: float = STDIN_IDLE_S) -> int:
        """Write `chunks` to stdin as the command reads them: at most STDIN_HIGH_WATER
        bytes wait in the server, and `chunks` is read no faster (a streamed request
        body then waits in the client's socket). The count written; 409 once the
        command's stdin is closed (the command ended, or closed it).

        A wait for the command is never endless: it ends when `gone()` returns (the
        writer left: 400 `upload_cut_off`) or the command took nothing for `idle_s`
        (429 `stdin_buffer_full`). The command keeps running either way, its stdin open
        with what was written, for another request to go on."""
        n = 0
        async for chunk in chunks:
            if not self.running or self._stdin is None or self._stdin.is_closing():
                raise Conflict(f"stdin of command {self.state.id} is closed after {n} bytes",
                               "command_finished")
            self._stdin.write(chunk)
            n += len(chunk)
            await self._room(n, gone, idle_s)
        if eof:
            self.write_stdin(b"", eof=True)
        return n

    async def _room(self, n: int, gone: Callable[[], Awaitable[None]] | None,
                    idle_s: float) -> None:
        """Wait for room in stdin, racing the writer's departure and the idle time."""
        if self._stdin_flow.ready:
            return
        room = asyncio.ensure_future(self._stdin_flow.writable())
        left = asyncio.ensure_future(gone()) if gone is not None else None
        try:
            await asyncio.wait([w for w in (room, left) if w is not None], timeout=idle_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (room, left):
                if waiting is not None and not waiting.done():
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
        if room.done():
            return
        if left is not None and left.done():
            left.exception()  # retrieved: a body that failed to read left all the same
            raise BadRequest(f"the stdin body was cut off after {n} bytes (the command "
                             "goes on, its stdin still open)", "upload_cut_off")
        raise OverLimit(f"the command read none of its stdin for {idle_s:g} s; {n} bytes "
                        "of this body were written (it goes on, its stdin still open)",
                        "stdin_buffer_full", retry_after=1)

    def _close_stdin(self) -> None:
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.abort()
