"""Jobs as the transports see them: submit, look up, list, cancel, retry, logs.

The queue is the store's (`chaser.store.jobs`); the worker pool (`worker.py`) runs what
is due. A job accepted is in the store before it is answered for, so nothing a client
was told about is lost by a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from dataclasses import replace
from typing import Any

from chaser.config import Settings
from chaser.core.execution import Executor
from chaser.core.sessions import SessionService
from chaser.core.util import new_id, now_iso
from chaser.errors import BadRequest, Conflict, NotFound, OverLimit, PayloadTooLarge
from chaser.jobs.models import (
    FINAL_STATUSES,
    Attempt,
    Job,
    JobCreate,
    JobList,
    JobLogs,
    JobRetry,
    RUN_AT_PATTERN,
    LogEntry,
    StepRecord,
)
from chaser.jobs.webhooks import WebhookSender, check_webhook
from chaser.jobs.worker import WorkerPool
from chaser.store.base import Row, Store
from chaser.store.jobs import JobFilter
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.jobs")

QUEUE_FULL_RETRY_S = 10
MAX_LOG_BYTES = 1024 * 1024  # one command's output in a logs answer
MAX_LOGS_BYTES = 8 * 1024 * 1024  # a whole logs answer (a pipeline's steps together)
MAX_REQUEST_BYTES = 1024 * 1024  # stored with the job, kept while it is


def node_name(settings: Settings) -> str:
    """This server among several sharing a store: its host and its data dir."""
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}/{digest}"


class JobService:
    """The jobs API over the store's queue and this server's worker pool."""

    def __init__(self, settings: Settings, store: Store, sessions: SessionService,
                 executor: Executor) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.node = node_name(settings)
        self.pool = WorkerPool(settings, store, sessions, executor, self.node, self._final)
        self.webhooks = WebhookSender(settings.job_webhook_hosts)
        self.tasks = TaskSet("jobs-service")

    async def start(self) -> None:
        """Settle what an earlier process of this server left running, then work."""
        n = await self.pool.recover()
        if n:
            log.info("recorded %d interrupted job attempts as failed (infrastructure)", n)
        self.tasks.spawn(self.pool.run_forever())
        self.tasks.spawn(self.pool.sweep_forever())
        self.tasks.spawn(self._forget_forever())

    async def close(self) -> None:
        await self.pool.close()
        await self.tasks.close()

    # -- submitting -------------------------------------------------------------------

    async def submit(self, tenant: str, req: JobCreate, *, schedule_id: str | None = None,
                     after_job: str | None = None) -> tuple[Job, bool]:
        """Queue a job; (the job, whether it is new: False for a known idempotency key)."""
        if req.webhook is not None:
            check_webhook(req.webhook, self.settings.job_webhook_hosts)
        request = req.model_dump(mode="json")
        if len(json.dumps(request)) > MAX_REQUEST_BYTES:
            raise PayloadTooLarge(f"a job's request is at most {MAX_REQUEST_BYTES} bytes "
                                  "(commands and steps together)")
        now = time.time()
        due = _parse_time(req.run_at) if req.run_at else now
        row: Row = {
            "id": new_id("job"), "tenant": tenant, "kind": req.kind, "status": "queued",
            "queue": req.queue, "priority": req.priority, "workspace": req.workspace,
            "labels": req.labels, "idempotency_key": req.idempotency_key,
            "schedule_id": schedule_id, "request": request,
            "created_at": now_iso(), "run_at": iso_time(due) if req.run_at else None,
            "due": max(due, now) if req.run_at else now,
            "deadline": now + req.deadline_ms / 1000 if req.deadline_ms else None,
            "max_attempts": req.retry.max_attempts, "after_job": after_job,
        }
        outcome, stored = await self.store.insert_job(row, self.settings.max_queued_jobs_per_tenant)
        if outcome == "full":
            raise OverLimit(f"this key has {self.settings.max_queued_jobs_per_tenant} jobs queued "
                            "or running already (max_queued_jobs_per_tenant); wait for some to "
                            "end", "job_queue_full", retry_after=QUEUE_FULL_RETRY_S)
        assert stored is not None
        if outcome == "created":
            self.pool.wake.set()
        return (await self._view(stored)), outcome == "created"

    # -- looking ----------------------------------------------------------------------

    async def _row(self, tenant: str, job_id: str) -> Row:
        row = await self.store.get_job(tenant, job_id)
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row

    async def get(self, tenant: str, job_id: str) -> Job:
        return await self._view(await self._row(tenant, job_id))

    async def find(self, tenant: str, where: JobFilter) -> JobList:
        if where.status is not None and where.status not in (*FINAL_STATUSES, "queued", "running"):
            raise BadRequest(f"unknown status {where.status!r}")
        rows = await self.store.list_jobs(tenant, replace(where, limit=where.limit + 1))
        more = len(rows) > where.limit
        rows = rows[:where.limit]
        jobs = await self._views(rows)
        cursor = _cursor(rows[-1]["seq"]) if more and rows else None
        return JobList(jobs=jobs, next_cursor=cursor)

    async def _view(self, row: Row) -> Job:
        return (await self._views([row]))[0]

    async def _views(self, rows: list[Row]) -> list[Job]:
        ids = [r["id"] for r in rows]
        attempts: dict[str, list[Row]] = {i: [] for i in ids}
        steps: dict[tuple[str, int], list[StepRecord]] = {}
        ids = [r["id"] for r in rows if r["attempt"]]  # never started: nothing to read
        for a in await self.store.job_attempts(ids):
            attempts[a["job_id"]].append(a)
        for s in await self.store.job_steps(ids):
            steps.setdefault((s["job_id"], s["attempt"]), []).append(
                StepRecord(index=s["idx"], **_pick(s, StepRecord, "index")))
        return [_job(r, attempts[r["id"]], steps) for r in rows]

    # -- acting -----------------------------------------------------------------------

    async def cancel(self, tenant: str, job_id: str) -> Job:
        """A queued job never starts; a running one's attempt is killed, whole tree."""
        before = await self._row(tenant, job_id)
        row = await self.store.request_cancel(tenant, job_id, now_iso())
        if row is None:
            raise NotFound(f"job {job_id} not found")
        if before["status"] == "queued" and row["status"] == "cancelled":
            self.tasks.spawn(self._final(job_id))  # never started: finished here
        elif row["status"] == "running" and self.pool.cancel_local(job_id):
            for _ in range(100):  # answered once the attempt has ended here
                await asyncio.sleep(0.05)
                row = await self._row(tenant, job_id)
                if row["status"] != "running":
                    break
        return await self._view(row)

    async def retry(self, tenant: str, job_id: str, req: JobRetry) -> Job:
        """Another attempt of a finished job, with the policy's attempts again."""
        row = await self._row(tenant, job_id)
        spec = JobCreate.model_validate(row["request"])
        if row["status"] not in FINAL_STATUSES:
            raise Conflict(f"job {job_id} is {row['status']}; only a finished job is retried",
                           "job_not_finished")
        resume = spec.resume_from_failed_step if req.resume_from_failed_step is None \
            else req.resume_from_failed_step
        step = None
        if resume and row["kind"] == "pipeline.run":
            step = _failed_step(await self.store.job_steps([job_id]), row["attempt"])
        now = time.time()
        # The retry gets the whole deadline_ms again, from now (as its attempts do).
        deadline = now + spec.deadline_ms / 1000 if spec.deadline_ms else None
        again = await self.store.requeue_job(tenant, job_id, now,
                                             row["attempt"] + spec.retry.max_attempts, step,
                                             self.settings.max_queued_jobs_per_tenant, deadline)
        if again == "full":
            raise OverLimit(f"this key has {self.settings.max_queued_jobs_per_tenant} jobs queued "
                            "or running already (max_queued_jobs_per_tenant); wait for some to "
                            "end", "job_queue_full", retry_after=QUEUE_FULL_RETRY_S)
        if again is None:
            raise Conflict(f"job {job_id} is no longer finished", "job_not_finished")
        self.pool.wake.set()
        return await self._view(again)

    async def logs(self, tenant: str, job_id: str, attempt: int | None) -> JobLogs:
        job = await self.get(tenant, job_id)
        if not job.attempts:
            raise NotFound(f"job {job_id} has no attempt yet")
        number = attempt or job.attempts[-1].number
        found = [a for a in job.attempts if a.number == number]
        if not found:
            raise NotFound(f"job {job_id} has no attempt {number}")
        a = found[0]
        refs: list[tuple[int | None, str | None, str | None, str | None]] = (
            [(s.index, s.name, s.session_id, s.command_id) for s in a.steps or []]
            if job.kind == "pipeline.run" else [(None, None, a.session_id, a.command_id)])
        each = max(64 * 1024, min(MAX_LOG_BYTES, MAX_LOGS_BYTES // max(1, len(refs))))
        entries = [await self._entry(tenant, *ref, limit=each) for ref in refs]
        return JobLogs(job_id=job_id, attempt=number, entries=entries)

    async def _entry(self, tenant: str, step: int | None, name: str | None,
                     session_id: str | None, command_id: str | None, *,
                     limit: int) -> LogEntry:
        entry = LogEntry(step=step, name=name, session_id=session_id, command_id=command_id)
        if session_id and command_id:
            with contextlib.suppress(NotFound):  # its output outlived its retention
                cmd = await self.executor.get_command(tenant, session_id, command_id, 0, limit)
                entry.output, entry.output_size = cmd.output or "", cmd.output_size
                entry.output_truncated = cmd.output_truncated
        return entry

    # -- ends -------------------------------------------------------------------------

    async def _final(self, job_id: str) -> None:
        """A job reached its final status: call its webhook (in the background)."""
        row = await self.store.get_job(None, job_id)
        if row is None or not row["request"].get("webhook"):
            return
        body = (await self._view(row)).model_dump_json().encode()
        self.tasks.spawn(self.webhooks.send(row["request"]["webhook"], body, job_id))

    async def _forget_forever(self, every_s: float = 60) -> None:
        """Finished jobs are kept for the log retention, and at most
        `max_kept_jobs_per_tenant` of them per tenant: state does not grow without bound."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.log_retention_s)
            with contextlib.suppress(Exception):
                await self.store.forget_jobs_ended_before(
                    cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    self.settings.max_kept_jobs_per_tenant)
            await asyncio.sleep(every_s)


def _failed_step(steps: list[Row], attempt: int) -> int | None:
    for s in steps:
        if s["attempt"] == attempt and s["status"] in ("failed", "cancelled"):
            return int(s["idx"])
    return None


def _pick(row: Row, model: Any, *skip: str) -> dict[str, Any]:
    return {k: row[k] for k in model.model_fields if k in row and k not in skip}


def _job(row: Row, attempts: list[Row], steps: dict[tuple[str, int], list[StepRecord]]) -> Job:
    views = [Attempt(**_pick(a, Attempt, "steps"), steps=steps.get((row["id"], a["number"])))
             for a in attempts]
    status = row["status"]
    next_at = iso_time(row["due"]) if status == "queued" and row["due"] > time.time() else None
    fields = _pick(row, Job, "attempts", "steps", "next_attempt_at", "deadline_at",
                   "cancel_requested")
    return Job(**fields, attempts=views, next_attempt_at=next_at,
               deadline_at=iso_time(row["deadline"]) if row.get("deadline") else None,
               cancel_requested=bool(row.get("cancel_requested")),
               steps=views[-1].steps if views and row["kind"] == "pipeline.run" else None)


def iso_time(ts: float) -> str:
    """Seconds since the epoch as the API shows times."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _parse_time(value: str) -> float:
    try:
        if not re.fullmatch(RUN_AT_PATTERN, value):  # RFC 3339, as the schema says
            raise ValueError(value)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("run_at must be an ISO 8601 time with a zone, such as "
                         "2030-01-01T12:00:00Z", "invalid_run_at") from None
    if when.tzinfo is None:
        raise BadRequest("run_at needs a time zone (Z or +HH:MM)", "invalid_run_at")
    try:
        ts = when.timestamp()
        iso_time(ts)  # shown back as UTC: a year past 9999 there would not be a time
    except (ValueError, OverflowError, OSError):
        ts = -1.0
    if ts < 0:
        raise BadRequest("run_at must lie between 1970 and 9999 (UTC)", "invalid_run_at")
    return ts


CURSOR_PATTERN = r"^(j[0-9]{1,18})?$"  # opaque to clients; the schema states its shape


def _cursor(seq: int) -> str:
    return f"j{seq}"


def parse_cursor(cursor: str | None) -> int | None:
    """A cursor from `next_cursor` back to the position it marks (BadRequest if forged)."""
    if not cursor:
        return None
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise BadRequest("invalid cursor", "invalid_cursor")
    return int(cursor[1:])
