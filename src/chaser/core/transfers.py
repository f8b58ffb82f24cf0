"""The files API's core: files and tar archives in and out of a session or a workspace.

Every operation is one `agent files` process in the target's sandbox (`fileop.py`), so
it runs as the sandbox's unprivileged user and resolves paths in the sandbox's view.
A workspace with no running session gets one started for it, as `/v1/exec` does, which
idles out after `workspace_idle_timeout_s`. What is checked here is only what makes a
request meaningless (NUL, `..`, absurd lengths); what a path may reach is the sandbox's
business, enforced by the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from chaser.config import Settings
from chaser.core.fileop import FileOp, OpStalled
from chaser.core.fileslots import FileOpSlots
from chaser.core.sessions import LiveSession, SessionService
from chaser.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    StorageFull,
)
from chaser.models.files import ArchiveWritten, FileEntry, FileList, FileType, FileWritten
from chaser.models import check_workspace_name
from chaser.store.base import Store

# A request's path, with room left below PATH_MAX (4096 with its NUL) for the /workspace/
# a relative one is joined to and for the agent's temporary upload name beside it.
MAX_PATH = 4000
NAME_MAX = 255  # nor a longer name in it
MAX_LIST_ENTRIES = 10_000
MAX_LIST_BYTES = 4 * 1024 * 1024  # 10,000 entries of names up to ~400 bytes
_TYPES: dict[str, FileType] = {"f": "file", "d": "directory", "l": "symlink"}
log = logging.getLogger("chaser.files")


def check_path(path: str) -> str:
    """A request's path, absolute in the sandbox (a relative one is made so, under
    /workspace: the operation runs in `/`, so a /workspace its sandbox made unreadable
    does not stop operations on other paths)."""
    if not path:
        raise BadRequest("path is required", "invalid_path")
    if "\0" in path:
        raise BadRequest("path holds a NUL character", "invalid_path")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise BadRequest(f"path is longer than {MAX_PATH} bytes", "invalid_path")
    names = path.split("/")
    if ".." in names:
        raise BadRequest("path may not contain '..' (give the path it means)", "invalid_path")
    if any(len(name.encode("utf-8", "surrogateescape")) > NAME_MAX for name in names):
        raise BadRequest(f"a name in the path is longer than {NAME_MAX} bytes", "invalid_path")
    return path if path.startswith("/") else "/workspace/" + path


def check_mode(mode: str | None) -> str:
    """An octal mode ('644', '0755'), or '-' for the default."""
    if mode is None:
        return "-"
    if not 3 <= len(mode) <= 4 or any(c not in "01234567" for c in mode):
        raise BadRequest(f"mode must be octal, as 644 or 0755 (got {mode!r})", "invalid_mode")
    return mode


def shown(path: str) -> str:
    """A path as the sandbox sees it (relative ones are under /workspace)."""
    return posixpath.normpath(posixpath.join("/workspace", path))


@dataclass(frozen=True)
class Target:
    """Where an operation acts: a session, or a workspace (by name)."""

    session_id: str | None = None
    workspace: str | None = None


@dataclass(frozen=True)
class Download:
    """Bytes on their way out: the file's size (-1 for an archive), the range sent, the
    stream, and `close`, which ends the operation whether or not the stream was ever
    read (a client gone before the first byte must not leave it running)."""

    size: int
    start: int
    length: int
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


class FileTransfers:
    """Files and archives in sessions' and workspaces' sandboxes."""

    def __init__(self, settings: Settings, sessions: SessionService, store: Store,
                 slots: FileOpSlots | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.slots = slots or FileOpSlots(settings)

    async def _live(self, tenant: str, target: Target, create: bool) -> LiveSession:
        if target.session_id is not None:
            return await self.sessions.require_live(tenant, target.session_id)
        assert target.workspace is not None
        try:
            name = check_workspace_name(target.workspace)
        except ValueError as e:
            raise BadRequest(str(e), "invalid_workspace") from None
        for live in self.sessions.live.values():
            if live.tenant == tenant and live.row["workspace"] == name and not live.stopping:
                return live
        if not create and await self.store.workspace(tenant, name, create_at=None) is None:
            raise NotFound(f"workspace {name} not found")
        return await self.sessions.for_workspace(tenant, name)

    @contextlib.asynccontextmanager
    async def _op(self, tenant: str, target: Target, op: str, *args: str, stdin: bool = False,
                  create: bool = False, size_hint: int = 0) -> AsyncIterator[FileOp]:
        """A file operation in the target's sandbox, in a slot (`fileslots.py`). The
        session counts as busy (never idled out) while it runs, which is never forever:
        an operation that moves no byte for `file_op_idle_s` is ended (and a download
        its client stops taking, after `file_send_stall_s`)."""
        live = await self._live(tenant, target, create)
        _check_fits_memory(live, size_hint)
        release = self.slots.take(tenant, live.id)
        live.starting += 1
        live.touch()
        try:
            yield await FileOp.start(live.sandbox, op, *args, stdin=stdin,
                                     idle_s=self.settings.file_op_idle_s)
        except OpStalled as e:
            log.warning("file operation %s in session %s: %s", op, live.id, e.message)
            raise
        except ServiceError as e:
            # What failed was the session (a 507 of a killed upload keeps its own words)
            if (not live.sandbox.alive or live.stopping) and not isinstance(e, StorageFull):
                raise Conflict(f"session {live.id} was stopped during the file operation",
                               "session_stopped") from None
            raise
        finally:
            live.starting -= 1
            live.touch()
            release()

    async def read(self, tenant: str, target: Target, path: str, start: int = 0,
                   end: int = -1) -> Download:
        """A file's bytes from `start` to `end` inclusive (`start` < 0: the last -start
        bytes; `end` -1: to the end). The stream must be consumed or closed."""
        cm = self._op(tenant, target, "read", check_path(path), str(start), str(end))
        op = await cm.__aenter__()
        try:
            size, first, length = _numbers(await op.header(), 3)
            if length and first + length > size:  # (an empty range is the route's 416)
                raise _nonsense()
        except BaseException as e:
            await op.abort()
            await cm.__aexit__(type(e), e, e.__traceback__)
            raise
        close = _closer(op, cm)
        return Download(size, first, length, _closing(op.chunks(), close), close)

    async def archive(self, tenant: str, target: Target, path: str) -> Download:
        """A tar of `path` (a directory's whole tree, or one file), streamed."""
        cm = self._op(tenant, target, "pack", check_path(path))
        op = await cm.__aenter__()
        try:
            first = await op.read()
            if not first:
                await op.finish()
                raise BadRequest("the archive came out empty")
        except BaseException as e:
            await op.abort()
            await cm.__aexit__(type(e), e, e.__traceback__)
            raise
        close = _closer(op, cm)
        return Download(-1, 0, -1, _closing(op.chunks(first), close), close)

    async def write(self, tenant: str, target: Target, path: str, body: AsyncIterator[bytes],
                    mode: str | None = None, size_hint: int = 0) -> FileWritten:
        """Write `body` to `path` (parents made); under its name only once complete."""
        path, mode = check_path(path), check_mode(mode)
        async with self._op(tenant, target, "write", path, mode, str(max(0, size_hint)),
                            stdin=True, create=True, size_hint=size_hint) as op:
            try:
                await op.feed(body)
                (size,) = _numbers(await op.header(), 1)
                await op.finish()
            except BaseException:
                if op.killed:
                    await self._discard(tenant, target, path, op.process.pid)
                raise
        return FileWritten(path=shown(path), size=size)

    async def append(self, tenant: str, target: Target, path: str,
                     body: AsyncIterator[bytes]) -> int:
        """Add `body` to the end of `path` (made, with its parents, when missing), in
        place as a shell's `>>` does; the file's new size."""
        path = check_path(path)
        async with self._op(tenant, target, "append", path, stdin=True, create=True) as op:
            await op.feed(body)
            (size,) = _numbers(await op.header(), 1)
            await op.finish()
        return size

    async def _discard(self, tenant: str, target: Target, path: str, pid: int | None) -> None:
        """Remove what a killed upload left under its temporary name (it removes it
        itself when it can: SIGTERM or a failure)."""
        head, base = posixpath.split(path)
        short = base.encode()[:200].decode(errors="ignore")
        with contextlib.suppress(Exception):
            async with self._op(tenant, target, "delete",
                                posixpath.join(head, f".{short}.chaser-upload-{pid}"), "0") as op:
                await op.finish()

    async def extract(self, tenant: str, target: Target, path: str,
                      body: AsyncIterator[bytes]) -> ArchiveWritten:
        """Unpack a tar stream below the directory `path` (made when missing)."""
        path = check_path(path)
        async with self._op(tenant, target, "unpack", path, stdin=True, create=True) as op:
            await op.feed(body)
            files, written = _numbers(await op.header(), 2)
            await op.finish()
        return ArchiveWritten(path=shown(path), files=files, bytes=written)

    async def mkdir(self, tenant: str, target: Target, path: str, mode: str | None = None) -> None:
        """Make a directory and its parents (an existing directory is fine)."""
        path = check_path(path)
        async with self._op(tenant, target, "mkdir", path, check_mode(mode or "755"),
                            create=True) as op:
            await op.finish()

    async def delete(self, tenant: str, target: Target, path: str, recursive: bool) -> None:
        """Remove a file, a link or an empty directory; with `recursive`, a whole tree."""
        path = check_path(path)
        if "/" + "/".join(p for p in shown(path).split("/") if p not in ("", ".")) in (
                "/", "/workspace"):
            # A well-formed path this server will not act on: 403, as for any refusal.
            raise Forbidden(f"refusing to delete {shown(path)}; delete what is in it",
                            "protected_path")
        async with self._op(tenant, target, "delete", path, "1" if recursive else "0") as op:
            await op.finish()

    async def list(self, tenant: str, target: Target, path: str) -> FileList:
        """A directory's entries (a file lists itself), sorted by name."""
        path = check_path(path)
        async with self._op(tenant, target, "list", path) as op:
            data, more = await op.read_all(MAX_LIST_BYTES)
        # Parsed and sorted off the event loop: a listing is up to MAX_LIST_BYTES.
        return await asyncio.to_thread(_listing, data, more, shown(path))


def _check_fits_memory(live: LiveSession, size: int) -> None:
    """Without a workspace disk, /workspace and /tmp are memory that the sandbox's
    memory limit holds (past it, the kernel's OOM killer ends the sandbox): an upload of
    a known size that cannot fit is refused before it starts."""
    limit_mb = (live.row.get("limits") or {}).get("memory_mb")
    if live.row.get("workspace") is None and limit_mb and size > limit_mb * 1024 * 1024:
        raise StorageFull(f"{size} bytes do not fit in session {live.id}: without a workspace "
                          f"its files are memory, bounded by its {limit_mb} MiB limit (use a "
                          "workspace, or a larger memory_mb)", "no_space")


def _listing(data: bytes, more: bool, base: str) -> FileList:
    """The operation's listing records as entries (blocking: a thread's work). Parsing
    stops one past MAX_LIST_ENTRIES whatever the sandbox sent, so a listing costs the
    server a bounded number of entries."""
    fields = data.split(b"\0", 3 * (MAX_LIST_ENTRIES + 1))
    entries = []
    for i in range(0, min(len(fields) - 2, 3 * (MAX_LIST_ENTRIES + 1)), 3):
        entry = _entry(fields[i], fields[i + 1], fields[i + 2], base)
        if entry is not None:
            entries.append(entry)
    truncated = more or len(entries) > MAX_LIST_ENTRIES
    entries = entries[:MAX_LIST_ENTRIES]
    entries.sort(key=lambda e: e.name)
    return FileList(path=base, entries=entries, truncated=truncated)


def _numbers(line: str, count: int) -> tuple[int, ...]:
    """The `count` whole numbers of an operation's answer line. The line comes from
    the sandbox: anything else is an error of the sandbox's, never a traceback."""
    parts = line.split()
    if len(parts) != count or not all(p.isascii() and p.isdigit() and len(p) <= 19
                                      for p in parts):
        raise _nonsense()
    return tuple(int(p) for p in parts)


def _nonsense() -> BadGateway:
    return BadGateway("the sandbox's file operation answered nonsense (was it tampered "
                      "with from inside?)", "file_error")


def _entry(head: bytes, name: bytes, target: bytes, base: str) -> FileEntry | None:
    """One record of the operation's listing (untrusted: a malformed one is dropped)."""
    try:
        kind, size, mode, mtime = head.decode("ascii").split(" ")
        text = name.decode("utf-8", "replace")
        # An empty name is the listed path itself, when it is not a directory.
        text, path = (text, posixpath.join(base, text)) if text else (
            posixpath.basename(base), base)
        when = datetime.fromtimestamp(float(mtime), UTC).isoformat(timespec="milliseconds")
        return FileEntry(name=text, path=path,
                         type=_TYPES.get(kind, "other"), size=int(size), mode=int(mode, 8),
                         mtime=when.replace("+00:00", "Z"),
                         link_target=target.decode("utf-8", "replace") if kind == "l" else None)
    except (ValueError, OverflowError, OSError):
        return None


def _closer(op: FileOp, cm: contextlib.AbstractAsyncContextManager[FileOp]
            ) -> Callable[[], Awaitable[None]]:
    """End the operation and leave its context, once, however the download ends."""
    done = False

    async def close() -> None:
        nonlocal done
        if not done:
            done = True
            await op.abort()
            await cm.__aexit__(None, None, None)
    return close


async def _closing(chunks: AsyncIterator[bytes],
                   close: Callable[[], Awaitable[None]]) -> AsyncIterator[bytes]:
    """`chunks`, then the operation closed however the stream ends."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        await close()
