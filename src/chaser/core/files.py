"""Files in a session's sandbox, read and written by small commands run inside it.

The commands run as the sandbox's own user, in its namespaces and limits, so they see
exactly what the session's commands see and never touch a host path on a tenant's
behalf. Bytes cross the command's pipes base64-encoded, so any content survives.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from chaser.core.execution import Executor
from chaser.errors import BadRequest
from chaser.models import SessionExecRequest

FILE_COMMAND_TIMEOUT_MS = 60_000
# A write goes through the command's stdin, whose limit is 2 MiB: base64 of this fills it.
MAX_WRITE_BYTES = 1536 * 1024


@dataclass(frozen=True)
class FileChunk:
    """Bytes of a file from `offset`, and the file's size when they were read."""

    path: str
    size: int
    offset: int
    data: bytes


class FileService:
    """Reads and writes files in running sessions."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def read(self, tenant: str, session_id: str, path: str, offset: int,
                   limit: int) -> FileChunk:
        """Up to `limit` bytes of `path` from `offset` (BadRequest naming what is wrong
        when it is missing, a directory or unreadable)."""
        p = shlex.quote(path)
        script = (f'p={p}; [ -e "$p" ] || {{ echo "$p: no such file or directory"; exit 2; }}; '
                  f'[ -d "$p" ] && {{ echo "$p is a directory"; exit 2; }}; '
                  f'[ -r "$p" ] || {{ echo "$p: permission denied"; exit 2; }}; '
                  f'stat -L -c %s -- "$p" || exit 2; '
                  f'tail -c +{offset + 1} -- "$p" | head -c {limit} | base64 -w0')
        out = await self._run(tenant, session_id, script, max_output_bytes=limit * 4 // 3 + 64)
        size_line, _, b64 = out.partition("\n")
        return FileChunk(path, int(size_line.strip()), offset, base64.b64decode(b64))

    async def write(self, tenant: str, session_id: str, path: str, data: bytes, *,
                    append: bool = False) -> int:
        """Write (or append) `data` to `path`, making parent directories; the new size."""
        if len(data) > MAX_WRITE_BYTES:
            raise BadRequest(f"content is larger than {MAX_WRITE_BYTES} bytes; write it in "
                             "parts with append: true")
        redirect = ">>" if append else ">"
        script = (f'p={shlex.quote(path)}; d=$(dirname -- "$p") && mkdir -p -- "$d" && '
                  f'base64 -d {redirect} "$p" && stat -L -c %s -- "$p"')
        out = await self._run(tenant, session_id, script, stdin=base64.b64encode(data).decode())
        return int(out.strip().splitlines()[-1])

    async def _run(self, tenant: str, session_id: str, script: str, *, stdin: str | None = None,
                   max_output_bytes: int = 4096) -> str:
        """Run a helper command in the session; its output, or BadRequest with it."""
        req = SessionExecRequest(command=script, stdin=stdin, timeout_ms=FILE_COMMAND_TIMEOUT_MS,
                                 max_output_bytes=max_output_bytes)
        res = await self.executor.run(tenant, session_id, req)
        if res.exit_code != 0:
            raise BadRequest(res.output.strip() or f"the file command failed ({res.status}, "
                             f"exit code {res.exit_code}, signal {res.signal})")
        return res.output
