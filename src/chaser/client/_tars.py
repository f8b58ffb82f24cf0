"""Local tar streams for directory transfers: made on the fly from a directory, and
extracted on the fly into one, neither ever held whole in memory or on disk."""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 256 * 1024


def tar_chunks(directory: str | Path, arcname: str) -> Iterator[bytes]:
    """An uncompressed tar of `directory`, its entries named under `arcname` ("." for
    its contents), as chunks: a thread writes it into a pipe as fast as it is read."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(write_fd, "wb") as pipe, \
                    tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(str(directory), arcname=arcname)
        except BrokenPipeError:
            pass  # the reader stopped (the upload failed): its error is the one to tell
        except BaseException as e:  # noqa: BLE001 - raised again on the reading side
            failure.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            while chunk := pipe.read(CHUNK_BYTES):
                yield chunk
    finally:
        writer.join()
    if failure:
        raise failure[0]


class ChunkReader:
    """A read-only file over an iterator of byte chunks (what tarfile's stream mode
    reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0  # tarfile reads 512 bytes at a time: never copy the rest each time

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) - self._pos < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buf = self._buf[self._pos:] + chunk
            self._pos = 0
        end = len(self._buf) if n < 0 else min(len(self._buf), self._pos + n)
        out = self._buf[self._pos:end]
        self._pos = end
        return out


def extract_chunks(chunks: Iterator[bytes], dest: str | Path, *,
                   strip_top: bool = False) -> None:
    """Extract a tar stream into `dest` with tarfile's `data` filter (no absolute
    names, no `..`, no links out, no devices); `strip_top` drops each name's first
    component (the archive API names entries after the directory asked for)."""
    reader: BinaryIO = ChunkReader(chunks)  # type: ignore[assignment]
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if strip_top:
                rest = member.name.split("/", 1)[1:]
                if not rest or not rest[0].strip("/"):
                    continue  # the directory itself
                member.name = rest[0]
                if member.islnk():
                    member.linkname = member.linkname.split("/", 1)[-1]
            tar.extract(member, str(dest), filter="data")
