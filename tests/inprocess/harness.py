"""The in-process tier's harness: the app over the fake runtime, and small readers.

`serving` builds `create_app(settings, runtime=FakeRuntime(...))`, runs its lifespan in
a task of its own (setup and teardown of a fixture run in different tasks, and the MCP
session manager's task group must be left in the task that entered it), and hands out
httpx clients on the ASGI transport: no socket, no subprocess server, no root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from chaser.config import Settings
from chaser.server.app import create_app
from tests.fake_runtime import FakeRuntime

ADMIN_KEY = "chs_inproc_admin_" + secrets.token_hex(8)


@dataclass
class Tenant:
    """A key of its own (each key is a tenant) and a client that sends it."""

    key: str
    key_id: str
    id: str
    client: httpx.AsyncClient


@dataclass
class Api:
    """A running app: its settings, its fake runtime and an admin client."""

    app: FastAPI
    settings: Settings
    runtime: FakeRuntime
    admin: httpx.AsyncClient = field(init=False)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)
    _sockets: list[WebSocket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = self.client(ADMIN_KEY)

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        """A client on the ASGI transport, sending `key` as its Bearer key (if any)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                              base_url="http://test", headers=headers)
        self._clients.append(c)
        return c

    async def websocket(self, path: str, key: str | None = None,
                        headers: dict[str, str] | None = None) -> WebSocket:
        """A WebSocket to `path`, accepted (WebSocketRefused when the app refuses it)."""
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        ws = WebSocket(self.app, path, {**sent, **(headers or {})})
        self._sockets.append(ws)
        return await ws.connect()

    async def new_tenant(self, name: str = "tenant",
                         limits: dict[str, int] | None = None) -> Tenant:
        body: dict[str, object] = {"name": name}
        if limits is not None:
            body["limits"] = limits
        r = await self.admin.post("/v1/keys", json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        return Tenant(key=made["key"], key_id=made["id"], id=made["tenant"],
                      client=self.client(made["key"]))

    async def close(self) -> None:
        # A socket a test left open: its app task is ended here, on this loop. Left to
        # the garbage collector, its coroutine would be closed later, outside any loop
        # and in whatever thread collects it, and its `finally` blocks would fail there.
        tasks = [ws.task for ws in self._sockets if ws.task is not None and not ws.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in self._clients:
            await c.aclose()


def settings_for(root: Path, **overrides: object) -> Settings:
    """Settings for a server whose data dir is under `root` (no warm pool: nothing to
    warm; memory admission off: the fake enforces no memory; the test client's host
    name allowed)."""
    # allowed_hosts: the clients' base URL is http://test, a name no real server has.
    s = Settings(data_dir=root / "data", admin_key=ADMIN_KEY, warm_pool=0,
                 memory_fraction=1000.0, allowed_hosts=["test"])
    for name, value in overrides.items():
        assert hasattr(s, name), name
        setattr(s, name, value)
    return s


@contextlib.asynccontextmanager
async def serving(root: Path, **overrides: object) -> AsyncIterator[Api]:
    """The app over a `FakeRuntime`, its lifespan running, until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # the data dir's parents must be enterable (datadir.py checks)
    settings = settings_for(root, **overrides)
    runtime = FakeRuntime(root / "sandboxes")
    # The server makes its files private with a process-wide umask (077); in this
    # process the rest of the suite must get its own back afterwards.
    umask = os.umask(0o022)
    os.umask(umask)
    app = create_app(settings, runtime=runtime)
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.get_running_loop().create_task(lifespan())
    ready = asyncio.get_running_loop().create_task(started.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        ready.cancel()
        task.result()  # the startup's error
    api = Api(app, settings, runtime)
    try:
        yield api
    finally:
        await api.close()
        stop.set()
        await task
        os.umask(umask)


def error(r: httpx.Response, status: int, code: str) -> str:
    """Assert `r` is the one error shape with `status` and `code`; its message."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert set(body["error"]) <= {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (polling), or fail."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None


def parse_sse(text: str) -> list[SseEvent]:
    """The events of a complete `text/event-stream` body (comments skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        kind, data, event_id = "message", [], None
        for line in lines:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
        events.append(SseEvent(kind, "\n".join(data), event_id))
    return events


class WebSocketRefused(Exception):
    """The app answered the upgrade with plain HTTP: its status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"refused with {status}: {body!r}")
        self.status = status
        self.body = body


class WebSocket:
    """A WebSocket client speaking ASGI to the app directly (no socket): enough of a
    client for the PTY route's frames, refusals and closes."""

    def __init__(self, app: FastAPI, path: str, headers: dict[str, str]) -> None:
        target, _, query = path.partition("?")
        self.scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": target,
            "raw_path": target.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in
                        {"host": "test", **headers}.items()],
            "client": ("127.0.0.1", 1), "server": ("test", 80), "subprotocols": [],
            "extensions": {"websocket.http.response": {}}, "state": {},
        }
        self.app = app
        self.to_app: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.close_code: int | None = None  # the app's close frame, once it came
        self.close_reason = ""

    async def connect(self) -> WebSocket:
        async def send(message: dict[str, object]) -> None:
            await self.from_app.put(message)

        self.task = asyncio.get_running_loop().create_task(
            self.app(self.scope, self.to_app.get, send))  # type: ignore[arg-type]
        await self.to_app.put({"type": "websocket.connect"})
        first = await asyncio.wait_for(self.from_app.get(), 10)
        if first["type"] == "websocket.http.response.start":
            status = int(first["status"])  # type: ignore[call-overload]
            body = b""
            while True:
                part = await asyncio.wait_for(self.from_app.get(), 10)
                body += part.get("body", b"")  # type: ignore[operator]
                if not part.get("more_body"):
                    break
            await self.task
            raise WebSocketRefused(status, body)
        assert first["type"] == "websocket.accept", first
        return self

    async def receive(self, timeout: float = 10.0) -> bytes | dict[str, Any] | None:
        """The next frame (text frames decoded as JSON); None once the app closed."""
        message = await asyncio.wait_for(self.from_app.get(), timeout)
        if message["type"] == "websocket.close":
            self.close_code = int(message.get("code", 1000))  # type: ignore[call-overload]
            self.close_reason = str(message.get("reason") or "")
            return None
        if message.get("bytes") is not None:
            return message["bytes"]  # type: ignore[return-value]
        return json.loads(str(message["text"]))  # type: ignore[no-any-return]

    async def send(self, data: bytes | dict[str, Any] | str) -> None:
        if isinstance(data, bytes):
            await self.to_app.put({"type": "websocket.receive", "bytes": data})
        else:
            text = data if isinstance(data, str) else json.dumps(data)
            await self.to_app.put({"type": "websocket.receive", "text": text})

    async def close(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
