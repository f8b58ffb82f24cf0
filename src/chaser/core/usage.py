"""Resource use as users see it: sessions' sandboxes and tenants' groups, measured now.

The runtime reads the kernel's counters (`chaser.runtime.usage`); this turns them into
the wire shapes. Every read of a batch happens in one thread hop, off the event loop:
a list of 200 sessions is 200 small sets of file reads (bench/usage.py measures it),
which is why the session list carries usage only when asked (`?usage=true`), and why
a sandbox is read at most once a second (`SAMPLE_EVERY_S`) however many clients poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from chaser.models import MeasuredUsage, SessionUsage
from chaser.runtime.base import Runtime, Sandbox
from chaser.runtime.usage import ResourceUsage

SAMPLE_EVERY_S = 1.0  # a sandbox's figures are read again only once they are this old


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _ms(usec: int | None) -> int | None:
    return usec // 1000 if usec is not None else None


def session_usage(u: ResourceUsage) -> SessionUsage:
    """One sandbox's figures as `Session.usage`."""
    return SessionUsage(cpu_ms=_ms(u.cpu_usec), memory_bytes=u.memory_bytes,
                        memory_peak_bytes=u.memory_peak_bytes, pids=u.pids,
                        disk_bytes=u.disk_bytes, disk_limit_bytes=u.disk_limit_bytes,
                        sampled_at=_iso(u.sampled_at))


def measured(u: ResourceUsage) -> MeasuredUsage:
    """A group's figures (a tenant's sandboxes together)."""
    return MeasuredUsage(cpu_ms=_ms(u.cpu_usec), memory_bytes=u.memory_bytes,
                         memory_peak_bytes=u.memory_peak_bytes, pids=u.pids,
                         sampled_at=_iso(u.sampled_at))


def _read_all(sandboxes: list[tuple[str, Sandbox]]) -> dict[str, SessionUsage]:
    found = {}
    for key, sandbox in sandboxes:
        u = sandbox.usage() if sandbox.alive else None
        if u is not None:
            found[key] = session_usage(u)
    return found


async def sandboxes_usage(sandboxes: Iterable[tuple[str, Sandbox]]) -> dict[str, SessionUsage]:
    """Each (key, sandbox)'s use, by key; ended sandboxes (and those the runtime cannot
    measure) are left out."""
    batch = list(sandboxes)
    if not batch:
        return {}
    return await asyncio.to_thread(_read_all, batch)


class SessionsUsage:
    """Sessions' usage, each sandbox read at most once per `SAMPLE_EVERY_S` (the
    console's tabs and every other poller share the reads; `sampled_at` says how old)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self.every_s = every_s
        self._recent: dict[str, tuple[float, SessionUsage]] = {}  # only the last second's
        # One batch reads at a time, so requests arriving together do not each read the
        # same sandboxes (nor fill the thread pool): the next finds them fresh.
        self._reading = asyncio.Lock()

    async def read(self, sandboxes: Iterable[tuple[str, Sandbox]]) -> dict[str, SessionUsage]:
        """Each (session id, sandbox)'s use, by id; ended ones left out."""
        batch = list(sandboxes)
        if not batch:
            return {}
        async with self._reading:
            now = time.monotonic()
            self._recent = {k: v for k, v in self._recent.items()
                            if now - v[0] < self.every_s}
            found = {k: self._recent[k][1] for k, _ in batch if k in self._recent}
            read = await sandboxes_usage((k, sb) for k, sb in batch if k not in found)
            for k, u in read.items():
                self._recent[k] = (now, u)
        return found | read


async def groups_usage(runtime: Runtime, groups: dict[str, str]) -> dict[str, MeasuredUsage]:
    """What each key's sandbox group (`groups`: key -> group) uses, one read each."""
    def read() -> dict[str, MeasuredUsage]:
        found = {}
        for key, group in groups.items():
            u = runtime.usage(group)
            if u is not None:
                found[key] = measured(u)
        return found

    return await asyncio.to_thread(read) if groups else {}
