"""Sessions: a sandbox per session, its live commands, idle timeouts and workspaces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chaser.config import Settings
from chaser.core.commands import RunningCommand
from chaser.core.images import DEFAULT_CHOICE, ImageChoice, Images, same_image
from chaser.core.util import new_id, now_iso
from chaser.core.logs import purge_session
from chaser.core.quotas import Grant, Ledger
from chaser.core.starts import StartQueue
from chaser.core.telemetry import Telemetry
from chaser.core.usage import SessionsUsage
from chaser.errors import BadRequest, Conflict, NotFound, OverLimit, StorageFull
from chaser.models import Limits, Session, SessionCreate
from chaser.runtime.base import Runtime, Sandbox, SandboxSpec
from chaser.runtime.cgroups import ResourceLimits
from chaser.store.base import Row, Store
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.core")

SAVE_RETRY_S = 2.0



@dataclass
class LiveSession:
    """A running session: its row, its sandbox and the commands still running in it."""

    row: Row
    tenant: str
    sandbox: Sandbox
    commands: dict[str, RunningCommand] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)
    starting: int = 0  # commands between the limit check and their start
    stopping: bool = False  # still findable while its commands settle; takes no new ones
    auto: bool = False  # made by /v1/exec for its workspace, so /v1/exec may reuse it
    grant: Grant | None = None  # its sandbox, session and memory in the tenant's share
    image: ImageChoice = DEFAULT_CHOICE  # held until the session stops

    @property
    def env(self) -> dict[str, str]:
        """What its commands' environment starts from: the image's, then the session's."""
        return {**self.image.env, **self.row["env"]}

    @property
    def id(self) -> str:
        return str(self.row["id"])

    def touch(self) -> None:
        """Activity: the idle timeout counts from here."""
        self.last_activity = time.monotonic()
        self.row["last_activity_at"] = now_iso()

    def running_commands(self) -> list[RunningCommand]:
        return [c for c in self.commands.values() if c.running]


def to_session(row: Row) -> Session:
    return Session(**{k: v for k, v in row.items() if k != "tenant"})


async def with_usage(sessions: list[Session], live: dict[str, LiveSession],
                     meter: SessionsUsage) -> list[Session]:
    """`sessions`, the running ones with what their sandboxes use now (one thread hop)."""
    running = [(s.id, ls.sandbox) for s in sessions
               if s.status == "running" and (ls := live.get(s.id)) is not None
               and not ls.stopping]
    found = await meter.read(running)
    for s in sessions:
        s.usage = found.get(s.id)
    return sessions


class SessionService:
    """Creates, finds, idles out and deletes sessions."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime, ledger: Ledger) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.ledger = ledger
        self.starts = StartQueue(settings.concurrent_starts)  # fair between tenants
        self.images = Images(None)  # the core gives it the image cache
        self.tasks = TaskSet("sessions")  # each live session's watch on its sandbox
        self.live: dict[str, LiveSession] = {}
        self.meter = SessionsUsage()  # what their sandboxes use, read at most once a second
        self.unsaved: dict[str, Row] = {}  # ended sessions whose end is not stored yet
        self._unstored: list[tuple[Callable[[], Awaitable[None]], Callable[[], object]]] = []
        self._retrying: asyncio.Task[None] | None = None
        self.telemetry: Telemetry | None = None
        self._ws_locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- limits -----------------------------------------------------------------------

    def limits_for(self, asked: Limits | None) -> Limits:
        s = self.settings
        asked = asked or Limits()
        return Limits(memory_mb=min(asked.memory_mb or s.memory_mb, s.max_memory_mb),
                      pids=min(asked.pids or s.pids, s.max_pids),
                      cpus=min(asked.cpus or s.cpus, s.max_cpus),
                      disk_mb=min(asked.disk_mb or s.disk_mb, s.max_disk_mb))

    @staticmethod
    def resource_limits(limits: Limits) -> ResourceLimits:
        return ResourceLimits(memory_bytes=(limits.memory_mb or 0) * 1024 * 1024 or None,
                              pids=limits.pids, cpus=limits.cpus)

    async def _admit_disk(self, tenant: str, workspace_id: int, asked_mb: int | None) -> None:
        """The tenant's workspace disks, with this one at the size it will have, must
        fit its `max_disk_mb` (disks are sparse, so this is what bounds the host's)."""
        cap = self.ledger.limits(tenant).max_disk_mb
        if cap is None:
            return
        sizes = {}
        for ws in await self.store.list_workspaces(tenant):
            sizes[ws.id] = await asyncio.to_thread(
                self.runtime.workspace_quota_mb, self.settings.workspaces_dir / str(ws.id))
        current = sizes.get(workspace_id, 0)
        sizes[workspace_id] = max(current, asked_mb or (current or self.settings.disk_mb))
        if sum(sizes.values()) > cap:
            self.ledger.refused["max_disk_mb"] += 1
            raise OverLimit(f"over this key's limit max_disk_mb={cap}: its workspaces' disks "
                            f"would add up to {sum(sizes.values())} MiB; delete a workspace "
                            "or ask an admin to raise the limit", "tenant_limit",
                            retry_after=60)

    # -- lifecycle --------------------------------------------------------------------

    async def create(self, tenant: str, req: SessionCreate) -> Session:
        """`POST /v1/sessions`: start a session's sandbox and record it."""
        return to_session((await self.start(tenant, req)).row)

    async def start(self, tenant: str, req: SessionCreate, *,
                    idle_timeout_s: int | None = None) -> LiveSession:
        """Start a session's sandbox and record it; the live session, for the core."""
        limits = self.limits_for(req.limits)
        # Pulled (when new) before anything is admitted: a pull is not a sandbox. Held
        # from here on, so it cannot be deleted before the sandbox is up on it.
        image = await self.images.choose(req.image, tenant)
        self.images.hold(image, tenant)
        try:
            # Admitted before the sandbox starts, in one step with the check, so
            # concurrent creates cannot slip past a limit while sandboxes start.
            grant = self.ledger.admit(tenant, sandboxes=1, sessions=1,
                                      memory_mb=limits.memory_mb or 0)
        except BaseException:
            self.images.release(image, tenant)
            raise
        # Carried to its end whatever becomes of the request: cancelled half-way, a
        # workspace disk could be half made or left mounted, a sandbox left unowned. A
        # session whose request left meanwhile is stopped once it is up.
        return await self.tasks.carry(
            self._create_charged(tenant, req, image, limits, idle_timeout_s, grant),
            orphaned=lambda live: self.tasks.spawn(self.stop(live, "client_disconnected")))

    async def _create_charged(self, tenant: str, req: SessionCreate, image: ImageChoice,
                              limits: Limits, idle_timeout_s: int | None,
                              grant: Grant) -> LiveSession:
        try:
            live = await self._create(tenant, req, image, limits, idle_timeout_s)
        except BaseException:
            self.images.release(image, tenant)
            grant.release()
            raise
        live.grant = grant
        return live

    async def _create(self, tenant: str, req: SessionCreate, image: ImageChoice,
                      limits: Limits, idle_timeout_s: int | None) -> LiveSession:
        if req.workspace and not (req.limits and req.limits.disk_mb):
            # Not asked: the workspace's disk keeps its size (the default sizes new ones).
            limits = limits.model_copy(update={"disk_mb": None})
        session_id = new_id("ses")
        workspace_dir = None
        uid = None
        if req.workspace:
            ws = await self.store.workspace(tenant, req.workspace, create_at=now_iso())
            assert ws is not None
            await self._admit_disk(tenant, ws.id, limits.disk_mb)
            uid = self.runtime.workspace_uid(ws.id)
            if ws.uid != uid:  # new: its uid comes from this data dir's block
                await self.store.set_workspace_uid(ws.id, uid)
            with contextlib.suppress(StorageFull):  # when it was last used is not vital
                await self.store.touch_workspace(ws.id, now_iso())
            workspace_dir = self.settings.workspaces_dir / str(ws.id)
        group, group_limits = self.ledger.group(tenant)
        spec = SandboxSpec(name=session_id, uid=uid, image=image.key, rootfs=image.rootfs,
                           workspace_dir=workspace_dir,
                           limits=self.resource_limits(limits), group=group,
                           group_limits=group_limits, disk_mb=limits.disk_mb)
        started = time.monotonic()
        async with self.starts.turn(tenant):
            sandbox = await self.runtime.start(spec)
        if self.telemetry is not None:
            self.telemetry.sandbox_start_seconds.observe(time.monotonic() - started)
        now = now_iso()
        row: Row = {
            "id": session_id, "tenant": tenant, "workspace": req.workspace, "image": image.name,
            "status": "running", "created_at": now, "ended_at": None, "end_reason": None,
            "env": req.env or {}, "cwd": req.cwd or image.working_dir or "/workspace",
            "limits": limits.model_dump(), "last_activity_at": now,
            "idle_timeout_s": req.idle_timeout_s or idle_timeout_s or self.settings.idle_timeout_s,
        }
        live = LiveSession(row, tenant, sandbox, image=image)
        self.live[session_id] = live
        try:
            await self.store.insert_session(row)
        except BaseException:
            self.live.pop(session_id, None)
            await sandbox.close()
            raise
        self.tasks.spawn(self._watch(live))
        return live

    async def _watch(self, live: LiveSession) -> None:
        """A sandbox that ends by itself (its agent died, OOM) stops its session."""
        await live.sandbox.wait_closed()
        if self.live.get(live.id) is live:
            # A sandbox we ended for breaking the agent protocol says so; any other end
            # (its agent died, the kernel's OOM killer) is the sandbox exiting.
            failure = live.sandbox.failure
            if failure:
                log.warning("session %s: %s", live.id, failure)
            await self.stop(live, "sandbox_violation" if failure else "sandbox_exited")

    async def stop(self, live: LiveSession, reason: str) -> Row:
        """Kill everything in the session and mark it stopped.

        The session stays findable until its commands have settled, so nobody reads a
        command's stale `running` row in between.
        """
        if live.stopping or self.live.get(live.id) is not live:
            return live.row
        live.stopping = True
        try:
            for cmd in live.running_commands():
                with contextlib.suppress(Conflict):
                    cmd.kill(signal.SIGKILL,
                             reason="session_" + reason if reason == "deleted" else reason)
            await live.sandbox.close()
            running = live.running_commands()
            if running:
                await asyncio.wait([asyncio.ensure_future(c.finished.wait()) for c in running],
                                   timeout=5)
            live.row.update(status="stopped", ended_at=now_iso(), end_reason=reason)
            self.unsaved[live.id] = live.row
            await self.save(lambda: self.store.update_session(
                live.id, status="stopped", ended_at=live.row["ended_at"], end_reason=reason),
                then=lambda: self.unsaved.pop(live.id, None))
        finally:
            self.live.pop(live.id, None)
            if live.grant is not None:
                live.grant.release()
            self.images.release(live.image, live.tenant)
            self._touch_logs(live.id)
        return live.row

    def _touch_logs(self, session_id: str) -> None:
        """Log retention counts from when the session ended (the directory's mtime)."""
        with contextlib.suppress(OSError):
            os.utime(self.settings.logs_dir / session_id)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.stop(s, "server_shutdown") for s in list(self.live.values())),
                             return_exceptions=True)
        if self._retrying is not None:
            self._retrying.cancel()
        await self.flush()  # one last try: space may have come back
        await self.tasks.close()

    # -- lookups ----------------------------------------------------------------------

    async def save(self, write: Callable[[], Awaitable[None]],
                   then: Callable[[], object]) -> None:
        """Store a change, then call `then`. On a full disk the change is kept in memory
        and retried until it is stored: the service goes on and recovers by itself."""
        try:
            await write()
        except StorageFull:
            self._unstored.append((write, then))
            if self._retrying is None or self._retrying.done():
                self._retrying = asyncio.get_running_loop().create_task(self._save_later())
            return
        then()

    async def _save_later(self) -> None:
        """Retry what could not be stored, in order, until all of it is."""
        while self._unstored:
            await asyncio.sleep(SAVE_RETRY_S)
            await self.flush()

    async def flush(self) -> None:
        """Store what waits to be stored, in order; stop at the first that still fails."""
        while self._unstored:
            write, then = self._unstored[0]
            try:
                await write()
            except StorageFull:
                return
            self._unstored.pop(0)
            then()

    async def get(self, tenant: str, session_id: str) -> Session:
        """One session; a running one with what its sandbox uses now."""
        session = to_session(await self.get_row(tenant, session_id))
        return (await with_usage([session], self.live, self.meter))[0]

    async def list(self, tenant: str, status: str | None, usage: bool = False) -> list[Session]:
        """The tenant's sessions, newest first; live ones as they are now (with `usage`,
        what each running one uses: a few file reads per session)."""
        rows = await self.store.list_sessions(tenant, status)
        sessions = [to_session(self.live[r["id"]].row if r["id"] in self.live
                               else self.unsaved.get(r["id"], r)) for r in rows]
        return await with_usage(sessions, self.live, self.meter) if usage else sessions

    async def get_row(self, tenant: str, session_id: str) -> Row:
        live = self.live.get(session_id)
        unsaved = self.unsaved.get(session_id)
        if unsaved is not None and unsaved["tenant"] == tenant:
            return unsaved
        if live is not None and live.tenant == tenant:
            return live.row
        row = await self.store.get_session(tenant, session_id)
        if row is None:
            raise NotFound(f"session {session_id} not found")
        return row

    def get_live(self, tenant: str, session_id: str) -> LiveSession | None:
        live = self.live.get(session_id)
        return live if live is not None and live.tenant == tenant else None

    async def require_live(self, tenant: str, session_id: str) -> LiveSession:
        live = self.get_live(tenant, session_id)
        if live is None or live.stopping:
            await self.get_row(tenant, session_id)  # 404 when it never existed
            raise Conflict(f"session {session_id} is stopped", "session_stopped")
        return live

    async def delete(self, tenant: str, session_id: str, purge: bool = False) -> Session:
        """Stop the session; with `purge`, drop its commands' output at once too."""
        live = self.get_live(tenant, session_id)
        row = await self.get_row(tenant, session_id) if live is None else await self.stop(
            live, "deleted")
        if purge:
            await asyncio.to_thread(purge_session, self.settings.logs_dir, session_id)
        return to_session(row)

    async def for_workspace(self, tenant: str, workspace: str, limits: Limits | None = None,
                            image: str | None = None) -> LiveSession:
        """The workspace's running session, started on first use (one at a time). Asked
        for another image, an idle one is replaced: the workspace's files stay, the root
        is the new image's."""
        key = (tenant, workspace)
        lock = self._ws_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                # Only sessions made here: one a user created with its own env, cwd or
                # limits is theirs, not /v1/exec's.
                for live in self.live.values():
                    if (live.auto and not live.stopping and live.tenant == tenant
                            and live.row["workspace"] == workspace):
                        if image is None or same_image(image, live.row["image"]):
                            return live
                        if live.running_commands() or live.starting:
                            raise Conflict(f"workspace {workspace} is running commands on "
                                           f"image {live.row['image']}; wait for them before "
                                           f"using image {image}", "workspace_busy")
                        await self.stop(live, "image_changed")
                        break
                live = await self.start(tenant, SessionCreate(workspace=workspace, limits=limits,
                                                              image=image),
                                        idle_timeout_s=self.settings.workspace_idle_timeout_s)
                live.auto = True
                return live
        finally:
            if not lock.locked() and self._ws_locks.get(key) is lock:
                del self._ws_locks[key]

    async def choose(self, tenant: str, *, session_id: str | None = None,
                     workspace: str | None = None, image: str | None = None,
                     provision: bool = True) -> LiveSession:
        """The session a request acts in: the given one, the workspace's (started on
        first use), or, with `provision`, a new private one on `image`."""
        if session_id and workspace:
            raise BadRequest("give either session_id or workspace, not both")
        if session_id:
            live = await self.require_live(tenant, session_id)
        elif workspace:
            live = await self.for_workspace(tenant, workspace)
        elif provision:
            return await self.start(tenant, SessionCreate(image=image),
                                    idle_timeout_s=self.settings.workspace_idle_timeout_s)
        else:
            raise BadRequest("give session_id or workspace")
        if image and not same_image(image, live.row["image"]):
            # The request is well formed; the workspace's running session is in the way.
            raise Conflict(f"session {live.id} runs image {live.row['image']}, not {image}",
                           "image_mismatch")
        return live

    # -- idle timeouts ----------------------------------------------------------------

    async def reap_idle_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            for live in list(self.live.values()):
                idle = now - live.last_activity
                if (not live.running_commands() and not live.starting
                        and idle > int(live.row["idle_timeout_s"])):
                    log.info("session %s idle for %.0fs: stopping", live.id, idle)
                    with contextlib.suppress(Exception):
                        await self.stop(live, "idle_timeout")
