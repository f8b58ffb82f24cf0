"""`session.files` and `client.workspaces.files(name)`: files and directories in and out
of a sandbox, streamed both ways (synchronous)."""

from __future__ import annotations

import builtins
import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from chaser.models.files import ArchiveWritten, FileEntry, FileList, FileWritten

from ._chunks import StdinSource, chunked
from ._errors import NotFoundError
from ._http import api_error, transport_error
from ._tars import extract_chunks, tar_chunks

if TYPE_CHECKING:
    from ._client import Client

OCTET = {"Content-Type": "application/octet-stream"}
TAR = {"Content-Type": "application/x-tar"}
CHUNK_BYTES = 1024 * 1024
# Transfers take as long as they take; only silence this long fails them.
TRANSFER_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
Progress = Callable[[int], None]  # called with each chunk's size


class Files:
    """Files of one session's or workspace's sandbox. Paths are absolute in the
    sandbox or relative to /workspace. Errors are the SDK's typed errors
    (`NotFoundError`, `ConflictError` for a directory where a file is expected, ...)."""

    def __init__(self, client: Client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"Files({self._prefix!r})"

    def _request(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._client._http.request(method, self._prefix + route,
                                           timeout=TRANSFER_TIMEOUT, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self._client.config) from None
        if not r.is_success:
            raise api_error(r, self._client.config)
        return r

    @contextlib.contextmanager
    def _stream(self, route: str, params: dict[str, Any],
                headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        try:
            with self._client._http.stream("GET", self._prefix + route, params=params,
                                           headers=headers, timeout=TRANSFER_TIMEOUT) as r:
                if not r.is_success:
                    r.read()
                    raise api_error(r, self._client.config)
                yield r
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self._client.config) from None

    # -- single files -----------------------------------------------------------------

    def read(self, path: str) -> bytes:
        """The whole file (use `iter_read` or `download` for large ones)."""
        return self._request("GET", "/files", params={"path": path}).content

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    @contextlib.contextmanager
    def iter_read(self, path: str, *, start: int | None = None,
                  end: int | None = None) -> Iterator[Iterator[bytes]]:
        """The file's bytes as chunks (`with files.iter_read(p) as chunks: ...`);
        `start`/`end` (inclusive) ask for a range."""
        headers = None
        if start is not None or end is not None:
            headers = {"Range": f"bytes={start or 0}-{'' if end is None else end}"}
        with self._stream("/files", {"path": path}, headers) as r:
            yield r.iter_bytes(CHUNK_BYTES)

    def download(self, path: str, dest: str | Path | BinaryIO, *,
                 progress: Progress | None = None) -> int:
        """Stream the file into `dest` (a local path or a binary file); bytes written.
        A local path is written under a temporary name and renamed when complete."""
        if not isinstance(dest, (str, Path)):
            return self._copy(path, dest, progress)
        target = Path(dest)
        tmp = target.with_name(f".{target.name}.chaser-part")
        try:
            with open(tmp, "wb") as f:
                n = self._copy(path, f, progress)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return n

    def _copy(self, path: str, out: BinaryIO, progress: Progress | None) -> int:
        n = 0
        with self.iter_read(path) as chunks:
            for chunk in chunks:
                out.write(chunk)
                n += len(chunk)
                if progress:
                    progress(len(chunk))
        return n

    def write(self, path: str, data: str | StdinSource, *, mode: str | int | None = None,
              progress: Progress | None = None) -> FileWritten:
        """Create or replace `path` with `data` (text, bytes, an iterable of bytes or a
        binary file, streamed); parents are made, and the file appears only complete."""
        body = chunked(data.encode() if isinstance(data, str) else data)
        if progress is not None:
            body = _counting(body, progress)
        r = self._request("PUT", "/files", params=_params(path, mode), content=body,
                          headers=OCTET)
        return FileWritten.model_validate(r.json())

    def upload(self, local: str | Path, path: str, *, mode: str | int | None = None,
               progress: Progress | None = None) -> FileWritten:
        """Stream a local file to `path` (its mode kept unless `mode` is given)."""
        if mode is None:
            mode = os.stat(local).st_mode & 0o777
        with open(local, "rb") as f:
            # The file itself as the body: httpx sends its length (the server reserves
            # the space first) and reads it in large blocks.
            body: Any = f if progress is None else _CountingFile(f, progress)
            r = self._request("PUT", "/files", params=_params(path, mode), content=body,
                              headers=OCTET)
        return FileWritten.model_validate(r.json())

    def list(self, path: str = ".") -> builtins.list[FileEntry]:
        """A directory's entries (a file lists itself), sorted by name."""
        r = self._request("GET", "/files/list", params={"path": path})
        return FileList.model_validate(r.json()).entries

    def stat(self, path: str) -> FileEntry | None:
        """What `path` is (a directory, a file, a link), or None when it does not exist."""
        try:
            entries = self.list(path)
        except NotFoundError:
            return None
        full = _absolute(path)
        for e in entries:
            if e.path == full:
                return e
        # a directory lists its children (size, mode and mtime are not known here)
        return FileEntry(name=posixpath.basename(full) or "/", path=full, type="directory",
                         size=0, mode=0, mtime="")

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def mkdir(self, path: str, *, mode: str | int | None = None) -> None:
        """Make a directory and its parents (an existing one is fine)."""
        self._request("POST", "/files/mkdir", params=_params(path, mode))

    def delete(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, a link or an empty directory; `recursive` removes a tree."""
        self._request("DELETE", "/files", params={"path": path,
                                                  "recursive": "true" if recursive else "false"})

    # -- directories (tar streams) ----------------------------------------------------

    @contextlib.contextmanager
    def iter_archive(self, path: str) -> Iterator[Iterator[bytes]]:
        """A tar stream of `path` (entries named from its last component)."""
        with self._stream("/archive", {"path": path}) as r:
            yield r.iter_bytes(CHUNK_BYTES)

    def put_archive(self, path: str, tar: StdinSource, *,
                    progress: Progress | None = None) -> ArchiveWritten:
        """Extract an uncompressed tar (bytes, chunks or a file) below directory `path`."""
        body = chunked(tar)
        if progress is not None:
            body = _counting(body, progress)
        r = self._request("PUT", "/archive", params={"path": path}, content=body, headers=TAR)
        return ArchiveWritten.model_validate(r.json())

    def upload_dir(self, local: str | Path, path: str, *,
                   progress: Progress | None = None) -> ArchiveWritten:
        """Copy the local directory's contents into the sandbox directory `path` (made
        when missing), as one streamed tar."""
        return self.put_archive(path, tar_chunks(local, "."), progress=progress)

    def download_dir(self, path: str, local: str | Path, *,
                     progress: Progress | None = None) -> None:
        """Copy the sandbox directory's contents into the local directory `local` (made
        when missing), extracted as it streams (tarfile's `data` filter: nothing lands
        outside `local`)."""
        dest = Path(local)
        dest.mkdir(parents=True, exist_ok=True)
        # "P/." packs what P is, or what it links to: a link to a directory copies the
        # directory (the archive API itself packs a named link as the link, as docker cp).
        with self.iter_archive(posixpath.join(path, ".")) as chunks:
            stream = _counting(chunks, progress) if progress else chunks
            extract_chunks(stream, dest, strip_top=True)


def _params(path: str, mode: str | int | None) -> dict[str, str]:
    params = {"path": path}
    if mode is not None:
        params["mode"] = format(mode, "o") if isinstance(mode, int) else mode
    return params


def _absolute(path: str) -> str:
    return posixpath.normpath(posixpath.join("/workspace", path))


class _CountingFile:
    """A binary file that reports each read's size (a progress bar), still a file to
    httpx (which takes its length from `fileno`)."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._progress(len(data))
        return data

    def fileno(self) -> int:
        return self._f.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def _counting(body: bytes | Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in [body] if isinstance(body, bytes) else body:
        progress(len(chunk))
        yield chunk
