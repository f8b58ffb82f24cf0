"""The ASGI application factory: `create_app(settings)`; no module-level app or state."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chaser import __version__
from chaser.config import Settings
from chaser.core.service import Chaser
from chaser.images.setup import image_store
from chaser.runtime.base import Runtime
from chaser.core.quotas import host_memory_mb, kernel_pid_max
from chaser.runtime.bwrap import BwrapRuntime
from chaser.runtime.cgroups import ResourceLimits
from chaser.runtime.uids import allocate as allocate_uids
from chaser.server import bodies, console, errors, openapi
from chaser.server.datadir import DataDirLock, open_data_dir
from chaser.server.limits import BodyLimitMiddleware, JsonByDefaultMiddleware
from chaser.server.mcp import McpEndpoint
from chaser.server.routes import (
    command_ids,
    commands,
    files,
    health,
    images,
    jobs,
    keys,
    metrics,
    pty,
    schedules,
    sessions,
    usage,
    workspaces,
)
from chaser.store.sqlite import SQLiteStore

log = logging.getLogger("chaser")


def create_app(settings: Settings, runtime: Runtime | None = None,
               lock: DataDirLock | None = None) -> FastAPI:
    """Build the app; the core starts and stops with the app's lifespan.

    `lock` is the data dir, already taken by the caller (`chaser server` takes it before
    serving, to refuse with one clear line); without it the lifespan takes it.
    """
    mcp = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        held = lock or open_data_dir(settings)
        try:
            async with _core(settings, runtime) as core:
                app.state.core = core
                async with mcp.run():
                    yield
        finally:
            held.release()

    # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from a CDN, with
    # inline scripts, on the console's origin, where they could read the key a console
    # tab keeps (docs/console.md). The schema stays at /openapi.json.
    app = FastAPI(title="Chaser", version=__version__, lifespan=lifespan,
                  description="Run commands in real Linux sandboxes over HTTP.",
                  docs_url=None, redoc_url=None)
    errors.install(app)
    app.add_middleware(JsonByDefaultMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       streamed=("/v1/images/import",), streamed_also=bodies.streamed)
    for module in (health, metrics, sessions, commands, pty, keys, usage, workspaces, images,
                   jobs, schedules):
        app.include_router(module.router)
    for router in (*files.routers, command_ids.router):
        app.include_router(router)
    app.include_router(mcp.router)
    openapi.install(app)
    console.install(app, settings)
    return app


@asynccontextmanager
async def _core(settings: Settings, runtime: Runtime | None) -> AsyncIterator[Chaser]:
    """The core over the real runtime (or the one given), started and closed."""
    images = None
    if runtime is None:
        uids = await asyncio.to_thread(allocate_uids, settings.data_dir)
        cap_all = ResourceLimits(memory_bytes=host_memory_mb() * 1024 * 1024 * 9 // 10,
                                 pids=int(kernel_pid_max() * settings.pids_fraction))
        runtime = BwrapRuntime(settings.runtime_dir, uids, warm_pool=settings.warm_pool,
                               cap_all=cap_all, default_disk_mb=settings.disk_mb)
        # The image cache's files belong to the block's first uid, which no sandbox
        # runs as (workspace ids start at 1, fresh uids in the upper half).
        images = image_store(settings, uids.base)
    restore_watcher = _watch_children_by_pidfd()
    # Request paths hop to threads for file and cgroup work; the default pool (cpus + 4)
    # queues them behind each other under load.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="chaser-io"))
    core = Chaser(settings, SQLiteStore(settings.db_path), runtime, images)
    await core.start()
    try:
        limits = runtime.describe()
        enforced = [k for k in ("memory", "pids", "cpu") if limits.get(k)]
        log.info("sandbox limits enforced: %s (cgroup %s)", ", ".join(enforced) or "none",
                 limits.get("cgroup"))
        if not enforced:
            log.warning("no cgroup controllers usable: memory, pids and cpu are NOT limited")
        yield core
    finally:
        await core.close()
        restore_watcher()


def _watch_children_by_pidfd() -> Callable[[], None]:
    """Learn of sandbox launchers' exits through pidfds on the event loop; returns what
    puts the previous watcher back when the app ends.

    Python 3.11's default watcher starts a thread per child to block in waitpid: one
    thread per sandbox, started and ended with each. 3.12 picks pidfds by itself. The
    pidfd watcher is bound to this loop, so it must not outlive the app: a later loop in
    the same process (another app, a test) would find subprocesses refused.
    """
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return lambda: None
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel has pidfds (5.3 and later)
    except (AttributeError, OSError):
        return lambda: None
    loop, policy = asyncio.get_running_loop(), asyncio.get_event_loop_policy()
    current = policy.get_child_watcher()
    if isinstance(current, asyncio.PidfdChildWatcher) and getattr(current, "_loop", None) is loop:
        return lambda: None  # another app in this process set it up: it puts it back
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    policy.set_child_watcher(watcher)

    def restore() -> None:
        if policy.get_child_watcher() is watcher:
            policy.set_child_watcher(current)

    return restore
