"""`session.files` and `client.workspaces.files(name)` for the async client: the same
operations as `_files.Files`, streamed both ways without blocking the event loop."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import posixpath
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from chaser.models.files import ArchiveWritten, FileEntry, FileList, FileWritten

from ._chunks import AsyncStdinSource, achunked
from ._errors import NotFoundError
from ._files import CHUNK_BYTES, OCTET, TAR, TRANSFER_TIMEOUT, Progress, _absolute, _params
from ._http import api_error, transport_error
from ._tars import extract_chunks, tar_chunks

if TYPE_CHECKING:
    from ._async_client import AsyncClient

_END = object()


class AsyncFiles:
    """Files of one session's or workspace's sandbox (see `chaser.client.Files`)."""

    def __init__(self, client: AsyncClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"AsyncFiles({self._prefix!r})"

    async def _request(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        try:
            r = await self._client._http.request(method, self._prefix + route,
                                                 timeout=TRANSFER_TIMEOUT, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self._client.config) from None
        if not r.is_success:
            raise api_error(r, self._client.config)
        return r

    @contextlib.asynccontextmanager
    async def _stream(self, route: str, params: dict[str, Any],
                      headers: dict[str, str] | None = None) -> AsyncIterator[httpx.Response]:
        try:
            async with self._client._http.stream("GET", self._prefix + route, params=params,
                                                 headers=headers,
                                                 timeout=TRANSFER_TIMEOUT) as r:
                if not r.is_success:
                    await r.aread()
                    raise api_error(r, self._client.config)
                yield r
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self._client.config) from None

    async def read(self, path: str) -> bytes:
        return (await self._request("GET", "/files", params={"path": path})).content

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    @contextlib.asynccontextmanager
    async def iter_read(self, path: str, *, start: int | None = None,
                        end: int | None = None) -> AsyncIterator[AsyncIterator[bytes]]:
        headers = None
        if start is not None or end is not None:
            headers = {"Range": f"bytes={start or 0}-{'' if end is None else end}"}
        async with self._stream("/files", {"path": path}, headers) as r:
            yield r.aiter_bytes(CHUNK_BYTES)

    async def download(self, path: str, dest: str | Path | BinaryIO, *,
                       progress: Progress | None = None) -> int:
        """Stream the file into `dest` (a local path, written under a temporary name
        and renamed when complete, or a binary file); bytes written."""
        if not isinstance(dest, (str, Path)):
            return await self._copy(path, dest, progress)
        target = Path(dest)
        tmp = target.with_name(f".{target.name}.chaser-part")
        try:
            with open(tmp, "wb") as f:
                n = await self._copy(path, f, progress)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return n

    async def _copy(self, path: str, out: BinaryIO, progress: Progress | None) -> int:
        n = 0
        async with self.iter_read(path) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
                n += len(chunk)
                if progress:
                    progress(len(chunk))
        return n

    async def write(self, path: str, data: str | AsyncStdinSource, *,
                    mode: str | int | None = None) -> FileWritten:
        """Create or replace `path` with `data` (text, bytes, a (async) iterable of
        bytes or a binary file, streamed); it appears only complete."""
        body = achunked(data.encode() if isinstance(data, str) else data)
        r = await self._request("PUT", "/files", params=_params(path, mode), content=body,
                                headers=OCTET)
        return FileWritten.model_validate(r.json())

    async def upload(self, local: str | Path, path: str, *,
                     mode: str | int | None = None) -> FileWritten:
        if mode is None:
            mode = os.stat(local).st_mode & 0o777
        with open(local, "rb") as f:
            return await self.write(path, _threaded(_file_chunks(f)), mode=mode)

    async def list(self, path: str = ".") -> builtins.list[FileEntry]:
        r = await self._request("GET", "/files/list", params={"path": path})
        return FileList.model_validate(r.json()).entries

    async def stat(self, path: str) -> FileEntry | None:
        try:
            entries = await self.list(path)
        except NotFoundError:
            return None
        full = _absolute(path)
        for e in entries:
            if e.path == full:
                return e
        return FileEntry(name=os.path.basename(full) or "/", path=full, type="directory",
                         size=0, mode=0, mtime="")

    async def exists(self, path: str) -> bool:
        return await self.stat(path) is not None

    async def mkdir(self, path: str, *, mode: str | int | None = None) -> None:
        await self._request("POST", "/files/mkdir", params=_params(path, mode))

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await self._request("DELETE", "/files", params={
            "path": path, "recursive": "true" if recursive else "false"})

    @contextlib.asynccontextmanager
    async def iter_archive(self, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._stream("/archive", {"path": path}) as r:
            yield r.aiter_bytes(CHUNK_BYTES)

    async def put_archive(self, path: str, tar: AsyncStdinSource) -> ArchiveWritten:
        r = await self._request("PUT", "/archive", params={"path": path},
                                content=achunked(tar), headers=TAR)
        return ArchiveWritten.model_validate(r.json())

    async def upload_dir(self, local: str | Path, path: str) -> ArchiveWritten:
        """Copy the local directory's contents into the sandbox directory `path`."""
        return await self.put_archive(path, _threaded(tar_chunks(local, ".")))

    async def download_dir(self, path: str, local: str | Path) -> None:
        """Copy the sandbox directory's contents into the local directory `local`,
        extracted in a thread as it streams (tarfile's `data` filter)."""
        dest = Path(local)
        dest.mkdir(parents=True, exist_ok=True)
        chunks: queue.Queue[object] = queue.Queue(maxsize=8)
        failure: list[BaseException] = []
        ended = threading.Event()

        def feed() -> Iterator[bytes]:
            while (chunk := chunks.get()) is not _END:
                yield chunk  # type: ignore[misc]
            ended.set()

        def extract() -> None:
            try:
                extract_chunks(feed(), dest, strip_top=True)
            except BaseException as e:  # noqa: BLE001 - raised again below
                failure.append(e)
            while not ended.is_set() and chunks.get() is not _END:
                pass  # drained, so the producer never blocks

        worker = threading.Thread(target=extract, daemon=True)
        worker.start()
        try:
            # "P/.": a link to a directory copies the directory (as the sync client)
            async with self.iter_archive(posixpath.join(path, ".")) as stream:
                async for chunk in stream:
                    await asyncio.to_thread(chunks.put, chunk)
        finally:
            await asyncio.to_thread(chunks.put, _END)
            await asyncio.to_thread(worker.join)
        if failure:
            raise failure[0]


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


async def _threaded(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator read in a thread, chunk by chunk."""
    while (chunk := await asyncio.to_thread(next, chunks, b"")):
        yield chunk
