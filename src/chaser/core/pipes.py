"""The server's ends of a file operation's pipes, read and written with no buffer of
their own, each wait bounded by an idle time.

asyncio's stream reader buffers up to twice its limit before it stops reading a pipe,
and its writer up to its high-water mark: a megabyte or more per operation, held for as
long as the client (or the sandbox) does not take it. Here a read hands over what one
`read(2)` returned and a write returns once the kernel took every byte, so what an
operation holds in the server is the chunk in hand; the rest waits in the pipe. Waits
are anyio's `wait_readable`/`wait_writable` (the event loop's own readiness watch).
"""

from __future__ import annotations

import contextlib
import os

import anyio


class Stalled(Exception):
    """No byte crossed the pipe for its idle time (the other end is stopped or stuck)."""


class PipeReader:
    """The read end of a pipe: `read`, `line`; b"" at the end."""

    def __init__(self, fd: int, idle_s: float) -> None:
        self.fd = fd
        self.idle_s = idle_s
        self._pending = b""  # what a `line` read past its newline (at most LINE_READ)
        os.set_blocking(fd, False)

    async def read(self, n: int) -> bytes:
        """Up to `n` bytes as soon as any are there; Stalled after `idle_s` of none."""
        if self._pending:
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        while True:
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                pass
            await _wait(anyio.wait_readable, self.fd, self.idle_s)

    async def line(self, max_bytes: int) -> bytes | None:
        """The first line (newline included); None when the pipe ended first; ValueError
        past `max_bytes` without one."""
        buf = b""
        while b"\n" not in buf:
            if len(buf) > max_bytes:
                raise ValueError("no line within the bound")
            chunk = await self.read(max_bytes + 1)
            if not chunk:
                return None
            buf += chunk
        head, _, self._pending = buf.partition(b"\n")
        return head + b"\n"

    def close(self) -> None:
        if self.fd >= 0:
            anyio.notify_closing(self.fd)
            os.close(self.fd)
            self.fd = -1


class PipeWriter:
    """The write end of a pipe: `write` returns once the kernel took every byte."""

    def __init__(self, fd: int, idle_s: float) -> None:
        self.fd = fd
        self.idle_s = idle_s
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    async def write(self, data: bytes) -> None:
        """All of `data`; BrokenPipeError once the reader is gone, Stalled after
        `idle_s` of taking nothing."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
                continue
            except BlockingIOError:
                pass
            await _wait(anyio.wait_writable, self.fd, self.idle_s)

    def close(self) -> None:
        if self.fd >= 0:
            anyio.notify_closing(self.fd)
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


async def _wait(wait: object, fd: int, idle_s: float) -> None:
    """`wait(fd)`, at most `idle_s`."""
    assert callable(wait)
    try:
        with anyio.fail_after(idle_s):
            await wait(fd)
    except TimeoutError:
        raise Stalled(f"nothing crossed the pipe for {idle_s:g} s") from None
    except (anyio.ClosedResourceError, OSError):
        raise BrokenPipeError("the pipe was closed") from None
