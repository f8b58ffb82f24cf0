"""Local tar streams for directory transfers: made on the fly from a directory, and
extracted on the fly into one, neither ever held whole in memory or on disk. What is
extracted comes from a sandbox: every member is checked before it touches the disk."""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ._errors import UnsafeArchiveError

CHUNK_BYTES = 256 * 1024
MAX_NAME = 4096  # bytes of a member's name or link target
NAME_MAX = 255  # bytes of one name in it


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
    """Extract a tar stream into `dest`, every member checked first (`_Guard`: the
    archive comes from a sandbox, and tarfile's `data` filter had bypasses in the patch
    levels of Python 3.11 still about); `strip_top` drops each name's first component
    (the archive API names entries after the directory asked for). UnsafeArchiveError
    names the first member refused; what came before it stays extracted."""
    reader: BinaryIO = ChunkReader(chunks)  # type: ignore[assignment]
    guard = _Guard(Path(dest))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if strip_top and not _strip_top(member):
                    continue  # the directory itself
                guard.check(member)
                # The data filter still applies (owners dropped, modes as checked here).
                tar.extract(member, str(dest), filter="data")
                guard.extracted(member)
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"the archive was refused: {e}") from None


def _strip_top(member: tarfile.TarInfo) -> bool:
    rest = member.name.split("/", 1)[1:]
    if not rest or not rest[0].strip("/"):
        return False
    member.name = rest[0]
    if member.islnk():
        member.linkname = member.linkname.split("/", 1)[-1]
    return True


class _Guard:
    """The checks every member passes before it is extracted:
    - a relative name of at most MAX_NAME bytes (names of at most NAME_MAX), no NUL,
      no `..` component, nothing below a symlink (one this archive made, or one already
      in `dest`: each parent is checked on disk), never an existing symlink replaced by
      a file written through it;
    - a regular file, directory, symlink or hard link: no devices, fifos or others;
    - a symlink's target relative, of leading `..` only (then no `..` after a name,
      where a symlink could change what it means), climbing no higher than the link's
      own directory is deep: by induction every link resolves inside `dest`;
    - a hard link's target a regular file this archive extracted;
    - modes without setuid, setgid, sticky or group/other write bits.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.files: set[str] = set()
        self.links: set[str] = set()

    def check(self, m: tarfile.TarInfo) -> None:
        name = m.name = _relative(m.name, m.name)
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{name!r} is a device, fifo or other special file")
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self.links or (self.dest / parent).is_symlink():
                raise UnsafeArchiveError(f"{name!r} is below the symlink {parent!r}")
        if name in self.links and not m.issym():
            raise UnsafeArchiveError(f"{name!r} would be written through a symlink")
        if m.issym():
            _check_symlink(name, m.linkname)
        if m.islnk():
            target = _relative(m.linkname, name)
            if target not in self.files or (self.dest / target).is_symlink():
                raise UnsafeArchiveError(f"{name!r} hard-links {m.linkname!r}, not a file "
                                         "of this archive")
            m.linkname = target
        if not m.issym() and (self.dest / name).is_symlink():
            (self.dest / name).unlink()  # replaced, never written through
        m.mode = (m.mode & 0o755) | (0o700 if m.isdir() else 0o600)

    def extracted(self, m: tarfile.TarInfo) -> None:
        if m.issym():
            self.links.add(m.name)
            self.files.discard(m.name)
        elif m.isreg() or m.islnk():
            self.files.add(m.name)
            self.links.discard(m.name)


def _relative(name: str, member: str) -> str:
    """`name` as a checked relative path (`.` components and duplicate slashes gone)."""
    raw = name.encode("utf-8", "surrogateescape")
    if "\0" in name or not name.strip("/") or len(raw) > MAX_NAME:
        raise UnsafeArchiveError(f"{member!r}: an empty, overlong or NUL-holding name")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"{member!r}: an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{member!r}: a '..' in {name!r}")
    if not parts or any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in parts):
        raise UnsafeArchiveError(f"{member!r}: a name longer than {NAME_MAX} bytes")
    return "/".join(parts)


def _check_symlink(name: str, target: str) -> None:
    """A symlink's target must resolve inside the destination (see `_Guard`)."""
    if not target or target.startswith("/") or "\0" in target or len(
            target.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise UnsafeArchiveError(f"symlink {name!r} -> {target!r} points outside")
    parts = [p for p in target.split("/") if p not in ("", ".")]
    climbs = 0
    while climbs < len(parts) and parts[climbs] == "..":
        climbs += 1
    if ".." in parts[climbs:] or climbs > name.count("/"):
        raise UnsafeArchiveError(f"symlink {name!r} -> {target!r} points outside (or "
                                 "through a '..' after a name)")
