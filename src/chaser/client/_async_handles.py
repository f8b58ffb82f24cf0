"""Handles on live objects for the async client: a session and a background command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from chaser.models import (
    Command,
    CommandStatus,
    ExecResult,
    Session,
    SessionUsage,
    Shell,
    StdinResult,
)

from . import _api
from ._async_files import AsyncFiles
from ._chunks import AsyncStdinSource, achunked
from ._pty_protocol import PtyMode
from ._stream import DEFAULT_STREAM_RETRIES, AsyncCommandStream

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._pty import AsyncPty

PAGE_BYTES = 1024 * 1024


class AsyncCommandHandle:
    """A command running (or finished) in a session.

    Returned by `await session.exec(..., background=True)`; also from
    `await client.commands.get(session_id, command_id)`. Cached fields (`status`,
    `exit_code`) reflect the last `info()`, `kill()` or `wait()`.
    """

    def __init__(
        self, client: AsyncClient, session_id: str, command_id: str, *,
        pid: int | None = None, info: Command | None = None,
    ) -> None:
        self._client = client
        self.session_id = session_id
        self.id = command_id
        self.pid = pid if pid is not None else (info.pid if info else None)
        self._info = info

    def __repr__(self) -> str:
        return (f"AsyncCommandHandle(id={self.id!r}, session_id={self.session_id!r}, "
                f"pid={self.pid})")

    @property
    def last_info(self) -> Command | None:
        """The command as last fetched, without a new request (None if never fetched)."""
        return self._info

    @property
    def status(self) -> CommandStatus:
        """Last known status (`running` until a fetch says otherwise)."""
        return self._info.status if self._info else "running"

    @property
    def exit_code(self) -> int | None:
        """Last known exit code (None while running or when killed)."""
        return self._info.exit_code if self._info else None

    async def info(
        self, from_offset: int | None = None, limit: int | None = None
    ) -> Command:
        """Fetch the command's status with a page of output (`[from_offset, +limit)`)."""
        self._info = await self._client._call(
            _api.command_get(self.session_id, self.id, from_offset=from_offset, limit=limit)
        )
        self.pid = self._info.pid
        return self._info

    refresh = info

    async def output(self, from_offset: int = 0) -> str:
        """All output from `from_offset` on (written so far), paging through it."""
        parts: list[str] = []
        offset = from_offset
        while True:
            page = await self.info(from_offset=offset, limit=PAGE_BYTES)
            parts.append(page.output or "")
            if not page.output or page.next_offset >= page.output_size \
                    or page.next_offset <= offset:
                return "".join(parts)
            offset = page.next_offset

    def stream(
        self, from_offset: int = 0, *, interval_ms: int | None = None,
        retries: int = DEFAULT_STREAM_RETRIES, timeout: float | None = None,
    ) -> AsyncCommandStream:
        """Follow the output live (`async for`): `OutputEvent`s, then one `ExitEvent`.

        Resumes from the last offset received when the connection drops; `timeout` (s)
        bounds the whole stream and raises `chaser.TimeoutError` when exceeded.
        """
        return AsyncCommandStream(
            self._client._http, self._client.config,
            _api.stream_path(self.session_id, self.id), from_offset=from_offset,
            interval_ms=interval_ms, retries=retries, timeout=timeout,
        )

    async def send_stdin(self, data: str | bytes, *, eof: bool = False) -> StdinResult:
        """Write `data` (text, or any bytes) to the command's stdin (and close it when
        `eof`); up to 2 MiB a call: `stream_stdin` takes any length."""
        return await self._client._call(
            _api.command_stdin(self.session_id, self.id, input=data, eof=eof)
        )

    async def stream_stdin(self, source: AsyncStdinSource, *, eof: bool = True) -> StdinResult:
        """Stream `source` (bytes, an iterable of bytes, an async iterable or a binary
        file) to the command's stdin in one request, at the pace the command reads it
        (memory stays bounded on both ends); then close stdin unless `eof=False`."""
        return await self._client._call(
            _api.command_stdin_stream(self.session_id, self.id, achunked(source), eof)
        )

    async def close_stdin(self) -> StdinResult:
        """Close the command's stdin (the command sees end of file)."""
        return await self._client._call(
            _api.command_stdin(self.session_id, self.id, input=None, eof=True)
        )

    async def kill(self, signal: str | int = "TERM") -> Command:
        """Send `signal` (name with or without SIG, or number) to the process group."""
        self._info = await self._client._call(
            _api.command_kill(self.session_id, self.id, signal)
        )
        return self._info

    async def wait(self, timeout: float | None = None) -> Command:
        """Block until the command ends; return it (with the first page of output).

        Raises `chaser.TimeoutError` if it is still running after `timeout` seconds.
        """
        current = await self.info(limit=1)
        if current.status == "running":
            async with self.stream(from_offset=current.output_size,
                                   timeout=timeout) as events:
                async for _ in events:
                    pass
        return await self.info()


class AsyncSessionHandle:
    """A sandbox session: run commands in it, list them, delete it.

    Usable as an async context manager that deletes the session on exit.
    """

    def __init__(self, client: AsyncClient, info: Session) -> None:
        self._client = client
        self._info = info

    def __repr__(self) -> str:
        return (f"AsyncSessionHandle(id={self.id!r}, workspace={self.workspace!r}, "
                f"status={self.status!r})")

    async def __aenter__(self) -> AsyncSessionHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._info.status == "running":
            await self.delete()

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def workspace(self) -> str | None:
        return self._info.workspace

    @property
    def files(self) -> AsyncFiles:
        """The session's files: read, write, list, upload_dir, download_dir, ..."""
        return AsyncFiles(self._client, _api.session_path(self.id))

    @property
    def image(self) -> str:
        return self._info.image

    @property
    def status(self) -> str:
        """Last known status; `info()` fetches the current one."""
        return self._info.status

    @property
    def last_info(self) -> Session:
        """The session as last fetched, without a new request."""
        return self._info

    async def info(self) -> Session:
        """Fetch the session's current state."""
        self._info = await self._client._call(_api.session_get(self.id))
        return self._info

    refresh = info

    async def usage(self) -> SessionUsage | None:
        """What the session's sandbox uses now (see `SessionHandle.usage`)."""
        return (await self.info()).usage

    @overload
    async def exec(
        self, command: str, *, background: Literal[False] = False, cwd: str | None = None,
        env: dict[str, str] | None = None, timeout_ms: int | None = None,
        stdin: str | bytes | None = None, shell: Shell | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult: ...

    @overload
    async def exec(
        self, command: str, *, background: Literal[True], cwd: str | None = None,
        env: dict[str, str] | None = None, timeout_ms: int | None = None,
        stdin: str | bytes | None = None, shell: Shell | None = None,
        max_output_bytes: int | None = None,
    ) -> AsyncCommandHandle: ...

    async def exec(
        self, command: str, *, background: bool = False, cwd: str | None = None,
        env: dict[str, str] | None = None, timeout_ms: int | None = None,
        stdin: str | bytes | None = None, shell: Shell | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult | AsyncCommandHandle:
        """Run `command` in this session.

        Foreground (default): wait and return an `ExecResult`. With `background=True`:
        return an `AsyncCommandHandle` at once (stdin stays open until `close_stdin()`).
        """
        result = await self._client._call(_api.session_exec(
            self.id, command, background=background, cwd=cwd, env=env,
            timeout_ms=timeout_ms, stdin=stdin, shell=shell,
            max_output_bytes=max_output_bytes,
        ))
        if background:
            return AsyncCommandHandle(self._client, self.id, result.command_id, pid=result.pid)
        return result  # type: ignore[no-any-return]

    async def list_commands(self) -> list[Command]:
        """The session's commands, newest first (without output)."""
        return await self._client._call(_api.command_list(self.id))

    async def get_command(self, command_id: str) -> AsyncCommandHandle:
        """Fetch one command of this session as a handle."""
        return await self._client.commands.get(self.id, command_id)

    async def pty(
        self, mode: PtyMode = "human", cols: int | None = None, rows: int | None = None,
        pty_id: str | None = None, view: bool = False, command: str | None = None, *,
        shell: Shell | None = None, cwd: str | None = None, from_offset: int | None = None,
    ) -> AsyncPty:
        """Open a terminal in this session (see `AsyncClient.pty`)."""
        return await self._client.pty(self.id, mode, cols, rows, pty_id, view, command,
                                      shell=shell, cwd=cwd, from_offset=from_offset)

    async def delete(self) -> Session:
        """Stop the session and kill every process in it."""
        self._info = await self._client._call(_api.session_delete(self.id))
        return self._info
