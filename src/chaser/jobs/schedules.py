"""Schedules: a job template submitted on a cron expression (in a time zone) or an interval.

Cron expressions are read by `cronsim` (no hand-written parser). A schedule's next run
is kept in the store; a tick moves it on with a conditional write (fenced by its old
value, so two servers never both fire one tick) and submits the job with an
idempotency key made of the schedule and the tick, so a crash between the two fires
nothing twice. A schedule that fell due while the server was down fires once when it
starts, and its next run is counted from then: missed ticks are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from chaser.config import Settings
from chaser.core.util import new_id, now_iso
from chaser.errors import BadRequest, Forbidden, NotFound, OverLimit
from chaser.jobs.models import TIMEZONES, JobCreate, Schedule, ScheduleCreate, ScheduleList
from chaser.jobs.service import JobService, iso_time
from chaser.jobs.webhooks import check_webhook
from chaser.store.base import Row, Store
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.jobs")

TICK_S = 1.0
SHOWN_RUNS = 5


def next_runs(cron: str | None, tz: str, interval_s: int | None, after: float,
              n: int = 1) -> list[float]:
    """The next `n` run times after `after` (seconds since the epoch)."""
    if interval_s is not None:
        return [after + interval_s * (i + 1) for i in range(n)]
    assert cron is not None
    zone = _zone(tz)
    it = CronSim(cron, datetime.fromtimestamp(after, zone))
    return [next(it).timestamp() for _ in range(n)]


def _zone(tz: str) -> ZoneInfo:
    try:
        if TIMEZONES and tz not in TIMEZONES:  # the schema's enum: exactly these names
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {tz!r} (an IANA name such as Europe/Paris)",
                         "invalid_timezone") from None


class ScheduleService:
    """Create, list, pause and delete schedules; fire them when due."""

    def __init__(self, settings: Settings, store: Store, jobs: JobService) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.tasks = TaskSet("schedules")
        self._creating = asyncio.Lock()

    def start(self) -> None:
        self.tasks.spawn(self._tick_forever())

    async def close(self) -> None:
        await self.tasks.close()

    # -- the API ----------------------------------------------------------------------

    async def create(self, tenant: str, req: ScheduleCreate) -> Schedule:
        if req.cron is not None:
            if len(req.cron.split()) != 5:  # cronsim takes a sixth (seconds): too often
                raise BadRequest(f"invalid cron expression: {len(req.cron.split())} fields, "
                                 "not the 5 of minute hour day month weekday", "invalid_cron")
            try:
                CronSim(req.cron, datetime.now(UTC))
            except CronSimError as e:
                raise BadRequest(f"invalid cron expression: {e}", "invalid_cron") from None
        _zone(req.timezone)
        if req.job.webhook is not None:
            check_webhook(req.job.webhook, self.settings.job_webhook_hosts)
        # The count and the insert under one lock: concurrent creates cannot both pass.
        async with self._creating:
            row = await self._insert(tenant, req)
        return await self.get(tenant, row["id"])

    async def _insert(self, tenant: str, req: ScheduleCreate) -> Row:
        if len(await self.store.list_schedules(tenant)) >= self.settings.max_schedules_per_tenant:
            raise OverLimit(f"this key has {self.settings.max_schedules_per_tenant} schedules "
                            "(max_schedules_per_tenant); delete one first", "tenant_limit",
                            retry_after=60)
        row: Row = {
            "id": new_id("sch"), "tenant": tenant, "name": req.name, "cron": req.cron,
            "timezone": req.timezone, "interval_s": req.interval_s, "overlap": req.overlap,
            "paused": int(req.paused), "job": req.job.model_dump(mode="json"),
            "created_at": now_iso(),
            "next_run": next_runs(req.cron, req.timezone, req.interval_s, time.time())[0],
        }
        await self.store.insert_schedule(row)
        return row

    async def _row(self, tenant: str, schedule_id: str) -> Row:
        row = await self.store.get_schedule(tenant, schedule_id)
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return row

    async def get(self, tenant: str, schedule_id: str) -> Schedule:
        return _view(await self._row(tenant, schedule_id))

    async def list(self, tenant: str) -> ScheduleList:
        return ScheduleList(schedules=[_view(r) for r in await self.store.list_schedules(tenant)])

    async def delete(self, tenant: str, schedule_id: str) -> Schedule:
        view = await self.get(tenant, schedule_id)
        await self.store.delete_schedule(tenant, schedule_id)
        return view

    async def set_paused(self, tenant: str, schedule_id: str, paused: bool) -> Schedule:
        row = await self._row(tenant, schedule_id)
        fields: dict[str, object] = {"paused": int(paused)}
        if not paused and row["paused"]:  # runs missed while paused are not made up
            fields["next_run"] = next_runs(row["cron"], row["timezone"], row["interval_s"],
                                           time.time())[0]
        await self.store.update_schedule(tenant, schedule_id, **fields)
        return await self.get(tenant, schedule_id)

    # -- firing -----------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.tick()
            await asyncio.sleep(TICK_S)

    async def tick(self) -> int:
        """Fire every schedule that is due (once each, however many ticks were missed)."""
        fired = 0
        now = time.time()
        for row in await self.store.due_schedules(now):
            try:
                fired += await self._fire(row, now)
            except Exception:  # noqa: BLE001 - one broken schedule must not stop the rest
                log.exception("schedule %s could not fire", row["id"])
        return fired

    async def _fire(self, row: Row, now: float) -> int:
        due = float(row["next_run"])
        after = now if row["interval_s"] is None or due + row["interval_s"] <= now else due
        following = next_runs(row["cron"], row["timezone"], row["interval_s"], after)[0]
        previous = row["last_job_id"]
        status = await self._status(row["tenant"], previous) if previous else None
        # skip: nothing while the previous runs; queue: one run waits behind it, at most
        # (a tick while one already waits is folded into it, so runs cannot pile up).
        if status == "queued" or (row["overlap"] == "skip" and status == "running"):
            await self.store.advance_schedule(row["id"], due, following)
            log.info("schedule %s: previous job %s still %s; skipped", row["id"], previous,
                     status)
            return 0
        spec = JobCreate.model_validate({**row["job"],
                                         "idempotency_key": f"schedule:{row['id']}:{due:.3f}"})
        try:
            job, _ = await self.jobs.submit(row["tenant"], spec, schedule_id=row["id"],
                                            after_job=previous if row["overlap"] == "queue"
                                            else None)
        except OverLimit:
            log.info("schedule %s: its tenant's queue is full; this run skipped", row["id"])
            await self.store.advance_schedule(row["id"], due, following)
            return 0
        except (BadRequest, Forbidden) as e:  # its job is refused now (a webhook host
            # no longer allowed, say): this run is skipped, once, and the schedule goes on
            log.warning("schedule %s: its job was refused (%s); this run skipped",
                        row["id"], e.message[:200])
            await self.store.advance_schedule(row["id"], due, following)
            return 0
        await self.store.advance_schedule(row["id"], due, following, last_run_at=now_iso(),
                                          last_job_id=job.id)
        return 1

    async def _status(self, tenant: str, job_id: str) -> str | None:
        job = await self.store.get_job(tenant, job_id)
        return None if job is None else str(job["status"])


def _view(row: Row) -> Schedule:
    nxt = row["next_run"]
    times = []
    if not row["paused"] and nxt is not None:
        times = [nxt, *next_runs(row["cron"], row["timezone"], row["interval_s"], nxt,
                                 SHOWN_RUNS - 1)]
    return Schedule(id=row["id"], name=row["name"], cron=row["cron"], timezone=row["timezone"],
                    interval_s=row["interval_s"], overlap=row["overlap"],
                    paused=bool(row["paused"]), job=row["job"], created_at=row["created_at"],
                    last_run_at=row["last_run_at"], last_job_id=row["last_job_id"],
                    next_run_at=iso_time(nxt) if nxt is not None and not row["paused"] else None,
                    next_run_times=[iso_time(t) for t in times])
