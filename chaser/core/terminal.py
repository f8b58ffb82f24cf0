"""One terminal: a command on a pseudo-terminal made inside its sandbox.

Its output (agent mode: with the shell's markers taken out) goes to the command's log,
which is also the terminal's scrollback and transcript; agent mode's events are kept
beside it with the offsets they happened at. Clients follow the log at their own pace.
A client that does not read pauses the terminal (its program blocks on a full
terminal, as over ssh), never the server: the terminal stops being read once an
interactive client is `PAUSE_LAG` behind, and is read again once every one of them is
within `RESUME_LAG`. Read-only viewers never pause it; one that falls behind what the
log keeps skips ahead. With nobody attached the terminal runs on (its log is bounded
as every command's) until the grace period ends it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import termios
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from chaser.core.commands import OnEnd, RunningCommand, CommandState, _Pump
from chaser.core.output import STDOUT, OutputLog
from chaser.core.shells import AgentMarkers
from chaser.errors import Conflict
from chaser.runtime.base import TerminalProcess

PAUSE_LAG = 1024 * 1024
RESUME_LAG = 256 * 1024
MAX_INPUT_BUFFER = 1024 * 1024  # input queued for a terminal that is not reading it
MAX_EVENTS = 4096  # agent-mode events kept for clients that reattach
INLINE_READ = 64 * 1024  # log reads this small stay on the event loop (page cache)
FOLLOW_READ = 256 * 1024
KEEPALIVE_S = 15.0

INTERRUPT_GRACE_S = 5.0  # how long an interrupted command has to give the prompt back

Frame = bytes | dict[str, object]


@dataclass(frozen=True)
class LineRun:
    """Where one command's output lies in the terminal's log, and how it ended."""

    start: int
    end: int
    exit_code: int | None  # None: the shell itself ended
    interrupted: bool


class _TerminalPump(_Pump):
    """Reads the terminal's master side into the command (through agent mode's filter)."""

    def __init__(self, fd: int, term: TerminalCommand) -> None:
        self.term = term
        self.paused = False
        super().__init__(fd, term.output, STDOUT)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: every copy of the terminal's other side is closed
            data = b""
        if data:
            self.term.received(data)
        else:
            self.close()

    def pause(self) -> None:
        if not self.paused and self.fd >= 0:
            self.paused = True
            self.loop.remove_reader(self.fd)

    def resume(self) -> None:
        if self.paused and self.fd >= 0:
            self.paused = False
            self.loop.add_reader(self.fd, self._read)


class TerminalCommand(RunningCommand):
    """A command on a terminal, its attached clients and its grace period."""

    def __init__(self, state: CommandState, output: OutputLog, mode: str,
                 markers: AgentMarkers | None, grace_s: float | None) -> None:
        super().__init__(state, output)
        self.mode = mode
        self.markers = markers
        self.grace_s = grace_s
        self.cols, self.rows = 80, 24
        self.events: deque[tuple[int, int, dict[str, object]]] = deque(maxlen=MAX_EVENTS)
        self._event_seq = 0
        self._version = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._pump: _TerminalPump | None = None
        self._clients: dict[int, tuple[bool, Callable[[], int]]] = {}  # id -> (view, pos)
        self._grace: asyncio.TimerHandle | None = None

    async def start_tty(self, launch: Callable[[], Awaitable[TerminalProcess]], *,
                        cols: int, rows: int, echo: bool) -> None:
        """Start the process on its terminal and pump the terminal's master side."""
        try:
            process = await launch()
        except BaseException:
            self.output.close()
            raise
        self.process = process
        self.state.pid = process.pid
        self.cols, self.rows = cols, rows
        master = process.master
        if not echo:  # agent mode: the transcript holds output, not a copy of the input
            attrs = termios.tcgetattr(master)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(master, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        self._pump = _TerminalPump(master, self)
        self._pumps = [self._pump]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(os.dup(master), "wb", 0))
        self._stdin = transport
        if self.abandoned:
            self.abandon()
        self._start_grace()  # ended unless a client attaches in time

    async def run(self, on_end: OnEnd | None = None) -> None:
        await super().run(on_end)
        self._cancel_grace()
        self._notify()

    # -- output -----------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        """Output from the terminal: into the log, events beside it."""
        for piece in self.markers.feed(data) if self.markers is not None else [data]:
            if isinstance(piece, bytes):
                self.output.append(STDOUT, piece)
            else:
                self._event(piece)
        self._notify()
        if self._lag(interactive_only=True) > PAUSE_LAG and self._pump is not None:
            self._pump.pause()

    def _event(self, event: dict[str, object]) -> None:
        self._event_seq += 1
        self.events.append((self._event_seq, self.output.size, event))

    def _lag(self, interactive_only: bool) -> int:
        positions = [pos() for view, pos in self._clients.values()
                     if not (interactive_only and view)]
        return self.output.size - min(positions) if positions else 0

    def progressed(self) -> None:
        """A client took output: read the terminal again once nobody lags far behind."""
        if self._pump is not None and self._pump.paused and \
                self._lag(interactive_only=True) <= RESUME_LAG:
            self._pump.resume()

    def _notify(self) -> None:
        self._version += 1
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _changed_since(self, version: int, timeout: float) -> None:
        if self._version != version:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    # -- input and control ------------------------------------------------------------

    async def type(self, data: bytes) -> None:
        """Input for the terminal, waiting while too much is queued (a program that is
        not reading holds its client back, and nobody else)."""
        while self.running and self._stdin is not None and \
                self._stdin.get_write_buffer_size() > MAX_INPUT_BUFFER:
            await asyncio.sleep(0.01)
        if not self.running:
            raise Conflict(f"terminal {self.state.id} has ended", "command_finished")
        if self.markers is not None and (event := self.markers.typed(data)) is not None:
            self._event(event)
            self._notify()
        self.write_stdin(data)

    def resize(self, cols: int, rows: int) -> None:
        """A new size: the kernel sends SIGWINCH to the terminal's foreground programs."""
        if self._pump is None or self._pump.fd < 0 or not self.running:
            raise Conflict(f"terminal {self.state.id} has ended", "command_finished")
        fcntl.ioctl(self._pump.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.cols, self.rows = cols, rows

    def end(self, reason: str) -> None:
        """End the terminal for good: its whole process tree."""
        if self.running and self.process is not None:
            self.kill(signal.SIGKILL, reason=reason)

    async def run_line(self, line: str, timeout_s: float) -> LineRun:
        """Type one command line into an agent-mode shell and wait for its end; past
        `timeout_s` it is interrupted (^C) as a user would."""
        seq0 = self._event_seq
        await self.type(line.encode() + b"\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        start: int | None = None
        interrupted = False
        while True:
            version = self._version
            for seq, off, ev in list(self.events):
                if seq <= seq0:
                    continue
                if ev["type"] == "command_start" and start is None:
                    start = off
                elif ev["type"] == "command_end" and start is not None:
                    return LineRun(start, off, int(str(ev["exit_code"])), interrupted)
            if not self.running:
                return LineRun(start or self.output.size, self.output.size, None, interrupted)
            left = deadline - loop.time()
            if left <= 0:
                if interrupted:  # ^C did not bring the prompt back: end the shell
                    self.end("timeout")
                    continue
                interrupted = True
                self.write_stdin(b"\x03")
                deadline = loop.time() + INTERRUPT_GRACE_S
                continue
            await self._changed_since(version, left)

    # -- clients ----------------------------------------------------------------------

    async def follow(self, start: int, view: bool) -> AsyncIterator[Frame]:
        """Output from `start` and the events at their offsets, then the exit event;
        the client's place counts for pausing while it is attached (unless `view`)."""
        pos = max(start, self.output.start)
        next_seq = next((seq for seq, off, _ in self.events if off >= pos), self._event_seq + 1)
        key = id(object())
        self._clients[key] = (view, lambda: pos)
        if not view:
            self._cancel_grace()
        try:
            while True:
                version = self._version
                pos = max(pos, self.output.start)  # what a viewer fell behind is gone
                due = [(seq, off, ev) for seq, off, ev in self.events if seq >= next_seq]
                if due and due[0][1] <= pos:
                    seq, off, ev = due[0]
                    next_seq = seq + 1
                    yield {**ev, "offset": off}
                    continue
                limit = due[0][1] - pos if due else FOLLOW_READ
                available = self.output.size - pos
                if available > 0:
                    size = min(limit, available, FOLLOW_READ)
                    if size <= INLINE_READ:
                        start_at, data = self.output.read_bytes(pos, size)
                    else:
                        start_at, data = await asyncio.to_thread(self.output.read_bytes, pos, size)
                    if data:
                        pos = start_at + len(data)
                        yield data
                        self.progressed()
                        continue
                if not self.running:
                    break
                await self._changed_since(version, KEEPALIVE_S)
        finally:
            del self._clients[key]
            if not view and not any(not v for v, _ in self._clients.values()):
                self._start_grace()
            self.progressed()
        s = self.state
        yield {"type": "exit", "exit_code": s.exit_code, "signal": s.signal, "status": s.status}

    def keep(self) -> None:
        """Live as long as the session, attached or not (an MCP shell)."""
        self.grace_s = None
        self._cancel_grace()

    def _start_grace(self) -> None:
        if self.grace_s is None:
            return
        if self.running and self._grace is None and not any(not v for v, _ in self._clients.values()):
            self._grace = asyncio.get_running_loop().call_later(
                self.grace_s, lambda: self.end("pty_detached"))

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
