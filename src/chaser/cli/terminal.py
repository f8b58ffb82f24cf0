"""A remote terminal on the local one: `chaser shell` (no `-c`) and `chaser attach`.

The local terminal goes into raw mode so every key (Ctrl-C, Ctrl-Z, arrows) reaches the
remote shell as typed; it is restored on every way out: the remote exit, the detach key,
a lost connection, an exception, SIGTERM or SIGHUP. SIGWINCH is forwarded as a resize.
A lost connection is reattached a few times from the output offset reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

from chaser.client import AsyncClient, AsyncPty, ChaserError, PtyMode, PtyOutput
from chaser.models import Shell

from ._app import EXIT_ERROR, AppContext, exit_code_for

DETACH_KEY = b"\x1d"  # Ctrl-], as telnet's escape
READ_CHUNK = 64 * 1024
RECONNECTS = 3  # attempts to reattach after a lost connection, RECONNECT_DELAY apart
RECONNECT_DELAY = 1.0
# What a full-screen program may have left switched on when we detach or lose it:
# leave the alternate screen, show the cursor, stop mouse reports and bracketed paste,
# normal keypad and plain attributes (what tmux restores on detach).
SCREEN_RESET = (b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l"
                b"\x1b[?2004l\x1b>\x1b[0m")


@dataclass(frozen=True)
class Target:
    """Which terminal to open: a new one in `session_id`, or `pty_id` to reattach."""

    session_id: str
    mode: PtyMode = "human"
    pty_id: str | None = None
    view: bool = False
    shell: Shell | None = None
    cwd: str | None = None


@dataclass
class Outcome:
    """How an attached terminal ended: `exit` (with a code), `detach` or `lost`."""

    kind: str
    code: int = 0
    message: str = ""


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal at `fd` in raw mode for the block (nothing to do if not a tty)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(cols, rows) of the local terminal; 80x24 when there is none."""
    for candidate in (fd, 0, 2):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(candidate)
            return size.columns, size.lines
    return 80, 24


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        loop.add_reader(fd, wake)
    except PermissionError:  # a regular file or /dev/null: always readable
        return
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _pump_input(term: AsyncPty, fd: int) -> Outcome:
    """Keys to the terminal until the detach key; at end of input (a pipe) send Ctrl-D."""
    while True:
        await _readable(fd)
        data = os.read(fd, READ_CHUNK)
        if not data:
            if not term.view:
                await term.send(b"\x04")
            await asyncio.Event().wait()  # the output side decides when it is over
        before, key, _ = data.partition(DETACH_KEY)
        if before and not term.view:
            await term.send(before)
        if key:
            return Outcome("detach")


async def _pump_output(term: AsyncPty, fd: int) -> Outcome:
    try:
        async for event in term.events():
            if isinstance(event, PtyOutput):
                write_all(fd, event.data)
    except ChaserError as e:
        return Outcome("lost", EXIT_ERROR, str(e))
    exit = term.exit
    if exit is None:
        return Outcome("lost", EXIT_ERROR, "the server closed the connection")
    return Outcome("exit", exit_code_for(exit.status, exit.exit_code, exit.signal))


async def _attached(term: AsyncPty, stdin: int, stdout: int) -> Outcome:
    """Pump keys and output until one side ends; signals resize, interrupt or detach."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[Outcome] = loop.create_future()
    pending: set[asyncio.Task[None]] = set()

    def later(coro_task: asyncio.Task[None]) -> None:
        pending.add(coro_task)
        coro_task.add_done_callback(pending.discard)

    def on_winch() -> None:
        if not term.view:
            later(loop.create_task(_quiet(term.resize(*terminal_size(stdout)))))

    def on_int() -> None:  # only from kill(1) or a non-raw terminal: pass it on
        if not term.view:
            later(loop.create_task(_quiet(term.send(b"\x03"))))

    def on_stop(name: str) -> None:
        if not stop.done():
            stop.set_result(Outcome("detach", 128 + signal.Signals[name].value, name))

    handlers = {signal.SIGWINCH: on_winch, signal.SIGINT: on_int,
                signal.SIGTERM: lambda: on_stop("SIGTERM"),
                signal.SIGHUP: lambda: on_stop("SIGHUP")}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    tasks = [loop.create_task(_pump_input(term, stdin)),
             loop.create_task(_pump_output(term, stdout))]
    try:
        with raw_mode(stdin):
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done))
            return first.result() if first is not stop else stop.result()
    finally:
        for task in tasks:
            task.cancel()
        for sig in handlers:
            loop.remove_signal_handler(sig)
        await asyncio.gather(*tasks, *pending, return_exceptions=True)


async def _quiet(coro: Awaitable[object]) -> None:
    with contextlib.suppress(ChaserError):
        await coro


async def _attach_once(client: AsyncClient, target: Target, pty_id: str | None,
                       offset: int | None) -> tuple[Outcome, str, int]:
    """One connection: (how it ended, the terminal's id, the offset reached)."""
    cols, rows = terminal_size()
    term = await client.pty(target.session_id, target.mode, cols, rows, pty_id=pty_id,
                            view=target.view, shell=target.shell, cwd=target.cwd,
                            from_offset=offset)
    if pty_id is not None and not target.view:
        # A reattach replays the past: a resize makes full-screen programs redraw.
        await _quiet(term.resize(cols, rows))
    if sys.stderr.isatty() and offset is None:
        verb = "watching" if target.view else "attached to"
        sys.stderr.write(f"chaser: {verb} terminal {term.pty_id} (Ctrl-] detaches)\r\n")
        sys.stderr.flush()
    try:
        outcome = await _attached(term, sys.stdin.fileno(), sys.stdout.fileno())
    finally:
        await _quiet(term.detach())
    return outcome, term.pty_id, term.offset


async def _ended_meanwhile(client: AsyncClient, session_id: str, pty_id: str) -> Outcome | None:
    """The exit of a terminal that ended while we were reconnecting, if it did."""
    with contextlib.suppress(ChaserError):
        info = (await client.commands.get(session_id, pty_id)).last_info
        if info is not None and info.status != "running":
            return Outcome("exit", exit_code_for(info.status, info.exit_code, info.signal))
    return None


async def _run(app: AppContext, target: Target) -> tuple[Outcome, str]:
    """Attach; when the connection is lost, reattach from the offset reached (so
    nothing is lost or repeated) a few times before giving up."""
    async with AsyncClient(app.api_url, app.api_key, config_file=app.config) as client:
        outcome, pty_id, offset = await _attach_once(client, target, target.pty_id, None)
        for _ in range(RECONNECTS):
            if outcome.kind != "lost":
                break
            sys.stderr.write("\r\nchaser: connection lost; reattaching...\r\n")
            sys.stderr.flush()
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                outcome, pty_id, offset = await _attach_once(client, target, pty_id, offset)
            except ChaserError as e:
                outcome = await _ended_meanwhile(client, target.session_id, pty_id) \
                    or Outcome("lost", EXIT_ERROR, str(e))
    return outcome, pty_id


def run_terminal(app: AppContext, target: Target) -> Outcome:
    """Attach the local terminal to a remote one until it ends or is detached; the
    outcome's `code` is the exit code for the CLI."""
    outcome, pty_id = asyncio.run(_run(app, target))
    if outcome.kind == "exit":
        return outcome
    if os.isatty(sys.stdout.fileno()):
        write_all(sys.stdout.fileno(), SCREEN_RESET)
    again = f"chaser attach {pty_id} --session {target.session_id}"
    if outcome.kind == "detach":
        how = f" ({outcome.message})" if outcome.message else ""
        sys.stderr.write(f"\r\nchaser: detached from terminal {pty_id}{how}; it keeps "
                         f"running. Reattach with: {again}\n")
        return outcome
    sys.stderr.write(f"\r\nerror: {outcome.message}\nchaser: the terminal may still be "
                     f"running; reattach with: {again}\n")
    return outcome
