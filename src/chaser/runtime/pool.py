"""A few started sandboxes kept warm for one-shot runs.

Starting a sandbox costs a bubblewrap start and the agent's start; running a command
in a started one costs a fork. A one-shot run that finds a warm sandbox uses it once
and destroys it afterwards, exactly as a freshly made one; a replacement starts in the
background as soon as the run is over, at the lowest CPU weight (the runtime's starter
sees to that), so under a steady stream of runs the pool refills with the CPU the runs
leave and never slows them. With the pool empty (a burst), runs make their own sandbox
as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from chaser.runtime.agent_client import AgentProcess, AgentSandbox
from chaser.runtime.base import ExitStatus, ProcessIO, ProcessSpec, SandboxSpec

log = logging.getLogger("chaser.runtime")

# A used sandbox's replacement starts a moment after its run ended: the run's answer
# is on its way out by then, and the start's work on the event loop (the spawn, its
# pipes) comes after it rather than before.
REFILL_AFTER_S = 0.005
MAX_TENANTS_TRACKED = 1024  # tenant groups whose last shape is remembered

Starter = Callable[[SandboxSpec], Awaitable[AgentSandbox]]


class WarmPool:
    """Up to `size` idle sandboxes, of the shapes recent one-shot runs asked for.

    What is warmed: a replacement for each warm sandbox a run took, and one more of a
    shape its tenant asked for twice in a row. Runs whose shapes keep changing (limits
    asked anew each time) would only have sandboxes made and thrown away; tenants whose
    runs interleave each keep warm sandboxes of their own. A full pool makes room for a
    wanted shape by dropping the oldest sandbox of another.
    """

    def __init__(self, start: Starter, size: int) -> None:
        self._start = start
        self.size = size
        self._ready: list[tuple[SandboxSpec, AgentSandbox]] = []  # oldest first
        self._refilling: asyncio.Task[None] | None = None
        self._wanted: deque[SandboxSpec] = deque(maxlen=max(size, 1))  # one start each
        self._last: OrderedDict[object, tuple[object, ...]] = OrderedDict()  # group -> shape
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = {"hit": 0, "miss": 0, "warmed": 0}
        self._forgotten: dict[Path, int] = {}  # how often each root was dropped
        self._names = itertools.count(1)

    @staticmethod
    def _shape(spec: SandboxSpec) -> tuple[object, ...]:
        # The group too: a warm sandbox counts against the group it was made in.
        return (spec.image, spec.rootfs, spec.workspace_dir, spec.limits, spec.disk_mb,
                spec.group, spec.group_limits)

    def take(self, spec: SandboxSpec) -> AgentSandbox | None:
        """A warm sandbox shaped like `spec`, or None. Keeps the pool filling."""
        if self.size <= 0 or spec.workspace_dir is not None:
            return None
        shape = self._shape(spec)
        found = None
        for i, (warm_spec, sandbox) in enumerate(self._ready):
            if self._shape(warm_spec) == shape and sandbox.alive:
                found = sandbox
                del self._ready[i]
                break
        self._ready = [(s, sb) for s, sb in self._ready if sb.alive]
        self.stats["hit" if found is not None else "miss"] += 1
        repeated = self._last.get(spec.group) == shape
        self._last[spec.group] = shape
        self._last.move_to_end(spec.group)
        while len(self._last) > MAX_TENANTS_TRACKED:
            self._last.popitem(last=False)
        if found is not None or repeated:
            self._wanted.append(spec)
        if found is None:
            self._kick()  # a hit's replacement starts once its run is over (`discard`)
        return found

    def _kick(self) -> None:
        if self._wanted and not self._closed and (
                self._refilling is None or self._refilling.done()):
            self._refilling = asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        while self._wanted and not self._closed:
            await self._warm(self._wanted.popleft())

    async def _warm(self, spec: SandboxSpec) -> None:
        """Start one sandbox shaped like `spec`, making room if the pool is full."""
        shape = self._shape(spec)
        if len(self._ready) >= self.size:
            other = next((i for i, (s, _) in enumerate(self._ready)
                          if self._shape(s) != shape), None)
            if other is None:
                return  # full of this shape already
            self.discard(self._ready.pop(other)[1])
        # A fresh uid each: warm sandboxes never share a host uid (nor per-uid limits).
        warm_spec = replace(spec, name=f"{spec.name}-w{next(self._names)}", uid=None)
        epoch = self._forgotten.get(spec.rootfs) if spec.rootfs is not None else None
        try:
            sandbox = await self._start(warm_spec)
        except Exception as e:  # noqa: BLE001 - the pool is an optimisation only
            log.warning("could not warm a sandbox: %s", e)
            return
        if self._closed or (spec.rootfs is not None
                            and self._forgotten.get(spec.rootfs) != epoch):
            await sandbox.close()  # the server is closing, or its image went meanwhile
            return
        self._ready.append((warm_spec, sandbox))
        self.stats["warmed"] += 1

    async def run(self, sandbox: AgentSandbox, proc: ProcessSpec, io: ProcessIO) -> PooledProcess:
        try:
            process = await sandbox.spawn(proc, io)
        except BaseException:
            self.discard(sandbox)
            raise
        return PooledProcess(process, sandbox, self)

    def forget(self, rootfs: Path) -> None:
        """Drop warm sandboxes on a root that is going away (and those starting now)."""
        self._forgotten[rootfs] = self._forgotten.get(rootfs, 0) + 1
        keep = []
        for spec, sandbox in self._ready:
            if spec.rootfs == rootfs:
                self.discard(sandbox)
            else:
                keep.append((spec, sandbox))
        self._ready = keep

    def discard(self, sandbox: AgentSandbox) -> None:
        """Destroy a used sandbox off the request's path, and refill."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(sandbox.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        loop.call_later(REFILL_AFTER_S, self._kick)

    async def close(self) -> None:
        self._closed = True
        if self._refilling:
            self._refilling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refilling
        await asyncio.gather(*(sb.close() for _, sb in self._ready), *self._closing,
                             return_exceptions=True)
        self._ready.clear()


class PooledProcess:
    """A one-shot command in a warm sandbox: the sandbox is destroyed when it ends."""

    def __init__(self, process: AgentProcess, sandbox: AgentSandbox, pool: WarmPool) -> None:
        self.process = process
        self.sandbox = sandbox
        self.pool = pool
        self.pid: int | None = process.pid
        self._done = False

    async def wait(self) -> ExitStatus:
        status = await self.process.wait()
        if not self._done:
            self._done = True
            self.pool.discard(self.sandbox)
        return status

    def signal(self, signum: int) -> None:
        self.process.signal(signum)
