"""Sessions' usage reads: each sandbox at most once per interval, however many ask."""

from __future__ import annotations

import asyncio
import time

from chaser.core.usage import SessionsUsage
from chaser.runtime.base import Sandbox
from chaser.runtime.usage import ResourceUsage


class Counted:
    """A sandbox stand-in that counts how often its counters are read."""

    def __init__(self, name: str, alive: bool = True) -> None:
        self.name = name
        self.alive = alive
        self.reads = 0

    def usage(self) -> ResourceUsage | None:
        self.reads += 1
        time.sleep(0.01)  # a read takes a moment: concurrent askers overlap it
        return ResourceUsage(time.time(), cpu_usec=self.reads * 1000, pids=1)


def as_sandboxes(sandboxes: list[Counted]) -> list[tuple[str, Sandbox]]:
    return [(s.name, s) for s in sandboxes]  # type: ignore[misc]


async def test_concurrent_askers_share_one_read_per_sandbox() -> None:
    meter = SessionsUsage(every_s=0.3)
    boxes = [Counted(f"ses_{i}") for i in range(3)] + [Counted("ses_gone", alive=False)]
    answers = await asyncio.gather(*(meter.read(as_sandboxes(boxes)) for _ in range(20)))
    assert [b.reads for b in boxes] == [1, 1, 1, 0]
    assert all(set(a) == {"ses_0", "ses_1", "ses_2"} for a in answers)
    assert {a["ses_0"].cpu_ms for a in answers} == {1}
    again = await meter.read(as_sandboxes(boxes[:1]))
    assert boxes[0].reads == 1 and again["ses_0"].cpu_ms == 1  # within the interval
    await asyncio.sleep(0.35)
    fresh = await meter.read(as_sandboxes(boxes[:1]))
    assert boxes[0].reads == 2 and fresh["ses_0"].cpu_ms == 2
    assert fresh["ses_0"].sampled_at > again["ses_0"].sampled_at
    assert await meter.read([]) == {}
