"""Connections the application can abort: the ASGI extension `chaser.abort`.

An ASGI application cannot close its connection; when it gives up on a response, the
server closes it gracefully, which waits for the bytes already buffered to be read. A
client that never reads would then hold the connection (its socket, the buffered
chunk) forever. `chaser server` runs uvicorn with this protocol, which puts the
connection's `abort` (a TCP reset, nothing waited for) in each request's
`scope["extensions"]["chaser.abort"]`; a response that ends a stalled client calls it
(`downloads.py`). Without it (another ASGI server, the in-process tests) a response
only stops sending.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

EXTENSION = "chaser.abort"


class AbortableHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, lending each request the connection's abort."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app: ASGIApp = self.app

        async def lend_abort(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[EXTENSION] = self._abort
            await app(scope, receive, send)
        self.app = lend_abort

    def _abort(self) -> None:
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # A reset: without it the kernel keeps delivering what its send buffer holds
            # (megabytes on loopback) to a client that may never read it.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # closing or not: nothing is waited for
