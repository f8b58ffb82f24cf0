"""The start queue: bounded concurrency, tenants served in turn, cancellation loses no slot."""

from __future__ import annotations

import asyncio

from chaser.core.starts import StartQueue


async def _start(queue: StartQueue, tenant: str, order: list[str], release: asyncio.Event) -> None:
    async with queue.turn(tenant):
        order.append(tenant)
        await release.wait()


def test_at_most_concurrency_starts_at_once() -> None:
    async def main() -> None:
        order: list[str] = []
        queue, release = StartQueue(4), asyncio.Event()
        tasks = [asyncio.create_task(_start(queue, t, order, release))
                 for t in ("a", "b") * 5]
        await asyncio.sleep(0.01)
        assert len(order) == 4 and queue.waiting == 6 and queue.free == 0
        release.set()
        await asyncio.gather(*tasks)
        assert len(order) == 10 and queue.waiting == 0 and queue.free == 4

    asyncio.run(main())


def test_no_tenant_holds_more_than_half_the_slots() -> None:
    """Slow starts of one tenant leave slots for the others, idle or not."""

    async def main() -> None:
        order: list[str] = []
        queue, release = StartQueue(4), asyncio.Event()
        slow = [asyncio.create_task(_start(queue, "slow", order, release)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert order == ["slow", "slow"] and queue.free == 2 and queue.waiting == 3
        async with queue.turn("other"):  # at once, with two slots free
            async with queue.turn("third"):
                assert queue.free == 0
        release.set()
        await asyncio.gather(*slow)
        assert order.count("slow") == 5 and queue.free == 4

    asyncio.run(main())


def test_a_flooding_tenant_gets_one_start_per_round() -> None:
    """Ten starts of `flood` queued first; `b` and `c` still go second and third."""

    async def main() -> None:
        queue, order = StartQueue(1), list[str]()
        gates = [asyncio.Event() for _ in range(13)]

        async def one(tenant: str, gate: asyncio.Event) -> None:
            async with queue.turn(tenant):
                order.append(tenant)
                await gate.wait()

        tasks = [asyncio.create_task(one("flood", gates[i])) for i in range(10)]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(one("b", gates[10])), asyncio.create_task(one("c", gates[11])),
                  asyncio.create_task(one("b", gates[12]))]
        await asyncio.sleep(0.01)
        for gate in gates:  # release in the order the slots were given
            gate.set()
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        # The first flood start held the slot; then flood, b and c alternate by turn.
        assert order[:6] == ["flood", "flood", "b", "c", "flood", "b"], order
        assert order.count("flood") == 10

    asyncio.run(main())


def test_a_cancelled_waiter_gives_up_its_place_without_losing_a_slot() -> None:
    async def main() -> None:
        order: list[str] = []
        queue, release = StartQueue(1), asyncio.Event()
        first = asyncio.create_task(_start(queue, "a", order, release))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(_start(queue, "b", order, release))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        assert queue.waiting == 0
        release.set()
        await first
        # The slot came back: a new start runs at once.
        async with queue.turn("c"):
            assert queue.free == 0
        assert queue.free == 1 and order == ["a"]

    asyncio.run(main())


def test_cancelled_in_the_moment_a_slot_is_handed_over() -> None:
    async def main() -> None:
        order: list[str] = []
        queue, release = StartQueue(1), asyncio.Event()
        release.set()
        async with queue.turn("a"):
            waiter = asyncio.create_task(_start(queue, "b", order, release))
            await asyncio.sleep(0.01)
        waiter.cancel()  # its slot was just handed over, but it has not run yet
        await asyncio.gather(waiter, return_exceptions=True)
        assert queue.free == 1 and queue.waiting == 0

    asyncio.run(main())


def test_a_waiter_cancelled_as_a_slot_frees_loses_no_slot() -> None:
    """The waiter's future is cancelled at once, but its task runs later: a slot freed in
    between must skip it, not be handed to it and lost (a red-team finding)."""

    async def main() -> None:
        queue, release = StartQueue(2), asyncio.Event()
        order: list[str] = []
        holders = [asyncio.create_task(_start(queue, "a", order, release)),
                   asyncio.create_task(_start(queue, "b", order, release))]
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_start(queue, "c", order, release))
        await asyncio.sleep(0.01)
        assert queue.waiting == 1
        release.set()  # the holders are woken first, then the waiter is cancelled: its
        waiter.cancel()  # future is cancelled now, its task runs after the holders' exits
        await asyncio.gather(*holders, waiter, return_exceptions=True)
        assert queue.free == 2 and queue.waiting == 0 and order == ["a", "b"]
        async with queue.turn("d"), queue.turn("e"):
            assert queue.free == 0

    asyncio.run(main())
