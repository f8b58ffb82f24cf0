"""The ASGI application factory: `create_app(settings)`; no module-level app or state."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chaser import __version__
from chaser.config import Settings
from chaser.core.service import Chaser
from chaser.runtime.base import Runtime
from chaser.runtime.bwrap import BwrapRuntime
from chaser.server import errors
from chaser.server.limits import BodyLimitMiddleware, JsonByDefaultMiddleware
from chaser.server.mcp import McpEndpoint
from chaser.server.routes import commands, health, keys, sessions
from chaser.store.sqlite import SQLiteStore

log = logging.getLogger("chaser")


def prepare_data_dir(settings: Settings) -> None:
    """Lay out the data dir. Sandboxes run as other uids and must be able to traverse to
    their own workspace, so directories on that path are 0711: enterable, not listable."""
    for path, mode in ((settings.data_dir, 0o711), (settings.workspaces_dir, 0o711),
                       (settings.runtime_dir, 0o711), (settings.logs_dir, 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
    for parent in settings.data_dir.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not enterable by other users (it needs o+x); sandboxes run "
                f"as unprivileged uids and must reach their workspace under {settings.data_dir}. "
                f"Run 'chmod o+x {parent}' or choose another --data-dir.")


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; the core starts and stops with the app's lifespan."""
    mcp = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_data_dir(settings)
        rt = runtime or BwrapRuntime(settings.runtime_dir, warm_pool=settings.warm_pool)
        core = Chaser(settings, SQLiteStore(settings.db_path), rt)
        await core.start()
        limits = rt.describe()
        enforced = [k for k in ("memory", "pids", "cpu") if limits.get(k)]
        log.info("sandbox limits enforced: %s (cgroup %s)", ", ".join(enforced) or "none",
                 limits.get("cgroup"))
        if not enforced:
            log.warning("no cgroup controllers usable: memory, pids and cpu are NOT limited")
        app.state.core = core
        try:
            async with mcp.run():
                yield
        finally:
            await core.close()

    app = FastAPI(title="Chaser", version=__version__, lifespan=lifespan,
                  description="Run commands in real Linux sandboxes over HTTP.")
    errors.install(app)
    app.add_middleware(JsonByDefaultMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for module in (health, sessions, commands, keys):
        app.include_router(module.router)
    app.include_router(mcp.router)
    return app
