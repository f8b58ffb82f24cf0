"""Foreground work ends when its client goes away.

A foreground exec holds its HTTP request open until the command ends. Starlette does not
cancel a handler whose client disconnected, so this watches the connection and cancels
the work; the core then ends the command's whole process tree (recorded as `killed`,
`end_reason: "client_disconnected"`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready (nobody is left to tell)."""


async def _disconnected(request: Request) -> None:
    # The body was read already: the next message the server gives is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; cancel it and raise ClientGone if the client disconnects first.

    The work runs in the request's own task and a watcher cancels that task on a
    disconnect: one task per request rather than two and a wait over both.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _disconnected(request)
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise  # cancelled from elsewhere (the server is stopping)
        current.uncancel()  # ours, and handled here: nothing above was cancelled
        raise ClientGone from None
    finally:
        watcher.cancel()
