"""Client connections bounded: how many, from one address, and how long they may dawdle.

uvicorn has no timeout on reading a request (its `timeout_keep_alive` covers only idle
connections between requests) and accepts connections until the process runs out of
file descriptors; `limit_concurrency` answers 503 only once a request's head is in,
which a client that never finishes one never reaches. `chaser server` runs this
protocol instead, which

- at `max_connections`, makes room for a new connection by closing the one that has
  waited longest for a request head (a slowloris holds only such connections, a real
  client sends its head at once); with none waiting (every connection busy with a
  request or idle between two), answers the new one 503 `no_capacity` at once and
  closes it; past `max_connections_per_client` from one address, likewise 503;
- closes a connection that has not delivered a whole request head within
  `request_header_timeout_s` of its first byte (or of being accepted);
- ends a request whose body does not go on within `request_body_idle_s` while the
  application waits for it: 408 `request_timeout`, or the connection reset if the answer
  had begun. Only time spent waiting in `receive()` counts: while the application does
  not read (a raw stdin body whose command's stdin is full), uvicorn stops reading the
  socket and the client is the one waiting.

WebSocket connections count against `max_connections` (uvicorn's set of connections
holds them) but not per address: an upgrade hands the socket to the WebSocket protocol,
whose end this one never hears of.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chaser.server.abort import AbortableHttp

log = logging.getLogger("chaser.server")


@dataclass
class ConnectionLimits:
    """The bounds of one server's client connections, and its count per address."""

    max_connections: int
    per_client: int
    header_timeout_s: float
    body_idle_s: float
    by_client: Counter[str] = field(default_factory=Counter)
    # Connections waiting for a request head, longest waiting first: the ones closed
    # to make room at the cap.
    waiting: dict[GuardedHttp, None] = field(default_factory=dict)
    refused: int = 0  # connections answered 503 at once (logged now and then)


def _response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response in the one error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n").encode() + retry + b"\r\n" + body


FULL = _response(503, "no_capacity", "the server has as many connections open as it "
                 "takes (max_connections); try again shortly")
FULL_CLIENT = _response(503, "no_capacity", "this address has as many connections open "
                        "as one client may (max_connections_per_client); close some first")
BODY_IDLE_EXTENSION = "chaser.body_idle"  # in the scope's extensions: set_idle(seconds)
BODY_TIMEOUT_MESSAGE = "the request body stopped arriving (request_body_idle_s)"


def guarded_http(limits: ConnectionLimits) -> type[GuardedHttp]:
    """The protocol class for uvicorn's `http=`, bound to `limits`."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits})


class GuardedHttp(AbortableHttp):
    """uvicorn's HTTP/1.1 protocol with the bounds of `ConnectionLimits` (see the module)."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None  # counted against this address
        self._head_timer: asyncio.TimerHandle | None = None
        app: ASGIApp = self.app

        async def body_idle_bounded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await _BoundedBody(self, receive, send).run(app, scope)
        self.app = body_idle_bounded

    # -- connections ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        limits = self.limits
        if limits.by_client[address] >= limits.per_client:
            self._refuse(FULL_CLIENT)
        elif len(self.connections) > limits.max_connections and not limits.waiting:
            self._refuse(FULL)
        else:
            if len(self.connections) > limits.max_connections:
                self._evict_longest_waiting()
            self._address = address
            limits.by_client[address] += 1
            self._arm_head_timer()

    def _refuse(self, answer: bytes) -> None:
        """Answer 503 before reading anything, and close: the descriptor is given back at
        once, so a flood of connections never holds more than the cap."""
        self.limits.refused += 1
        if self.limits.refused % 1000 == 1:
            log.warning("connections refused, the server or one address at its cap: %d "
                        "so far", self.limits.refused)
        self.connections.discard(self)
        self.transport.write(answer)
        self.transport.close()

    def _evict_longest_waiting(self) -> None:
        victim = next(iter(self.limits.waiting))
        victim._disarm_head_timer()
        # Out of the count now: its descriptor is closed before the next accept.
        victim.connections.discard(victim)
        victim.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._release()  # this protocol will not hear of the socket's end
        super().handle_websocket_upgrade()

    def _release(self) -> None:
        self._disarm_head_timer()
        if self._address is not None:
            by_client = self.limits.by_client
            by_client[self._address] -= 1
            if by_client[self._address] <= 0:
                del by_client[self._address]
            self._address = None

    # -- request heads --------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        # Armed once per head, from its first byte (or the accept): bytes dribbled in
        # never push the deadline back.
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s,
                                                    self._head_timed_out)
            self.limits.waiting[self] = None

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
            self.limits.waiting.pop(self, None)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.limits.waiting.pop(self, None)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._address is not None:  # a refused connection has no business here
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()


class _BoundedBody:
    """One request's `receive` and `send`, ending the request when its body stalls."""

    def __init__(self, protocol: GuardedHttp, receive: Receive, send: Send) -> None:
        self.protocol = protocol
        self.receive_raw = receive
        self.send_raw = send
        self.body_done = False
        self.started = False
        self.ended = False  # by us: the application's answer goes nowhere
        self.idle_s = protocol.limits.body_idle_s

    def set_idle(self, seconds: float) -> None:
        """A route's own bound for this request's body (a raw stdin stream's is longer)."""
        self.idle_s = seconds

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        scope.setdefault("extensions", {})[BODY_IDLE_EXTENSION] = self.set_idle
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            if not self.ended:
                raise
            # The application failing on the disconnect it was handed (a body cut off):
            # the request was ended here and answered already.
            log.debug("a request ended for a stalled body raised", exc_info=True)

    async def receive(self) -> Message:
        if self.ended:
            return {"type": "http.disconnect"}
        if self.body_done:  # past the body, only the disconnect is left to wait for
            return await self.receive_raw()
        try:
            async with asyncio.timeout(self.idle_s):
                message = await self.receive_raw()
        except TimeoutError:
            await self._timed_out()
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self.ended:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.send_raw(message)

    async def _timed_out(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.started:
            self.protocol._abort()
            return
        body = json.dumps({"error": {"code": "request_timeout",
                                     "message": BODY_TIMEOUT_MESSAGE}}).encode()
        await self.send_raw({"type": "http.response.start", "status": 408, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await self.send_raw({"type": "http.response.body", "body": body})
