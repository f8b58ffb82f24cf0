"""A pull in progress, watched by any number of clients (SSE, the CLI's bars).

A pull is shared: concurrent first uses of one image all wait on the same one. Its
phases are kept as a short list of events, and byte counts per layer as numbers, so a
watcher arriving late sees every phase and the latest counts without the pull keeping a
queue per watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

PROGRESS_EVERY_S = 0.2


@dataclass
class Pull:
    """One image being pulled: its phases, its layers' byte counts and its outcome."""

    reference: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # layer digest -> size
    received: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[Any] | None = None
    failure: Exception | None = None  # what ended it, when it failed
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def phase(self, name: str, **data: Any) -> None:
        self.events.append((name, data))
        self._wake()

    def layers(self, sizes: dict[str, int]) -> None:
        self.sizes = dict(sizes)
        self.received = {d: 0 for d in sizes}

    def got(self, digest: str, n: int) -> None:
        self.received[digest] = self.received.get(digest, 0) + n
        self._wake()

    def _wake(self) -> None:
        self._changed.set()

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1][0] in ("done", "error")

    async def watch(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every phase event, with `progress` events (per layer, at most every 0.2 s)
        between them, until `done` or `error`."""
        shown = 0
        counts: dict[str, int] = {}
        while True:
            self._changed.clear()
            for digest, n in list(self.received.items()):
                if counts.get(digest) != n and (n or digest in counts):
                    counts[digest] = n
                    yield "progress", {"layer": digest, "received": n,
                                       "size": self.sizes.get(digest, 0)}
            while shown < len(self.events):
                name, data = self.events[shown]
                shown += 1
                yield name, data
                if name in ("done", "error"):
                    return
            try:
                async with asyncio.timeout(15):  # (not wait_for: it can lose a cancel on 3.11)
                    await self._changed.wait()
            except TimeoutError:
                yield "ping", {}
            if not self.finished:  # let bytes gather: one event per layer per interval
                await asyncio.sleep(PROGRESS_EVERY_S)
