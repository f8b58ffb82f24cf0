"""Foreground work ends when its client goes away.

A foreground exec holds its HTTP request open until the command ends. Starlette does not
cancel a handler whose client disconnected, so this watches the connection and cancels
the work; the core then ends the command's whole process tree (recorded as `killed`,
`end_reason: "client_disconnected"`).
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """Await `work`; cancel it and raise ClientGone if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
