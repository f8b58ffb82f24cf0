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
import itertools
import os
import signal
import struct
import termios
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from chaser.core.commands import CommandState, OnEnd, RunningCommand, _Pump, _StdinFlow
from chaser.core.output import STDOUT, OutputLog
from chaser.core.shells import AgentMarkers
from chaser.errors import Conflict, OverLimit
from chaser.runtime.base import TerminalProcess

PAUSE_LAG = 1024 * 1024
RESUME_LAG = 256 * 1024
MAX_EVENTS = 4096  # agent-mode events kept for clients that reattach
MAX_CLIENTS = 32  # attached to one terminal at once, viewers included
COALESCE_BYTES = 256 * 1024  # read from a terminal in one wake-up, at most
INLINE_READ = 64 * 1024  # log reads this small stay on the event loop (page cache)
FOLLOW_READ = 256 * 1024
KEEPALIVE_S = 15.0

INTERRUPT_GRACE_S = 5.0  # how long an interrupted command has to give the prompt back
SECOND_INTERRUPT_S = 1.0  # when ^C is sent again

Frame = bytes | dict[str, object]


@dataclass(frozen=True)
class LineRun:
    """Where one command's output lies in the terminal's log, and how it ended."""

    start: int
    end: int
    exit_code: int | None  # None: the shell itself ended
    interrupted: bool


@dataclass
class _Client:
    """An attached client: a viewer or not, and the offset it has been sent up to."""

    view: bool
    pos: int


class _TerminalPump(_Pump):
    """Reads the terminal's master side into the command (through agent mode's filter)."""

    def __init__(self, fd: int, term: TerminalCommand) -> None:
        self.term = term
        self.paused = False
        super().__init__(fd, term.output, STDOUT)

    def _read(self) -> None:
        # A terminal hands out at most a few KiB a read: take what is there in one go,
        # so a fast program's output becomes a few large appends and frames rather than
        # one per read (a keystroke's echo is still one small read, sent at once).
        chunks: list[bytes] = []
        size, ended = 0, False
        while size < COALESCE_BYTES:
            try:
                data = os.read(self.fd, 64 * 1024)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EIO: every copy of the terminal's other side is closed
                data = b""
            if not data:
                ended = True
                break
            chunks.append(data)
            size += len(data)
        if chunks:
            self.term.received(b"".join(chunks))
        if ended:
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
        self._clients: dict[int, _Client] = {}
        self._tokens = itertools.count()
        self._grace: asyncio.TimerHandle | None = None

    async def start_tty(self, launch: Callable[[], Awaitable[TerminalProcess]], *,
                        cols: int, rows: int) -> None:
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
        os.set_blocking(master, False)
        self._pump = _TerminalPump(master, self)
        self._pumps = [self._pump]
        loop = asyncio.get_running_loop()
        transport, self._stdin_flow = await loop.connect_write_pipe(
            _StdinFlow, os.fdopen(os.dup(master), "wb", 0))
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
        positions = [c.pos for c in self._clients.values() if not (interactive_only and c.view)]
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
            # Not wait_for: on 3.11 it swallows a cancel that lands as `fut` completes,
            # and a follower cancelled then (its client gone) would run on for ever.
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    # -- input and control ------------------------------------------------------------

    async def type(self, data: bytes) -> None:
        """Input for the terminal, waiting while too much is queued (a program that is
        not reading holds its client back, and nobody else)."""
        await self.stdin_room()
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
        """Type one command line into an agent-mode shell and wait for its end. Past
        `timeout_s` it is interrupted as a user would: ^C, and ^C again a moment later
        (one that lands between a fork and its exec interrupts nothing); a shell still
        not back at its prompt `INTERRUPT_GRACE_S` after the first is ended."""
        seq0 = self._event_seq
        await self.type(line.encode() + b"\n")
        loop = asyncio.get_running_loop()
        steps = [timeout_s, SECOND_INTERRUPT_S, INTERRUPT_GRACE_S - SECOND_INTERRUPT_S,
                 INTERRUPT_GRACE_S]  # wait, ^C, wait, ^C, wait, end, wait
        deadline = loop.time() + steps.pop(0)
        start: int | None = None
        interrupts = 0
        while True:
            version = self._version
            for seq, off, ev in list(self.events):
                if seq <= seq0:
                    continue
                if ev["type"] == "command_start" and start is None:
                    start = off
                elif ev["type"] == "command_end" and start is not None:
                    return LineRun(start, off, int(str(ev["exit_code"])), interrupts > 0)
            if not self.running:
                return LineRun(start or self.output.size, self.output.size, None, interrupts > 0)
            if loop.time() >= deadline:
                if interrupts < 2:
                    interrupts += 1
                    self.write_stdin(b"\x03")
                else:  # ^C did not bring the prompt back: end the shell
                    self.end("timeout")
                deadline = loop.time() + (steps.pop(0) if steps else INTERRUPT_GRACE_S)
            await self._changed_since(version, max(deadline - loop.time(), 0.0))

    # -- clients ----------------------------------------------------------------------

    def attach(self, start: int, view: bool) -> int:
        """A client's place from offset `start` (OverLimit past `MAX_CLIENTS`): its token.
        An interactive client keeps the terminal from its grace period until it detaches."""
        if len(self._clients) >= MAX_CLIENTS:
            raise OverLimit(f"terminal {self.state.id} has {MAX_CLIENTS} clients attached "
                            "already", "too_many_clients", retry_after=5)
        token = next(self._tokens)
        self._clients[token] = _Client(view, max(start, self.output.start))
        if not view:
            self._cancel_grace()
        return token

    def detach(self, token: int) -> None:
        """The client is gone (again and again is fine)."""
        client = self._clients.pop(token, None)
        if client is not None and not client.view and not self._interactive():
            self._start_grace()
        self.progressed()

    def _interactive(self) -> bool:
        return any(not c.view for c in self._clients.values())

    async def follow(self, token: int) -> AsyncIterator[Frame]:
        """Output from the client's place and the events at their offsets, then the exit
        event; its place counts for pausing while it follows (unless a viewer)."""
        client = self._clients[token]
        next_seq = next((seq for seq, off, _ in self.events if off >= client.pos),
                        self._event_seq + 1)
        try:
            while True:
                version = self._version
                pos = client.pos = max(client.pos, self.output.start)  # a viewer may skip
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
                        client.pos = start_at + len(data)
                        yield data
                        self.progressed()
                        continue
                if not self.running:
                    break
                await self._changed_since(version, KEEPALIVE_S)
        finally:
            self.detach(token)
        s = self.state
        yield {"type": "exit", "exit_code": s.exit_code, "signal": s.signal, "status": s.status}

    def keep(self) -> None:
        """Live as long as the session, attached or not (an MCP shell)."""
        self.grace_s = None
        self._cancel_grace()

    def _start_grace(self) -> None:
        if self.grace_s is None:
            return
        if self.running and self._grace is None and not self._interactive():
            self._grace = asyncio.get_running_loop().call_later(
                self.grace_s, lambda: self.end("pty_detached"))

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
