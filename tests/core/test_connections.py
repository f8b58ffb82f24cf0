"""Connections held per key, ended by a revoke (core/connections.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from chaser.core.connections import KeyConnections, until_set


async def test_a_revoke_sets_every_hold_of_its_key_and_later_ones() -> None:
    conns = KeyConnections()
    with conns.hold("key_a") as a1, conns.hold("key_a") as a2, conns.hold("key_b") as b:
        assert conns.count("key_a") == 2
        assert conns.revoke("key_a") == 2
        assert a1.is_set() and a2.is_set() and not b.is_set()
    assert conns.count("key_a") == conns.count("key_b") == 0
    with conns.hold("key_a") as late:  # authenticated just before the revoke
        assert late.is_set()
    assert conns.revoked("key_a") and not conns.revoked("key_b")


async def test_until_set_passes_items_then_stops_a_waiting_source_and_closes_it() -> None:
    closed: list[str] = []
    more = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
            await more.wait()  # a quiet stream: waits for ever
            yield 3
        finally:
            closed.append("source")

    stop = asyncio.Event()
    got = []
    before = asyncio.all_tasks()  # (the loop may be shared with earlier tests' leftovers)
    async for item in until_set(source(), stop):
        got.append(item)
        if item == 2:
            asyncio.get_running_loop().call_later(0.05, stop.set)
    assert got == [1, 2] and closed == ["source"]
    assert asyncio.all_tasks() - before == set()  # nothing of until_set's left running


async def test_until_set_ends_with_its_source_and_when_closed_early() -> None:
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    before = asyncio.all_tasks()  # (the loop may be shared with earlier tests' leftovers)
    assert [i async for i in until_set(numbers(3), asyncio.Event())] == [0, 1, 2]
    stream = until_set(numbers(10), asyncio.Event())
    assert await anext(stream) == 0
    await stream.aclose()  # the client left mid-stream
    assert asyncio.all_tasks() - before == set()  # nothing of until_set's left running
