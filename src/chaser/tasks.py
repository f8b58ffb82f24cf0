"""Background tasks with an owner.

asyncio keeps only a weak reference to a task: one nobody holds may be collected before
it finishes, and one nobody awaits dies silently. Every background task of the server
is started through a `TaskSet` that holds it until it ends, logs its failure, and is
cancelled and awaited when its owner closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("chaser")

T = TypeVar("T")


class TaskSet:
    """The background tasks of one owner (a service, a sandbox, the runtime)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in the background, held until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def carry(self, work: Coroutine[Any, Any, T], *,
                    orphaned: Callable[[T], object] | None = None) -> T:
        """Run `work` to its end even when the caller is cancelled meanwhile (a start
        cancelled half-way could leave a process or a mount nobody owns); what it then
        makes for nobody goes to `orphaned`."""
        task = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._tasks.add(task)

            def done(t: asyncio.Future[T]) -> None:
                self._tasks.discard(t)
                if not t.cancelled() and t.exception() is None and orphaned is not None:
                    orphaned(t.result())

            task.add_done_callback(done)
            raise

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a background task failed", self.owner, exc_info=task.exception())

    async def wait(self) -> None:
        """Wait for the tasks running now to end by themselves."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task and wait until all have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
