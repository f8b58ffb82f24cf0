"""Opening a terminal: the WebSocket upgrade, its refusals as typed errors, the hello."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from ._config import Config
from ._errors import ChaserError, ConnectionError, TimeoutError  # noqa: A004
from ._http import VERSION
from ._pty import AsyncPty, Pty
from ._pty_protocol import (
    MAX_FRAME,
    OPEN_TIMEOUT,
    PtyCore,
    PtyHello,
    headers,
    parse_hello,
    pty_url,
    refused,
)


def _connect_options(config: Config) -> dict[str, Any]:
    # No compression: terminal traffic is small keystrokes or bulk output at memory
    # speed, where deflate costs more CPU than it saves on loopback and LANs.
    return {"additional_headers": headers(config), "compression": None,
            "max_size": MAX_FRAME, "open_timeout": OPEN_TIMEOUT,
            "user_agent_header": f"chaser-python/{VERSION}"}


def _open_failed(e: Exception, config: Config) -> ChaserError:
    if isinstance(e, InvalidStatus):
        r = e.response
        return refused(r.status_code, list(r.headers.raw_items()), bytes(r.body), config)
    if isinstance(e, InvalidURI):
        return ChaserError(f"invalid API URL {config.api_url!r}: {e}")
    if isinstance(e, builtins.TimeoutError):
        return TimeoutError(f"the terminal at {config.api_url} did not open in time")
    return ConnectionError(f"cannot open a terminal at {config.api_url} ({e}); is the "
                           "server running and CHASER_API_URL right?", url=config.api_url)


def _open(config: Config, session_id: str,
          params: dict[str, Any]) -> tuple[ClientConnection, PtyHello]:
    url = pty_url(config, session_id, params)
    try:
        # Entered as a context manager at once: the connection is the Pty's to close
        # (websockets 17 warns about a bare connect()).
        ws = sync_connect(url, **_connect_options(config)).__enter__()
    except (InvalidHandshake, OSError, builtins.TimeoutError) as e:
        raise _open_failed(e, config) from None
    try:
        return ws, parse_hello(ws.recv(timeout=OPEN_TIMEOUT))
    except (ConnectionClosed, builtins.TimeoutError, ChaserError) as e:
        ws.close()
        raise e if isinstance(e, ChaserError) else _open_failed(e, config) from None


async def _aopen(config: Config, session_id: str,
                 params: dict[str, Any]) -> tuple[AsyncConnection, PtyHello]:
    url = pty_url(config, session_id, params)
    try:
        ws = await async_connect(url, **_connect_options(config))
    except (InvalidHandshake, OSError, builtins.TimeoutError) as e:
        raise _open_failed(e, config) from None
    try:
        return ws, parse_hello(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
    except (ConnectionClosed, builtins.TimeoutError, ChaserError) as e:
        await ws.close()
        raise e if isinstance(e, ChaserError) else _open_failed(e, config) from None


def _resume_params(params: dict[str, Any], pty_id: str, offset: int) -> dict[str, Any]:
    """The query that reattaches to the same terminal from `offset` (same mode, view)."""
    return {**params, "pty_id": pty_id, "from": offset, "command": None, "cwd": None,
            "shell": None, "cols": None, "rows": None}


def connect_pty(config: Config, session_id: str, params: dict[str, Any]) -> Pty:
    """Open `GET .../pty` and wait for its `hello` (refusals raise the typed errors)."""
    ws, hello = _open(config, session_id, params)

    def reopen(offset: int) -> tuple[ClientConnection, PtyHello]:
        return _open(config, session_id, _resume_params(params, hello.pty_id, offset))

    return Pty(ws, PtyCore(hello, session_id), reopen)


async def aconnect_pty(config: Config, session_id: str, params: dict[str, Any]) -> AsyncPty:
    """Async twin of `connect_pty`."""
    ws, hello = await _aopen(config, session_id, params)

    async def reopen(offset: int) -> tuple[AsyncConnection, PtyHello]:
        return await _aopen(config, session_id, _resume_params(params, hello.pty_id, offset))

    return AsyncPty(ws, PtyCore(hello, session_id), reopen)
