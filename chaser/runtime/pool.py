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
import logging
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

Starter = Callable[[SandboxSpec], Awaitable[AgentSandbox]]


class WarmPool:
    """Up to `size` idle sandboxes shaped like the last one-shot run asked for."""

    def __init__(self, start: Starter, size: int) -> None:
        self._start = start
        self.size = size
        self._ready: list[tuple[SandboxSpec, AgentSandbox]] = []
        self._refilling: asyncio.Task[None] | None = None
        self._want: SandboxSpec | None = None  # the shape to warm, when there is one
        self._last_shape: tuple[object, ...] | None = None  # the last run's
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = {"hit": 0, "miss": 0, "warmed": 0}
        self._forgotten: dict[Path, int] = {}  # how often each root was dropped

    @staticmethod
    def _shape(spec: SandboxSpec) -> tuple[object, ...]:
        # The group too: a warm sandbox counts against the group it was made in.
        return (spec.image, spec.rootfs, spec.workspace_dir, spec.limits, spec.disk_mb,
                spec.group, spec.group_limits)

    def take(self, spec: SandboxSpec) -> AgentSandbox | None:
        """A warm sandbox shaped like `spec`, or None. Keeps the pool filling."""
        if self.size <= 0 or spec.workspace_dir is not None:
            return None
        found = None
        for i, (warm_spec, sandbox) in enumerate(self._ready):
            if self._shape(warm_spec) == self._shape(spec) and sandbox.alive:
                found = sandbox
                del self._ready[i]
                break
        self._ready = [(s, sb) for s, sb in self._ready if sb.alive]
        self.stats["hit" if found is not None else "miss"] += 1
        # The request's spec gives the shape; one refill at a time follows the latest. A
        # shape asked for twice in a row is worth warming; runs whose shapes keep
        # changing (limits asked anew each time) would only have warm sandboxes made and
        # thrown away. A hit refills once its run is over (`discard`), out of its way.
        shape = self._shape(spec)
        self._want = spec if shape == self._last_shape else None
        self._last_shape = shape
        if found is None:
            self._kick()
        return found

    def _kick(self) -> None:
        if self._want is not None and not self._closed and (
                self._refilling is None or self._refilling.done()):
            self._refilling = asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        while self._want is not None and not self._closed:
            spec, self._want = self._want, None
            await self._fill(spec)

    async def _fill(self, spec: SandboxSpec) -> None:
        # The pool follows the runs: sandboxes of another shape (an image, a tenant, limits
        # asked before) make room, or a pool once filled would never serve a new shape.
        stale = [sb for s, sb in self._ready if self._shape(s) != self._shape(spec)]
        self._ready = [(s, sb) for s, sb in self._ready if self._shape(s) == self._shape(spec)]
        for sandbox in stale:
            self.discard(sandbox)
        n = 0
        while not self._closed and len(self._ready) < self.size:
            n += 1
            # A fresh uid each: warm sandboxes never share a host uid (nor per-uid limits).
            warm_spec = replace(spec, name=f"{spec.name}-w{n}", uid=None)
            epoch = self._forgotten.get(spec.rootfs) if spec.rootfs is not None else None
            try:
                sandbox = await self._start(warm_spec)
            except Exception as e:  # noqa: BLE001 - the pool is an optimisation only
                log.warning("could not warm a sandbox: %s", e)
                return
            if spec.rootfs is not None and self._forgotten.get(spec.rootfs) != epoch:
                await sandbox.close()  # its image went while it started
                return
            if self._closed:
                await sandbox.close()
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
