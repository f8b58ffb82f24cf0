"""Sandbox starts, a few at a time, taken in turn by tenant.

Starting a sandbox is the costliest thing the server does for a request (namespaces,
mounts, cgroups and the agent's start: tens of milliseconds of CPU), and it costs the
same whether a tenant runs one command or floods. Limits on what a tenant *holds*
(core/quotas.py) do not bound how fast it makes and ends sandboxes, so a tenant churning
through short one-shot runs could still take the CPU from everyone else.

Here starts run at most `concurrency` at once, and when starts wait, a freed slot goes
to the tenants in turn, one start each (round robin, as fair queueing does): a tenant
with a thousand starts waiting gets one start per round, and another tenant's single
start goes next, whatever the first tenant queued before it. No tenant holds more than
half the slots, so one whose starts are slow (its own busy processes share the CPU
with them) cannot hold every slot while others wait.
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
        self.per_tenant = max(1, concurrency // 2)
        self._held: dict[str, int] = {}
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
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(slot)
        self._dispatch()
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self._release(tenant)  # handed a slot in the same moment: pass it on
            else:
                self._forget(tenant, slot)
            raise
        try:
            yield
        finally:
            self._release(tenant)

    def _release(self, tenant: str) -> None:
        held = self._held[tenant] - 1
        if held:
            self._held[tenant] = held
        else:
            del self._held[tenant]
        self.free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to the oldest waiting start of each tenant in turn, skipping
        tenants that hold their part already."""
        while self.free > 0:
            tenant = next((t for t in self._waiting
                           if self._held.get(t, 0) < self.per_tenant), None)
            if tenant is None:
                return
            queue = self._waiting.pop(tenant)
            slot = queue.popleft()
            if queue:
                self._waiting[tenant] = queue  # back of the line
            if slot.done():  # cancelled, its waiter not yet woken to forget it
                continue
            self.free -= 1
            self._held[tenant] = self._held.get(tenant, 0) + 1
            slot.set_result(None)

    def _forget(self, tenant: str, slot: asyncio.Future[None]) -> None:
        queue = self._waiting.get(tenant)
        if queue is not None and slot in queue:
            queue.remove(slot)
            if not queue:
                del self._waiting[tenant]
