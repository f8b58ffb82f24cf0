"""Following a remote command from the terminal: live output, stdin, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import BinaryIO

from chaser.client import ChaserError, CommandHandle, ExitEvent, OutputEvent, output_bytes

STDIN_CHUNK = 256 * 1024


def write_event(event: OutputEvent, out: BinaryIO, err: BinaryIO) -> None:
    """Write one output chunk to the local stdout or stderr, as the remote wrote it."""
    target = err if event.stream == "stderr" else out
    target.write(output_bytes(event))
    target.flush()


def follow(
    handle: CommandHandle, *, from_offset: int = 0, forward_interrupt: bool = False
) -> ExitEvent:
    """Stream a command's output to stdout/stderr until it exits; return its exit event.

    With `forward_interrupt`, the first Ctrl-C sends SIGINT to the remote command and
    keeps streaming (so its last words and exit status arrive); a second Ctrl-C raises
    KeyboardInterrupt. Without it, Ctrl-C raises KeyboardInterrupt at once.
    """
    out, err = sys.stdout.buffer, sys.stderr.buffer
    interrupts = 0

    def forward(_signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        # Not from inside the handler: the main thread may hold the connection pool.
        threading.Thread(target=_quiet_kill, args=(handle, "INT"), daemon=True).start()

    use_handler = forward_interrupt and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, forward) if use_handler else None
    try:
        with handle.stream(from_offset=from_offset) as events:
            for event in events:
                if isinstance(event, ExitEvent):
                    return event
                write_event(event, out, err)
        raise ChaserError("the output stream ended without the command's exit status")
    finally:
        if use_handler:
            signal.signal(signal.SIGINT, previous)


def _quiet_kill(handle: CommandHandle, sig: str) -> None:
    with contextlib.suppress(ChaserError):
        handle.kill(sig)


def forward_stdin(handle: CommandHandle, from_tty: bool = False) -> threading.Thread | None:
    """Copy local stdin to the command in the background when stdin is not a terminal
    (or, `from_tty`, even when it is: read to its end, Ctrl-D).

    Otherwise on a terminal the command's stdin is closed at once (there is no PTY
    here), so a program that reads stdin sees end of file instead of waiting forever.
    """
    try:
        fd = sys.stdin.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        fd, is_tty = -1, True
    if fd < 0 or (is_tty and not from_tty):
        _quiet_close(handle)
        return None
    thread = threading.Thread(target=_pump_stdin, args=(handle, fd), daemon=True)
    thread.start()
    return thread


def _read_chunks(fd: int) -> Iterator[bytes]:
    """Local stdin in bounded chunks, read only as fast as the request sends them."""
    while chunk := os.read(fd, STDIN_CHUNK):
        yield chunk


def _pump_stdin(handle: CommandHandle, fd: int) -> None:
    """Local stdin, byte for byte, as one streamed request: the server takes it at the
    command's pace, so a pipe of any size holds bounded memory on both ends."""
    try:
        handle.stream_stdin(_read_chunks(fd), eof=True)
    except Exception:  # noqa: BLE001 - the command ended or the CLI is exiting
        return


def _quiet_close(handle: CommandHandle) -> None:
    with contextlib.suppress(ChaserError):
        handle.close_stdin()
