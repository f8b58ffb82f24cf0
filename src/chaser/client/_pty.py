"""Interactive terminals in a session: `Pty` (sync) and `AsyncPty` (async).

Both speak docs/pty.md over the `websockets` library and share their bookkeeping
(`_pty_protocol.PtyCore`), so they differ only in how they wait:

    with client.pty(session_id, mode="agent") as term:
        output, code = term.run("cd /tmp && ls")

`close()` ends the terminal for good; `detach()` closes only the connection, and the
terminal keeps running (for `pty_grace_s` on the server) until someone reattaches with
`pty_id=` (`from_offset=term.offset` replays exactly what was missed). A connection
that drops is reattached that way by itself, a few times, before `ConnectionError`.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import ClientConnection

from ._errors import ChaserError, ConnectionError, ServerUnavailable, TimeoutError  # noqa: A004
from ._pty_protocol import (
    CLOSE_WAIT,
    PtyCore,
    PtyEvent,
    PtyExit,
    PtyHello,
    PtyOutput,
    PtyResult,
)

SEND_CHUNK = 64 * 1024  # a big paste goes as several frames, each well under any cap
INTERRUPT_GRACE = 2.5  # after a run() timeout: how long each Ctrl-C may take
RESUME_DELAYS = (0.0, 0.5, 1.5)  # reattaching after a dropped connection


def _dropped(core: PtyCore, e: Exception) -> ConnectionError:
    return ConnectionError(
        f"the connection to terminal {core.hello.pty_id} dropped ({e}); it keeps running "
        f"for a while: reattach with pty_id={core.hello.pty_id!r}, "
        f"from_offset={core.offset}")


def _chunks(data: bytes | str) -> list[bytes]:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return [raw[i:i + SEND_CHUNK] for i in range(0, len(raw), SEND_CHUNK)]


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the terminal sent nothing in time")
    return left


def _resize_frame(cols: int, rows: int) -> str:
    return json.dumps({"type": "resize", "cols": int(cols), "rows": int(rows)})


class _PtyBase:
    """What `Pty` and `AsyncPty` answer without waiting."""

    def __init__(self, core: PtyCore) -> None:
        self._core = core
        self._ended = False

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pty_id={self.pty_id!r}, mode={self.mode!r}, "
                f"session_id={self.session_id!r})")

    @property
    def pty_id(self) -> str:
        """The terminal's id (also its command id in the session)."""
        return self._core.hello.pty_id

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def mode(self) -> str:
        return self._core.hello.mode

    @property
    def view(self) -> bool:
        """Attached read-only: input and resizes are refused."""
        return self._core.hello.view

    @property
    def offset(self) -> int:
        """The output log offset just past the last byte received: reattach with
        `from_offset=offset` to lose nothing and repeat nothing."""
        return self._core.offset

    @property
    def exit(self) -> PtyExit | None:
        """The exit frame, once the shell or command ended."""
        return self._core.exit

    @property
    def exit_code(self) -> int | None:
        """The exit code once ended (128+N when killed by signal N), else None."""
        return self._core.exit_status()

    def _gone(self) -> bool:
        """Detached by us, or ended: a closed connection is then no accident."""
        return self._ended or self._core.exit is not None

    def _check_sendable(self) -> None:
        if self._core.exit is not None:
            raise ChaserError(f"terminal {self.pty_id} has ended")
        if self._ended:
            raise ChaserError(f"terminal {self.pty_id} is detached from this object")

    def _wait_error(self) -> ChaserError:
        return self._core.error_for_waiter() or ConnectionError(
            f"terminal {self.pty_id}'s connection closed before the command ended")


class Pty(_PtyBase):
    """A terminal in a session, attached over a WebSocket (sync).

    Made by `client.pty(...)` or `session.pty(...)`. Output is read with `read()`, by
    iterating (bytes chunks until the terminal ends) or as typed events with `events()`.
    A context manager: leaving the block ends the terminal (`close()`), or only detaches
    a read-only viewer.
    """

    def __init__(self, ws: ClientConnection, core: PtyCore,
                 reopen: Callable[[int], tuple[ClientConnection, PtyHello]]) -> None:
        super().__init__(core)
        self._ws = ws
        self._reopen = reopen
        self._resuming = threading.Lock()  # the reading and a sending thread may both see the drop

    def __enter__(self) -> Pty:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.view or self._core.exit is not None:
                self.detach()
            else:
                self.close()
        except ChaserError:
            if exc[0] is None:
                raise

    def _next(self, deadline: float | None) -> PtyEvent | None:
        """The next event, or None once the connection is closed."""
        while not self._ended:
            try:
                ws = self._ws
                message = ws.recv(timeout=_left(deadline))
            except builtins.TimeoutError:
                raise TimeoutError("the terminal sent nothing in time") from None
            except ConnectionClosedOK:
                self._ended = True
            except ConnectionClosed as e:
                if self._gone():
                    self._ended = True
                else:
                    self._resume(e, ws)
            else:
                event = self._core.event(message)
                if event is not None:
                    return event
        return None

    def _resume(self, error: Exception, broken: ClientConnection) -> None:
        """Reattach after the connection dropped, from the offset reached, so nothing
        is lost or repeated; ConnectionError when that cannot be done."""
        with self._resuming:
            if self._ws is not broken:
                return  # another thread did it
            for delay in RESUME_DELAYS:
                time.sleep(delay)
                try:
                    self._ws, hello = self._reopen(self._core.offset)
                except (ConnectionError, TimeoutError, ServerUnavailable):
                    continue
                except ChaserError:  # gone: ended meanwhile, or the session stopped
                    break
                self._core.resumed(hello)
                return
            self._ended = True
            raise _dropped(self._core, error) from None

    def _send(self, message: bytes | str) -> None:
        ws = self._ws
        try:
            ws.send(message)
        except ConnectionClosed as e:
            self._check_sendable()
            self._resume(e, ws)
            self._ws.send(message)

    def send(self, data: bytes | str) -> None:
        """Type `data` (keys, a paste; stdin in exec mode). Text is sent as UTF-8."""
        for chunk in _chunks(data):
            self._send(chunk)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the foreground program (not to the shell)."""
        self.send(b"\x03")

    def resize(self, cols: int, rows: int) -> None:
        """Change the terminal's size (the foreground program gets SIGWINCH)."""
        self._send(_resize_frame(cols, rows))

    def eof(self) -> None:
        """Exec mode: close the command's stdin."""
        self._send(json.dumps({"type": "eof"}))

    def events(self, timeout: float | None = None) -> Iterator[PtyEvent]:
        """Every event (output, command_start/_end, error, exit) until the connection
        closes; `timeout` bounds the wait for each one (`chaser.TimeoutError`)."""
        while (event := self._next(_deadline(timeout))) is not None:
            yield event

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk of output; b"" once the terminal ended (or was detached)."""
        deadline = _deadline(timeout)
        while (event := self._next(deadline)) is not None:
            if isinstance(event, PtyOutput):
                return event.data
        return b""

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk

    def start_command(self, command: str) -> None:
        """Agent mode: type `command` and Enter without waiting (see `wait_command`)."""
        self._send(self._core.start_command(command))

    def wait_command(self, timeout: float | None = None) -> PtyResult:
        """Agent mode: the output and exit code of the oldest command started and not
        yet waited for. A timeout leaves it running: wait again or `interrupt()`."""
        deadline = _deadline(timeout)
        while (result := self._core.take_result()) is None:
            if not self._core.pending:
                raise ChaserError("no command is running: start_command() first")
            if (err := self._core.error_for_waiter()) is not None:
                raise err
            if self._next(deadline) is None and self._core.take_result() is None:
                raise self._wait_error()
        return result

    def run(self, command: str, timeout: float | None = None) -> PtyResult:
        """Agent mode: run `command` and return `(output, exit_code)`.

        The shell keeps its state (cwd, variables) between runs. After `timeout` seconds
        the command is interrupted (Ctrl-C) and `chaser.TimeoutError` is raised.
        """
        self.start_command(command)
        try:
            return self.wait_command(timeout)
        except TimeoutError:
            # A second Ctrl-C for one that came between two programs of a list, when
            # only the shell (which shrugs it off) was in the foreground.
            for _ in range(2):
                self.interrupt()
                try:
                    self.wait_command(INTERRUPT_GRACE)
                    break
                except TimeoutError:
                    continue
                except ChaserError:
                    self._core.forget_command()
                    break
            else:
                self._core.forget_command()
            raise TimeoutError(f"{command!r} did not finish within {timeout} s and was "
                               "interrupted") from None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the terminal to end, discarding output; return the exit code."""
        deadline = _deadline(timeout)
        while self._core.exit is None and self._next(deadline) is not None:
            pass
        return self.exit_code

    def close(self) -> int | None:
        """End the terminal for good (its whole process tree) and return its exit code
        (a read-only viewer may not end it: it only detaches)."""
        if not self._ended and self._core.exit is None and not self.view:
            try:
                self._send(json.dumps({"type": "close"}))
                self.wait(CLOSE_WAIT)
            except (TimeoutError, ConnectionError):
                pass
        self.detach()
        return self.exit_code

    def detach(self) -> None:
        """Close the connection only; the terminal keeps running for reattaching."""
        self._ended = True
        self._ws.close()


class AsyncPty(_PtyBase):
    """A terminal in a session, attached over a WebSocket (async twin of `Pty`).

    Made by `await client.pty(...)`; `async for chunk in term` yields output bytes.
    """

    def __init__(self, ws: AsyncConnection, core: PtyCore,
                 reopen: Callable[[int], Awaitable[tuple[AsyncConnection, PtyHello]]]) -> None:
        super().__init__(core)
        self._ws = ws
        self._reopen = reopen
        self._resuming = asyncio.Lock()  # the reading and a sending task may both see the drop

    async def __aenter__(self) -> AsyncPty:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.view or self._core.exit is not None:
                await self.detach()
            else:
                await self.close()
        except ChaserError:
            if exc[0] is None:
                raise

    async def _next(self, deadline: float | None) -> PtyEvent | None:
        while not self._ended:
            try:
                ws = self._ws
                message = await asyncio.wait_for(ws.recv(), _left(deadline))
            except builtins.TimeoutError:
                raise TimeoutError("the terminal sent nothing in time") from None
            except ConnectionClosedOK:
                self._ended = True
            except ConnectionClosed as e:
                if self._gone():
                    self._ended = True
                else:
                    await self._resume(e, ws)
            else:
                event = self._core.event(message)
                if event is not None:
                    return event
        return None

    async def _resume(self, error: Exception, broken: AsyncConnection) -> None:
        """Reattach after the connection dropped (see `Pty._resume`)."""
        async with self._resuming:
            if self._ws is not broken:
                return  # another task did it
            for delay in RESUME_DELAYS:
                await asyncio.sleep(delay)
                try:
                    self._ws, hello = await self._reopen(self._core.offset)
                except (ConnectionError, TimeoutError, ServerUnavailable):
                    continue
                except ChaserError:
                    break
                self._core.resumed(hello)
                return
            self._ended = True
            raise _dropped(self._core, error) from None

    async def _send(self, message: bytes | str) -> None:
        ws = self._ws
        try:
            await ws.send(message)
        except ConnectionClosed as e:
            self._check_sendable()
            await self._resume(e, ws)
            await self._ws.send(message)

    async def send(self, data: bytes | str) -> None:
        """Type `data` (keys, a paste; stdin in exec mode). Text is sent as UTF-8."""
        for chunk in _chunks(data):
            await self._send(chunk)

    async def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the foreground program (not to the shell)."""
        await self.send(b"\x03")

    async def resize(self, cols: int, rows: int) -> None:
        """Change the terminal's size (the foreground program gets SIGWINCH)."""
        await self._send(_resize_frame(cols, rows))

    async def eof(self) -> None:
        """Exec mode: close the command's stdin."""
        await self._send(json.dumps({"type": "eof"}))

    async def events(self, timeout: float | None = None) -> AsyncIterator[PtyEvent]:
        """Every event until the connection closes (see `Pty.events`)."""
        while (event := await self._next(_deadline(timeout))) is not None:
            yield event

    async def read(self, timeout: float | None = None) -> bytes:
        """The next chunk of output; b"" once the terminal ended (or was detached)."""
        deadline = _deadline(timeout)
        while (event := await self._next(deadline)) is not None:
            if isinstance(event, PtyOutput):
                return event.data
        return b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    async def start_command(self, command: str) -> None:
        """Agent mode: type `command` and Enter without waiting (see `wait_command`)."""
        await self._send(self._core.start_command(command))

    async def wait_command(self, timeout: float | None = None) -> PtyResult:
        """Agent mode: the output and exit code of the oldest command started and not
        yet waited for. A timeout leaves it running: wait again or `interrupt()`."""
        deadline = _deadline(timeout)
        while (result := self._core.take_result()) is None:
            if not self._core.pending:
                raise ChaserError("no command is running: start_command() first")
            if (err := self._core.error_for_waiter()) is not None:
                raise err
            if await self._next(deadline) is None and self._core.take_result() is None:
                raise self._wait_error()
        return result

    async def run(self, command: str, timeout: float | None = None) -> PtyResult:
        """Agent mode: run `command` and return `(output, exit_code)` (see `Pty.run`)."""
        await self.start_command(command)
        try:
            return await self.wait_command(timeout)
        except TimeoutError:
            # A second Ctrl-C for one that came between two programs of a list, when
            # only the shell (which shrugs it off) was in the foreground.
            for _ in range(2):
                await self.interrupt()
                try:
                    await self.wait_command(INTERRUPT_GRACE)
                    break
                except TimeoutError:
                    continue
                except ChaserError:
                    self._core.forget_command()
                    break
            else:
                self._core.forget_command()
            raise TimeoutError(f"{command!r} did not finish within {timeout} s and was "
                               "interrupted") from None

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the terminal to end, discarding output; return the exit code."""
        deadline = _deadline(timeout)
        while self._core.exit is None and await self._next(deadline) is not None:
            pass
        return self.exit_code

    async def close(self) -> int | None:
        """End the terminal for good (its whole process tree) and return its exit code
        (a read-only viewer may not end it: it only detaches)."""
        if not self._ended and self._core.exit is None and not self.view:
            try:
                await self._send(json.dumps({"type": "close"}))
                await self.wait(CLOSE_WAIT)
            except (TimeoutError, ConnectionError):
                pass
        await self.detach()
        return self.exit_code

    async def detach(self) -> None:
        """Close the connection only; the terminal keeps running for reattaching."""
        self._ended = True
        await self._ws.close()
