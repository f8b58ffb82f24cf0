"""The long-lived connections each API key holds open (terminal WebSockets, SSE streams),
so that revoking a key ends them at once rather than when they happen to close.

A transport enters `hold(key_id)` for as long as its connection lasts and watches the
event it gets: set, the key was revoked and the connection must end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class KeyConnections:
    """Per key, an event for each connection open with it; revoking sets them all."""

    def __init__(self) -> None:
        self._open: dict[str, set[asyncio.Event]] = {}
        # Keys revoked while this process runs: a connection authenticated just before
        # a revoke and registered just after it is ended as well.
        self._revoked: set[str] = set()

    @contextmanager
    def hold(self, key_id: str) -> Iterator[asyncio.Event]:
        """An event set when `key_id` is revoked, for the block's duration."""
        event = asyncio.Event()
        if key_id in self._revoked:
            event.set()
        held = self._open.setdefault(key_id, set())
        held.add(event)
        try:
            yield event
        finally:
            held.discard(event)
            if not held and self._open.get(key_id) is held:
                del self._open[key_id]

    def revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    def revoke(self, key_id: str) -> int:
        """End every connection of `key_id` (and any it opens later); how many there were."""
        self._revoked.add(key_id)
        events = self._open.pop(key_id, set())
        for event in events:
            event.set()
        return len(events)

    def count(self, key_id: str) -> int:
        """Connections open with `key_id` now."""
        return len(self._open.get(key_id, ()))


async def until_set(source: AsyncIterator[T], stop: asyncio.Event) -> AsyncGenerator[T, None]:
    """`source`'s items until it ends or `stop` is set, whichever comes first (a source
    waiting for its next item is cancelled then); closes `source` either way."""
    stopper = asyncio.ensure_future(stop.wait())
    step: asyncio.Future[T] | None = None
    try:
        while not stop.is_set():
            step = asyncio.ensure_future(anext(source))
            await asyncio.wait((step, stopper), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
    finally:
        stopper.cancel()
        if step is not None and not step.done():
            step.cancel()
        await asyncio.wait([t for t in (stopper, step) if t is not None])  # none left behind
        if step is not None and not step.cancelled():
            step.exception()  # retrieved: the source's own end is not worth a warning
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
