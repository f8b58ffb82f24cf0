"""Sandbox starts, a few at a time, taken in turn by tenant.

Starting a sandbox is the costliest thing the server does for a request (namespaces,
mounts, cgroups and the agent's start: tens of milliseconds of CPU), and it costs the
same whether a tenant runs one command or floods. Limits on what a tenant *holds*
(core/quotas.py) do not bound how fast it makes and ends sandboxes, so a tenant churning
through short one-shot runs could still take the CPU from everyone else.

Here starts run at most `concurrency` at once (by default one per CPU), and when starts
wait, the free slot goes to the tenants in turn, one start each (round robin, as fair
queueing does): a tenant with a thousand starts waiting gets one start per round, and
another tenant's single start goes next, whatever the first tenant queued before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class StartQueue:
    """Admits sandbox starts `concurrency` at a time, fairly between tenants."""

    def __init__(self, concurrency: int) -> None:
        self.free = concurrency
        # Tenants with starts waiting, in the order they are served next: a dict keeps
        # insertion order, so a served tenant is moved to the end (its turn is over).
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    @property
    def waiting(self) -> int:
        """Starts waiting for a slot."""
        return sum(len(q) for q in self._waiting.values())

    @asynccontextmanager
    async def turn(self, tenant: str) -> AsyncIterator[None]:
        """Hold a start slot for the block, after waiting for `tenant`'s turn."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
        else:
            slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(tenant, deque()).append(slot)
            try:
                await slot
            except asyncio.CancelledError:
                if slot.done() and not slot.cancelled():
                    self._hand_on()  # handed a slot in the same moment: pass it on
                else:
                    self._forget(tenant, slot)
                raise
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        """Give a freed slot to the next tenant's oldest waiting start, or keep it."""
        while self._waiting:
            tenant = next(iter(self._waiting))
            queue = self._waiting.pop(tenant)
            slot = queue.popleft()
            if queue:
                self._waiting[tenant] = queue  # back of the line
            if not slot.done():
                slot.set_result(None)
                return
        self.free += 1

    def _forget(self, tenant: str, slot: asyncio.Future[None]) -> None:
        queue = self._waiting.get(tenant)
        if queue is not None and slot in queue:
            queue.remove(slot)
            if not queue:
                del self._waiting[tenant]
