"""Server-Sent Events responses that end when the caller's key is revoked.

Every SSE route (command output, job streams, image pulls) answers through
`sse_response`: the stream is held as one of its key's connections, and a revoke ends
it with an `error` event (`key_revoked`) rather than letting it run on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from chaser.core.connections import until_set
from chaser.core.keys import Principal
from chaser.core.service import Chaser

KEEPALIVE_S = 15
REVOKED = {"error": {"code": "key_revoked", "status": 401,
                     "message": "the API key was revoked; the stream ends"}}


async def _revocable(core: Chaser, caller: Principal,
                     events: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
    with core.keys.connections.hold(caller.key_id) as revoked:
        stream = until_set(events, revoked)
        try:
            async for ev in stream:
                yield ev
        finally:  # closed at once (the client left mid-stream), not when collected
            await stream.aclose()
        if revoked.is_set():
            yield ServerSentEvent(event="error", data=json.dumps(REVOKED))


def sse_response(core: Chaser, caller: Principal,
                 events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """`events` as a text/event-stream, kept alive by comments, ended by a revoke."""
    return EventSourceResponse(_revocable(core, caller, events), ping=KEEPALIVE_S,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
