"""The core as one object: what every transport (HTTP, SSE, MCP) is a thin layer over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaser.config import Settings
from chaser.core.execution import Executor
from chaser.core.files import FileService
from chaser.core.fileslots import FileOpSlots
from chaser.core.images import Images
from chaser.core.keys import KeyService
from chaser.core.logs import LogJanitor
from chaser.core.output import OutputLog
from chaser.core.quotas import RESOURCES, Ledger
from chaser.core.terminals import TerminalService
from chaser.core.sessions import SessionService
from chaser.core.transfers import FileTransfers
from chaser.core.telemetry import GaugeCollector, LiveCollector, Telemetry
from chaser.core.usage import groups_usage
from chaser.core.util import now_iso
from chaser.core.workspaces import WorkspaceService
from chaser.images.store import ImageStore
from chaser.jobs.schedules import ScheduleService
from chaser.jobs.service import JobService
from chaser.models import UsageReport
from chaser.runtime.base import Runtime
from chaser.store.base import Store
from chaser.tasks import TaskSet

log = logging.getLogger("chaser")


class Chaser:
    """Sessions, commands and keys over one store and one sandbox runtime."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime,
                 images: ImageStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.images = images  # None: only the built-in default image
        if images is not None:
            images.on_drop = runtime.forget_image
        self.ledger = Ledger.for_host(settings)
        self.keys = KeyService(store, settings.admin_key, self.ledger)
        self.sessions = SessionService(settings, store, runtime, self.ledger)
        self.executor = Executor(settings, store, runtime, self.sessions)
        self.sessions.images = Images(images)
        self.workspaces = WorkspaceService(settings, store, runtime, self.sessions)
        self.transfers = FileTransfers(settings, self.sessions, store,
                                       FileOpSlots(settings, self.ledger.refused))
        self.files = FileService(self.sessions, self.transfers)
        self.terminals = TerminalService(settings, self.sessions, self.executor)
        self.janitor = LogJanitor(settings, store, self._running_command_ids)
        self.telemetry = Telemetry()
        self.telemetry.watch(LiveCollector(
            self._sandboxes_by_kind, lambda: {k: self.ledger.total[k] for k in RESOURCES},
            lambda: dict(self.ledger.refused), self._pool_stats, settings.data_dir,
            lambda: self.janitor.kept_bytes,
            lambda: (self.sessions.starts.free, self.sessions.starts.waiting),
            lambda: (self.transfers.slots.total, self.executor.stdin_streams),
            measured=runtime.usage))
        self.sessions.telemetry = self.executor.telemetry = self.telemetry
        self._tasks = TaskSet("housekeeping")
        self.jobs = JobService(settings, store, self.sessions, self.executor)
        self.jobs.pool.telemetry = self.telemetry
        self.telemetry.watch(GaugeCollector(
            "chaser_jobs_running", "Job attempts running on this server, by queue.", "queue",
            lambda: dict(self.jobs.pool.per_queue)))
        self.schedules = ScheduleService(settings, store, self.jobs)

    async def start(self) -> None:
        """Open state, settle what a previous run left behind, start housekeeping."""
        await self.store.open()
        if self.images is not None:
            await self.images.open()
        sessions, commands = await self.store.end_all_running(now_iso())
        if sessions or commands:
            log.info("marked %d sessions and %d commands of the previous run as ended",
                     sessions, commands)
        await self._adopt_workspaces()
        await self.keys.load_limits()
        key_file = await self.keys.bootstrap(self.settings.admin_key_file)
        if key_file:
            log.warning("created the first admin API key; it is in %s (mode 0600)", key_file)
        shutil.rmtree(self.settings.logs_dir / "_ephemeral", ignore_errors=True)
        for work in (self.sessions.reap_idle_forever(), self._expire_logs_forever(),
                     self.janitor.run_forever()):
            self._tasks.spawn(work)
        await self.jobs.start()
        self.schedules.start()

    def _running_command_ids(self) -> dict[str, tuple[str, OutputLog]]:
        return {cid: (live.tenant, cmd.output) for live in self.sessions.live.values()
                for cid, cmd in live.commands.items() if cmd.running}

    def _sandboxes_by_kind(self) -> dict[str, int]:
        workspace = sum(1 for s in self.sessions.live.values() if s.row["workspace"])
        sessions = len(self.sessions.live)
        return {"workspace": workspace, "session": sessions - workspace,
                "one_shot": max(0, self.ledger.total["sandboxes"] - sessions)}

    def _pool_stats(self) -> dict[str, int]:
        pool = self.runtime.describe().get("pool")
        return {str(k): int(v) for k, v in pool.items()} if isinstance(pool, dict) else {}

    async def usage(self, tenant: str, everyone: bool = False) -> UsageReport:
        """A tenant's use against its limits, and what its sandboxes use now (one read
        of its sandbox group); with `everyone`, all tenants and the server."""
        mine = self.ledger.usage(tenant)
        report = UsageReport(tenant=tenant, usage=mine.usage, limits=mine.limits)
        tenants = [self.ledger.usage(t) for t in self.ledger.tenants()] if everyone else []
        groups = {t: self.ledger.group(t)[0] for t in {tenant, *(u.tenant for u in tenants)}}
        measured = await groups_usage(self.runtime, groups)
        report.measured = measured.get(tenant)
        if everyone:
            for u in tenants:
                u.measured = measured.get(u.tenant)
            report.tenants = tenants
            report.server = {"usage": {k: self.ledger.total[k] for k in RESOURCES},
                             "limits": self.ledger.server_limits()}
        return report

    async def _adopt_workspaces(self) -> None:
        """Workspaces whose uid is outside this data dir's block (made by an older version,
        or a copy of the data dir given a block of its own) move to their uid in it."""
        for ws in await self.store.all_workspaces():
            uid = self.runtime.workspace_uid(ws.id)
            if ws.uid != uid:
                if ws.uid:
                    await asyncio.to_thread(self.runtime.adopt_workspace,
                                            self.settings.workspaces_dir / str(ws.id), ws.uid, uid)
                await self.store.set_workspace_uid(ws.id, uid)

    async def close(self) -> None:
        await self.schedules.close()
        await self.jobs.close()  # running attempts are recorded as ended by the shutdown
        await self._tasks.close()
        await self.sessions.close_all()
        await self.executor.tasks.close()  # the stopped sessions' commands have settled
        await self.runtime.close()
        if self.images is not None:
            await self.images.close()
        await self.store.close()

    async def _expire_logs_forever(self, every_s: float = 3600) -> None:
        """Forget sessions (rows and output logs) that ended longer ago than the retention,
        so state does not grow without bound."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.log_retention_s)
            forgotten = await self.store.forget_ended_before(
                cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
            if forgotten:
                log.info("forgot %d sessions that ended before %s", len(forgotten), cutoff)
            await asyncio.to_thread(self._expire_logs)
            await asyncio.sleep(every_s)

    def _expire_logs(self) -> None:
        cutoff = time.time() - self.settings.log_retention_s
        root: Path = self.settings.logs_dir
        if not root.is_dir():
            return
        for d in root.iterdir():
            with contextlib.suppress(OSError):
                if d.name not in self.sessions.live and d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
