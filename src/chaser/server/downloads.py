"""A download's response: sent as the sandbox produces it, ended when its client stops
taking it, and never finished as if complete when it was cut short.

- Send stall: a send that waits on the client for `file_send_stall_s` (it reads
  nothing) ends the download: the operation in the sandbox is ended, its slot freed, the
  connection reset (`abort.py`), and one line logged.
- Cut short (the operation failed, stalled or the session stopped after the first
  byte): the connection is reset rather than ended normally, so a client sees an
  incomplete body (`Content-Length`, or no final chunk of a tar stream) instead of a
  truncated file that looks whole.
- A client that leaves: the operation is ended at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from chaser.core.transfers import Download
from chaser.errors import ServiceError
from chaser.server.abort import EXTENSION

log = logging.getLogger("chaser.files")


class DownloadResponse(StreamingResponse):
    """The bytes of `got`; its operation is ended however the response ends, even when
    the client left before the first byte (the stream then never starts)."""

    def __init__(self, got: Download, stall_s: float, **kwargs: Any) -> None:
        super().__init__(got.chunks, **kwargs)
        self.got = got
        self.stall_s = stall_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _Sender(self, scope, receive, send).run()
        finally:
            await self.got.close()


class _Sender:
    """One download's sending, with its stall timer and its disconnect watch."""

    def __init__(self, response: DownloadResponse, scope: Scope, receive: Receive,
                 send: Send) -> None:
        self.response = response
        self.scope = scope
        self.receive = receive
        self.send = send
        self.waiting_since: float | None = None  # a send waiting on the client
        self.ended: str | None = None  # why this response ended the download early
        self.complete = False  # every byte handed over: never reset after that
        self.pump = asyncio.current_task()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        assert self.pump is not None
        listener = asyncio.ensure_future(self._listen())
        self.timer = asyncio.get_running_loop().call_later(self.response.stall_s, self._check)
        try:
            await self._pump()
        except asyncio.CancelledError:
            if self.ended is None:
                raise  # not ours: the server is stopping
            self.pump.uncancel()
        except Exception as e:  # noqa: BLE001 - the stream failed after the start
            text = e.message if isinstance(e, ServiceError) else repr(e)
            self._end(f"cut short: {text}", log_it=True)
        finally:
            listener.cancel()
            self.timer.cancel()

    async def _pump(self) -> None:
        r = self.response
        await self._send({"type": "http.response.start", "status": r.status_code,
                          "headers": r.raw_headers})
        sent = 0
        async for chunk in r.got.chunks:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
        if r.got.length >= 0 and sent != r.got.length:
            self._end(f"cut short after {sent} of {r.got.length} bytes", log_it=True)
            return
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        self.complete = True

    async def _send(self, message: Message) -> None:
        self.waiting_since = time.monotonic()
        await self.send(message)
        self.waiting_since = None

    async def _listen(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self._end("the client left", cancel=True)

    def _check(self) -> None:
        """The stall timer: a send waiting longer than the stall time ends it all."""
        stall_s, since = self.response.stall_s, self.waiting_since
        now = time.monotonic()
        if since is not None and now - since >= stall_s:
            self._end(f"its client took nothing for {stall_s:g} s: ended", cancel=True,
                      log_it=True)
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(loop.time() + stall_s - (now - (since or now)), self._check)

    def _end(self, why: str, cancel: bool = False, log_it: bool = False) -> None:
        """End the download early, once: reset the connection (and stop the pump)."""
        if self.ended is not None or self.complete:
            return
        self.ended = why
        if log_it:
            log.warning("download %s: %s", self.scope.get("path"), why)
        abort = self.scope.get("extensions", {}).get(EXTENSION)
        if abort is not None:
            abort()
        if cancel and self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()
