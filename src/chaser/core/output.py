"""A command's output: one append-only byte log on disk, bounded, with live followers.

Offsets are byte offsets into everything the command ever wrote (stdout and stderr
interleaved as read). The log lives in segment files under the command's directory;
when the kept bytes pass `max_bytes` the oldest whole segment is deleted and
`start` moves forward, so a chatty command is bounded on disk and an offset never
changes meaning. Each segment has an index of stream changes (9 bytes per change) so
a reader at any offset knows which stream every byte came from.

Followers never block the writer: each reads from the log at its own pace and waits on
a condition for more, so a slow or vanished client costs nothing but its own offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import BinaryIO

STDOUT, STDERR = 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
INDEX_RECORD = struct.Struct("<QB")  # (absolute offset where a run starts, stream)
MAX_INDEX_RECORDS = 64 * 1024  # per segment; a segment with more rolls over early


@dataclass(frozen=True)
class Chunk:
    """Bytes [offset, offset+len(data)) of the log, all from one stream."""

    offset: int
    stream: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass
class _Segment:
    start: int
    end: int
    runs: list[int] = field(default_factory=list)  # offsets where a stream run begins
    streams: bytearray = field(default_factory=bytearray)


class OutputLog:
    """The bounded, append-only output log of one command."""

    def __init__(self, directory: Path, *, max_bytes: int = 64 * 1024 * 1024,
                 segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.dir = directory
        self.max_bytes = max(max_bytes, segment_bytes)
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._data_file: BinaryIO | None = None
        self._index_file: BinaryIO | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self.closed = False
        self.dropped = False
        # The write that failed (a full disk): output past it is lost, so the command
        # must end; `on_failure` tells its owner, once.
        self.failure: OSError | None = None
        self.on_failure: Callable[[OSError], None] | None = None
        # Deletes dropped segments' files; the owner passes one that works off the event
        # loop (an 8 MiB unlink is not free). Inline by default.
        self.discard: Callable[[list[Path]], None] = delete_files

    # -- state ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Offset just past the last byte written."""
        return self._segments[-1].end if self._segments else 0

    @property
    def start(self) -> int:
        """Oldest offset still kept."""
        return self._segments[0].start if self._segments else 0

    # -- writing ----------------------------------------------------------------------

    def append(self, stream: int, data: bytes) -> None:
        """Add bytes from `stream`; page-cache appends, cheaper than a thread hop."""
        if not data or self.closed or self.failure is not None:
            return
        try:
            self._append(stream, data)
        except OSError as e:
            self.failure = e
            if self.on_failure is not None:
                self.on_failure(e)

    def _append(self, stream: int, data: bytes) -> None:
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.end - seg.start >= self.segment_bytes or len(seg.runs) >= MAX_INDEX_RECORDS:
            seg = self._roll()
        if not seg.streams or seg.streams[-1] != stream:
            seg.runs.append(seg.end)
            seg.streams.append(stream)
            assert self._index_file is not None
            self._index_file.write(INDEX_RECORD.pack(seg.end, stream))
        assert self._data_file is not None
        self._data_file.write(data)
        seg.end += len(data)
        self._notify()

    def prepare(self) -> None:
        """Create the log's directory and first segment now (blocking: call it from a
        thread) rather than on the event loop at the first byte, where hundreds of
        commands starting to print together would stall every request."""
        if not self._segments:
            self._roll()

    def _roll(self) -> _Segment:
        self._close_files()
        start = self.size
        if not self._segments:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._data_file = open(self.dir / f"{start:020d}.out", "ab", buffering=0)
        self._index_file = open(self.dir / f"{start:020d}.idx", "ab", buffering=0)
        seg = _Segment(start, start)
        self._segments.append(seg)
        dropped = []
        while self.size - self._segments[0].end >= self.max_bytes:
            dropped.append(self._segments.pop(0))
        self._forget(dropped)
        return seg

    def _forget(self, segments: list[_Segment]) -> None:
        if segments:
            self.dropped = True
            self.discard([self.dir / f"{s.start:020d}{ext}" for s in segments
                          for ext in (".out", ".idx")])

    def _close_files(self) -> None:
        for f in (self._data_file, self._index_file):
            if f is not None:
                f.close()
        self._data_file = self._index_file = None

    def shrink(self) -> int:
        """Drop all output kept so far (a log kept past its owner's share); what comes
        next is kept as usual. Returns the bytes dropped. Offsets keep their meaning:
        `start` moves forward to the end."""
        if self._segments and not self.closed and self.failure is None:
            self._roll()  # the writer goes on in a fresh segment
        dropped = self._segments[:-1]
        del self._segments[:-1]
        freed = sum(s.end - s.start for s in dropped)
        self._forget(dropped)
        return freed

    def close(self) -> None:
        """No more output will come; followers drain what is left and stop."""
        if not self.closed:
            self.closed = True
            self._close_files()
            self._notify()

    def delete(self) -> None:
        """Remove the log from disk (ephemeral runs keep nothing)."""
        self.close()
        self._segments.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- reading ----------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int = 256 * 1024) -> list[Chunk]:
        """Chunks from `offset` (clamped to what is kept), at most `max_bytes` in all."""
        segments = list(self._segments)  # a snapshot: readers may run in a worker thread
        offset = max(offset, segments[0].start if segments else 0)
        chunks: list[Chunk] = []
        left = max_bytes
        for seg in segments:
            if seg.end <= offset or left <= 0:
                continue
            offset = max(offset, seg.start)  # a segment dropped meanwhile leaves a gap
            path = self.dir / f"{seg.start:020d}.out"
            try:
                with open(path, "rb") as f:
                    f.seek(offset - seg.start)
                    data = f.read(min(left, seg.end - offset))
            except FileNotFoundError:  # dropped between the check and the read
                offset = max(offset, seg.end)
                continue
            chunks.extend(_split_runs(seg, offset, data))
            offset += len(data)
            left -= len(data)
        return chunks

    def read_bytes(self, offset: int, max_bytes: int) -> tuple[int, bytes]:
        """(actual start offset, bytes) without stream boundaries."""
        start = max(offset, self.start)
        return start, b"".join(c.data for c in self.read(start, max_bytes))

    async def wait_for(self, offset: int, timeout: float) -> bool:
        """Wait until bytes past `offset` exist or the log closes; False on timeout."""
        if self.size > offset or self.closed:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            # Not wait_for: on 3.11 it swallows a cancel that lands as `fut` completes,
            # and a follower cancelled then (its client gone) would run on for ever.
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(fut)
        return True

    # -- reopening after a restart -----------------------------------------------------

    @classmethod
    def load(cls, directory: Path, **kwargs: int) -> OutputLog:
        """Open a finished command's log left on disk (read-only, closed)."""
        log = cls(directory, **kwargs)
        if directory.is_dir():
            for data in sorted(directory.glob("*.out")):
                start = int(data.stem)
                seg = _Segment(start, start + os.path.getsize(data))
                idx = data.with_suffix(".idx")
                raw = idx.read_bytes() if idx.exists() else b""
                for off, stream in INDEX_RECORD.iter_unpack(raw[: len(raw) - len(raw) % 9]):
                    seg.runs.append(off)
                    seg.streams.append(stream)
                if not seg.runs:
                    seg.runs.append(start)
                    seg.streams.append(STDOUT)
                log._segments.append(seg)
        log.closed = True
        return log


def _split_runs(seg: _Segment, offset: int, data: bytes) -> list[Chunk]:
    """Cut `data` (starting at `offset` inside `seg`) where the stream changes."""
    out: list[Chunk] = []
    i = max(bisect_right(seg.runs, offset) - 1, 0)
    pos = 0
    while pos < len(data):
        nxt = seg.runs[i + 1] if i + 1 < len(seg.runs) else None
        stop = len(data) if nxt is None else min(len(data), nxt - offset)
        if stop > pos:
            out.append(Chunk(offset + pos, seg.streams[i] if seg.streams else STDOUT, data[pos:stop]))
        pos = max(stop, pos)
        i += 1
    return out


def delete_files(paths: list[Path]) -> None:
    """Delete files that may already be gone (blocking)."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def delete_files_later(paths: list[Path]) -> None:
    """Delete files on a worker thread when called on the event loop, else now."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # on a thread already
        delete_files(paths)
        return
    loop.run_in_executor(None, delete_files, paths)
