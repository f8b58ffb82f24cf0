"""The in-process tier's harness: the app over the fake runtime, and small readers.

`serving` builds `create_app(settings, runtime=FakeRuntime(...))`, runs its lifespan in
a task of its own (setup and teardown of a fixture run in different tasks, and the MCP
session manager's task group must be left in the task that entered it), and hands out
httpx clients on the ASGI transport: no socket, no subprocess server, no root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

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

    def __post_init__(self) -> None:
        self.admin = self.client(ADMIN_KEY)

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        """A client on the ASGI transport, sending `key` as its Bearer key (if any)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                              base_url="http://test", headers=headers)
        self._clients.append(c)
        return c

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
        for c in self._clients:
            await c.aclose()


def settings_for(root: Path, **overrides: object) -> Settings:
    """Settings for a server whose data dir is under `root` (no warm pool: nothing to
    warm; memory admission off: the fake enforces no memory)."""
    s = Settings(data_dir=root / "data", admin_key=ADMIN_KEY, warm_pool=0,
                 memory_fraction=1000.0)
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
