"""OutputLog: byte-exact offsets, stream runs, bounded segments, followers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from chaser.core.output import STDERR, STDOUT, OutputLog


async def test_offsets_and_streams_round_trip(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c")
    log.append(STDOUT, b"hello ")
    log.append(STDOUT, b"world\n")
    log.append(STDERR, b"oops\n")
    log.append(STDOUT, b"end")
    assert log.size == 20
    chunks = log.read(0)
    assert [(c.offset, c.stream, c.data) for c in chunks] == [
        (0, STDOUT, b"hello world\n"), (12, STDERR, b"oops\n"), (17, STDOUT, b"end")]
    # Reading from the middle of a run keeps the right stream.
    mid = log.read(14, 4)
    assert [(c.offset, c.stream, c.data) for c in mid] == [(14, STDERR, b"ps\n"), (17, STDOUT, b"e")]


async def test_random_reads_equal_the_whole(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c", segment_bytes=1000, max_bytes=10**9)
    rng = random.Random(7)
    whole = bytearray()
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        log.append(rng.choice((STDOUT, STDERR)), data)
        whole += data
    for _ in range(200):
        start = rng.randrange(len(whole))
        got = b"".join(c.data for c in log.read(start, rng.randrange(1, 3000)))
        assert got == bytes(whole[start:start + len(got)])
        assert got


async def test_bounded_drops_oldest_segments(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c", segment_bytes=1024, max_bytes=4096)
    for i in range(100):
        log.append(STDOUT, bytes([65 + i % 26]) * 512)
    assert log.size == 51200
    assert log.start > 0 and log.size - log.start <= 4096 + 1024
    assert log.dropped
    files = list((tmp_path / "c").glob("*.out"))
    assert len(files) <= 6
    # A read before the kept window starts at the oldest kept byte.
    first = log.read(0, 10)[0]
    assert first.offset == log.start


async def test_followers_wake_on_append_and_close(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c")
    waiter = asyncio.create_task(log.wait_for(0, 5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    log.append(STDOUT, b"x")
    assert await waiter
    assert not await log.wait_for(1, 0.05)  # nothing new: times out
    closing = asyncio.create_task(log.wait_for(1, 5))
    log.close()
    assert await closing


async def test_reload_from_disk_keeps_streams(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c", segment_bytes=8)
    log.append(STDOUT, b"0123456789")
    log.append(STDERR, b"abc")
    log.close()
    again = OutputLog.load(tmp_path / "c")
    assert again.closed and again.size == 13
    assert [(c.stream, c.data) for c in again.read(0)] == [(STDOUT, b"0123456789"), (STDERR, b"abc")]


async def test_delete_removes_files(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "c")
    log.append(STDOUT, b"x")
    log.delete()
    assert not (tmp_path / "c").exists()


async def test_a_cancel_is_not_lost_when_bytes_arrive_with_it(tmp_path: Path) -> None:
    # A stream's follower cancelled (its client gone, its key revoked) in the very tick
    # its bytes arrive must end, not take the bytes and wait on for ever.
    log = OutputLog(tmp_path / "c")
    waiting = asyncio.ensure_future(log.wait_for(0, 30))
    await asyncio.sleep(0)
    log.append(1, b"x")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
