"""One file operation of the files API: `/.chaser/agent files OP ...` run in a sandbox.

The static agent is in every sandbox whatever its image holds (no shell, coreutils or
tar needed), and runs the operation as the sandbox's own unprivileged user in its
namespaces: a path means what it means to the session's commands, and nothing of the
host is reachable that they could not reach. The bytes cross pipes this module owns
(never the agent's channel and never a command's output log), read and written with
no buffer of the server's own (`pipes.py`), so a transfer of any size, or one nobody
takes, holds one chunk. Every wait on the operation is bounded by its idle time: one
that stops moving bytes (stopped, stuck) is ended, 502 `file_op_stalled`.

What the operation writes is untrusted (it runs in the tenant's sandbox): headers are
read bounded, its error line is read bounded and only its code is interpreted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import AsyncIterator

import anyio

from chaser.core.pipes import PipeReader, PipeWriter, Stalled
from chaser.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    StorageFull,
    Unavailable,
)
from chaser.runtime.base import ExitStatus, Process, ProcessIO, ProcessSpec, Sandbox

AGENT = "/.chaser/agent"  # bound into every sandbox that runs the static agent
F_SETPIPE_SZ = 1031
PIPE_BYTES = 1024 * 1024  # the kernel's buffer: what a transfer moves per wakeup
READ_BYTES = 128 * 1024  # one chunk: what a download holds in the server, twice at most
MAX_ERROR_BYTES = 2048
TERM_GRACE_S = 2.0
UPLOAD_IDLE_S = 120.0  # an upload whose client sends nothing this long is dropped
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

_ERRORS: dict[str, type[ServiceError]] = {
    "not_found": NotFound, "permission_denied": Forbidden, "no_space": StorageFull,
    "is_directory": Conflict, "not_directory": Conflict, "not_regular": Conflict,
    "not_empty": Conflict, "invalid_path": BadRequest, "bad_archive": BadRequest,
}


class OpStalled(BadGateway):
    """The operation's process moved no byte for its idle time and was ended."""

    code = "file_op_stalled"


def _pipe() -> tuple[int, int]:
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
    except OSError as e:
        raise Unavailable(f"cannot start a file operation: {e.strerror}", retry_after=1) from None
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
    return r, w


class FileOp:
    """A running `agent files` operation: its stdout to read, its stdin to feed."""

    def __init__(self, process: Process, stdout: PipeReader, stdin: PipeWriter | None,
                 stderr: int, idle_s: float) -> None:
        self.process = process
        self.killed = False  # ended by a signal (memory limit, a stopped session, a stall)
        self.stdout = stdout
        self.stdin = stdin
        self._stderr = stderr
        self.idle_s = idle_s

    @classmethod
    async def start(cls, sandbox: Sandbox, op: str, *args: str, stdin: bool = False,
                    idle_s: float = 300.0) -> FileOp:
        """Start `agent files OP ARGS...` in `sandbox`, in `/` (its paths are absolute);
        every wait on it is bounded by `idle_s`."""
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        in_r, in_w = _pipe() if stdin else (None, None)
        try:
            process = await sandbox.spawn(
                ProcessSpec([AGENT, "files", op, *args], dict(ENV), "/"),
                ProcessIO(stdout=out_w, stderr=err_w, stdin=in_r))
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise
        os.set_blocking(err_r, False)
        writer = PipeWriter(in_w, idle_s) if in_w is not None else None
        return cls(process, PipeReader(out_r, idle_s), writer, err_r, idle_s)

    async def header(self, max_bytes: int = 128) -> str:
        """The first line of stdout, or the operation's error when there is none."""
        try:
            line = await self.stdout.line(max_bytes)
        except Stalled:
            raise await self.stalled() from None
        except ValueError:
            line = b"\0" * (max_bytes + 1)
        if line is None:
            await self.finish()
            raise BadRequest("the file operation ended without an answer")
        if len(line) > max_bytes:
            await self.abort()
            raise BadRequest("the file operation answered nonsense")
        return line.decode("ascii", "replace").strip()

    async def read(self, n: int = READ_BYTES) -> bytes:
        """Up to `n` bytes of stdout (b"" at its end); OpStalled when none come."""
        try:
            return await self.stdout.read(n)
        except Stalled:
            raise await self.stalled() from None

    async def chunks(self, first: bytes = b"") -> AsyncIterator[bytes]:
        """The rest of stdout as it comes (the caller's pace is the pipe's), then the
        operation's end; a failure after the start just ends the stream short."""
        try:
            if first:
                yield first
            while data := await self.read():
                yield data
            await self.finish()
        finally:
            await self.abort()

    async def read_all(self, max_bytes: int) -> tuple[bytes, bool]:
        """All of stdout up to `max_bytes`, and whether there was more (the operation is
        then ended: a directory of a million entries is not read to its end)."""
        data = bytearray()
        while chunk := await self.read():
            data += chunk
            if len(data) > max_bytes:
                await self.abort()
                return bytes(data[:max_bytes]), True
        await self.finish()
        return bytes(data), False

    async def feed(self, body: AsyncIterator[bytes]) -> None:
        """Pump `body` into stdin at the pace the operation takes it, then close it. A
        body that fails (a client gone mid-upload) aborts the operation: stdin is never
        closed first, so it never mistakes a cut-off upload for a complete one."""
        assert self.stdin is not None
        chunks = aiter(body)
        exited: asyncio.Future[ExitStatus] = asyncio.ensure_future(self.process.wait())
        try:
            while True:
                chunk = await self._next_chunk(chunks, exited)
                if chunk is None or self.stdin.closed:
                    break
                await self.stdin.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it ended early: its error says why
        except Stalled:
            raise await self.stalled() from None
        except BaseException:
            await self.abort()
            raise
        finally:
            exited.cancel()
        self.stdin.close()

    @staticmethod
    async def _next_chunk(chunks: AsyncIterator[bytes],
                          exited: asyncio.Future[ExitStatus]) -> bytes | None:
        """The body's next chunk; None at its end, or when the operation ended first (it
        refused before reading: a length past the free space, a bad path), so its error
        is answered at once instead of after the client's whole body."""
        following: asyncio.Future[bytes] = asyncio.ensure_future(anext(chunks))
        try:
            done, _ = await asyncio.wait((following, exited), timeout=UPLOAD_IDLE_S,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not following.done():
                following.cancel()
                following.add_done_callback(_retrieve)
        if following in done:
            try:
                return following.result()
            except StopAsyncIteration:
                return None
        if exited in done:
            return None
        raise BadRequest(f"the upload sent nothing for {UPLOAD_IDLE_S:.0f} s and was dropped",
                         "upload_cut_off")

    async def finish(self) -> None:
        """Wait for the end; raise the operation's own error when it failed."""
        try:
            with anyio.fail_after(self.idle_s):
                status = await self.process.wait()
        except TimeoutError:
            raise await self.stalled() from None
        err = self._take_stderr()
        if status.code == 0:
            return
        if status.signal is not None:
            self.killed = True
            raise StorageFull("the file operation was killed: a sandbox without a workspace "
                              "disk keeps /workspace and /tmp in memory, and its memory limit "
                              "was reached (or the session was stopped)", "no_space")
        code, _, message = err.removeprefix("chaser-files: ").partition(": ")
        if err.startswith("chaser-files: ") and code in _ERRORS:
            raise _ERRORS[code](message[:500] or code, code)
        if "no " in err and AGENT in err:
            raise Unavailable("file operations need the static agent, which this server "
                              "could not build (install gcc and libc6-dev)", "no_static_agent")
        raise BadRequest(f"the file operation failed ({err[:300] or status})", "file_error")

    async def stalled(self) -> OpStalled:
        """End an operation that stopped moving bytes; the error that says so."""
        await self.abort()
        return OpStalled(f"the file operation in the sandbox moved no byte for "
                         f"{self.idle_s:g} s (stopped or stuck) and was ended")

    async def abort(self) -> None:
        """End the operation (SIGTERM, and SIGCONT should it be stopped: an upload
        removes its temporary file; SIGKILL when it does not go), then close the pipes."""
        if self._stderr >= 0:
            self.process.signal(signal.SIGTERM)
            self.process.signal(signal.SIGCONT)
            try:
                await asyncio.wait_for(self.process.wait(), TERM_GRACE_S)
            except TimeoutError:
                self.killed = True  # no chance to clean up after itself
                self.process.signal(signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), TERM_GRACE_S)
        self._take_stderr()

    def _take_stderr(self) -> str:
        """Its error line (bounded), and the pipes closed."""
        if self._stderr < 0:
            return ""
        try:
            data = os.read(self._stderr, MAX_ERROR_BYTES)
        except OSError:
            data = b""
        os.close(self._stderr)
        self._stderr = -1
        if self.stdin is not None:
            self.stdin.close()
        self.stdout.close()
        return data.decode("utf-8", "replace").strip().splitlines()[0] if data.strip() else ""


def _retrieve(future: asyncio.Future[bytes]) -> None:
    """A body read given up on: its outcome is not wanted (and not to be logged)."""
    if not future.cancelled():
        future.exception()
