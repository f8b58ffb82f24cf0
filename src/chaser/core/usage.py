"""Resource use as users see it: sessions' sandboxes and tenants' groups, measured now.

The runtime reads the kernel's counters (`chaser.runtime.usage`); this turns them into
the wire shapes. Every read of a batch happens in one thread hop, off the event loop:
a list of 200 sessions is 200 small sets of file reads (bench/usage.py measures it),
which is why the session list carries usage only when asked (`?usage=true`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from chaser.models import MeasuredUsage, SessionUsage
from chaser.runtime.base import Runtime, Sandbox
from chaser.runtime.usage import ResourceUsage


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
