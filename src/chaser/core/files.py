"""Files of a running session read and written in pieces, for the MCP file tools.

A thin layer over the files API (`FileTransfers`): each call is one `agent files`
operation inside the sandbox, as the sandbox's own user, so it needs nothing from the
image (no shell, no coreutils) and never touches a host path. What it adds is the tools'
shape: a relative path is the session's working directory's, a read is a bounded
window, and a write may append.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chaser.core.sessions import SessionService
from chaser.core.transfers import FileTransfers, Target
from chaser.errors import BadRequest

# What one tool call writes: the MCP message holds it base64-encoded, so keep it modest.
MAX_WRITE_BYTES = 1536 * 1024


@dataclass(frozen=True)
class FileChunk:
    """Bytes of a file from `offset`, and the file's size when they were read."""

    path: str
    size: int
    offset: int
    data: bytes


class FileService:
    """Reads and writes files in running sessions, a window at a time."""

    def __init__(self, sessions: SessionService, transfers: FileTransfers) -> None:
        self.sessions = sessions
        self.transfers = transfers

    async def read(self, tenant: str, session_id: str, path: str, offset: int,
                   limit: int) -> FileChunk:
        """Up to `limit` bytes of `path` from `offset` (an offset at or past the end
        reads nothing)."""
        full = await self._path(tenant, session_id, path)
        target = Target(session_id=session_id)
        got = await self.transfers.read(tenant, target, full, offset, offset + limit - 1)
        data = bytearray()
        try:
            async for chunk in got.chunks:
                data += chunk
        finally:
            await got.close()
        return FileChunk(full, got.size, offset, bytes(data[:limit]))

    async def write(self, tenant: str, session_id: str, path: str, data: bytes, *,
                    append: bool = False) -> int:
        """Write (or append) `data` to `path`, making parent directories; the new size."""
        if len(data) > MAX_WRITE_BYTES:
            raise BadRequest(f"content is larger than {MAX_WRITE_BYTES} bytes; write it in "
                             "parts with append: true")
        full = await self._path(tenant, session_id, path)
        target = Target(session_id=session_id)
        if append:
            return await self.transfers.append(tenant, target, full, _once(data))
        written = await self.transfers.write(tenant, target, full, _once(data),
                                             size_hint=len(data))
        return written.size

    async def _path(self, tenant: str, session_id: str, path: str) -> str:
        """`path` made absolute: a relative one is the session's working directory's, and
        `..` is resolved by name (as a shell's `cd -L` does) since the files API refuses it."""
        if not path or "\0" in path:
            raise BadRequest("path must be a non-empty path without NUL", "invalid_path")
        live = await self.sessions.require_live(tenant, session_id)
        cwd = str(live.row.get("cwd") or "/workspace")
        full = posixpath.normpath(posixpath.join(cwd, path))
        return "/" + full.lstrip("/")  # normpath keeps a leading "//"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
