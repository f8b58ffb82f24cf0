"""A job's live output as events: attempts, steps, output chunks, and the end.

Output events are the commands' own (`offset`, `stream`, `data`), with the attempt and
step they belong to; each carries a cursor `ATTEMPT:STEP:OFFSET` as its id, so a client
that reconnects with it (`from` or `Last-Event-ID`) misses and repeats nothing. The job
is followed through the store, so attempts and steps are seen as they are recorded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from chaser.core.execution import Executor
from chaser.errors import BadRequest, NotFound
from chaser.jobs.models import FINAL_STATUSES, Attempt, Job
from chaser.jobs.service import JobService
from chaser.models import ExitEvent

POLL_S = 0.2  # how often a stream looks for the job's next attempt or step


@dataclass
class JobEvent:
    """One server-sent event: its name, id (resume cursor) and JSON data."""

    event: str
    data: dict[str, Any]
    id: str | None = None


# ATTEMPT:STEP:OFFSET, ASCII digits (the schema's pattern for `from` and Last-Event-ID).
STREAM_CURSOR_PATTERN = r"^([0-9]{1,15}:[0-9]{1,15}:[0-9]{1,15})?$"


@dataclass
class Cursor:
    attempt: int
    step: int = 0
    offset: int = 0


def parse_cursor(value: str | None) -> Cursor | None:
    """`ATTEMPT:STEP:OFFSET` (as sent in ids), or None."""
    if not value:
        return None
    if not re.fullmatch(STREAM_CURSOR_PATTERN, value):
        raise BadRequest("from must be a cursor ATTEMPT:STEP:OFFSET from an event id",
                         "invalid_cursor")
    parts = value.split(":")
    return Cursor(int(parts[0]), int(parts[1]), int(parts[2]))


class JobStream:
    """Follows one job for one client."""

    def __init__(self, jobs: JobService, executor: Executor, tenant: str, job_id: str) -> None:
        self.jobs = jobs
        self.executor = executor
        self.tenant = tenant
        self.job_id = job_id

    async def events(self, start: Cursor | None, attempt: int | None) -> AsyncIterator[JobEvent]:
        job = await self.jobs.get(self.tenant, self.job_id)  # 404 before the stream opens
        wanted = start.attempt if start else attempt
        if (wanted is not None and job.status in FINAL_STATUSES
                and _attempt(job, wanted) is None and not _later(job, wanted)):
            # An ended job will not make that attempt (a retry would, and may be asked for).
            raise NotFound(f"job {self.job_id} has no attempt {wanted}")
        return self._follow(job, start or Cursor(attempt or _current(job)))

    async def _follow(self, job: Job, at: Cursor) -> AsyncIterator[JobEvent]:
        while True:
            found = _attempt(job, at.attempt)
            if found is None:
                if job.status in FINAL_STATUSES and not _later(job, at.attempt):
                    yield JobEvent("exit", _exit(job))
                    return
                if _later(job, at.attempt):  # skipped (never recorded): go on
                    at = Cursor(at.attempt + 1)
                    continue
                await asyncio.sleep(POLL_S)
                job = await self.jobs.get(self.tenant, self.job_id)
                continue
            if at.step == 0 and at.offset == 0:
                yield JobEvent("attempt", found.model_dump(exclude={"steps"}))
            async for ev in self._attempt_output(at):
                yield ev
            job = await self._until(lambda j: _attempt(j, at.attempt) is not None and
                                    _attempt(j, at.attempt).status != "running")  # type: ignore[union-attr]
            ended = _attempt(job, at.attempt)
            assert ended is not None
            yield JobEvent("attempt", ended.model_dump(exclude={"steps"}))
            at = Cursor(at.attempt + 1)

    async def _attempt_output(self, at: Cursor) -> AsyncIterator[JobEvent]:
        """Every command of the attempt in order, from the cursor on (a step tried
        again is followed into its next try)."""
        announced = -1
        while True:
            job = await self._until(lambda j: _source(j, at) is not None or _over(j, at))
            src = _source(job, at)
            if src is None:
                return
            session_id, command_id, step = src
            if step is not None and at.offset == 0 and announced != at.step:
                announced = at.step
                if step["status"] == "running":  # a replayed step is told once, ended
                    yield JobEvent("step", {"attempt": at.attempt, **step})
            events = await self.executor.events(self.tenant, session_id, command_id, at.offset)
            async for ev in events:
                if isinstance(ev, ExitEvent):
                    break
                at.offset = ev.end
                yield JobEvent("output", {**ev.model_dump(exclude_none=True),
                                          "attempt": at.attempt, "step": at.step},
                               f"{at.attempt}:{at.step}:{ev.end}")
            if step is None:
                return
            job = await self._until(lambda j: _step_done(j, at) or _command(j, at) != command_id)
            if not _step_done(job, at):  # the step's next try: its own command
                at.offset = 0
                continue
            done = _step(job, at)
            if done is not None:
                yield JobEvent("step", {"attempt": at.attempt, **done})
            at.step, at.offset = at.step + 1, 0

    async def _until(self, ready: Any) -> Job:
        while True:
            job = await self.jobs.get(self.tenant, self.job_id)
            if ready(job):
                return job
            await asyncio.sleep(POLL_S)


def _current(job: Job) -> int:
    if job.status == "queued" or not job.attempts:
        return (job.attempts[-1].number + 1) if job.attempts else 1
    return job.attempts[-1].number


def _attempt(job: Job, n: int) -> Attempt | None:
    return next((a for a in job.attempts if a.number == n), None)


def _later(job: Job, n: int) -> bool:
    return any(a.number > n for a in job.attempts)


def _over(job: Job, at: Cursor) -> bool:
    a = _attempt(job, at.attempt)
    return a is None or a.status != "running"


def _source(job: Job, at: Cursor) -> tuple[str, str, dict[str, Any] | None] | None:
    """(session, command, step) of the output at the cursor, once it has started."""
    a = _attempt(job, at.attempt)
    if a is None:
        return None
    if job.kind != "pipeline.run":
        return (a.session_id, a.command_id, None) if a.session_id and a.command_id and \
            at.step == 0 else None
    for s in a.steps or []:
        if s.index == at.step and s.session_id and s.command_id and s.reused_from_attempt is None:
            return s.session_id, s.command_id, s.model_dump()
        if s.index == at.step and (s.reused_from_attempt is not None or s.status == "skipped"):
            at.step, at.offset = at.step + 1, 0  # nothing ran here in this attempt
            return _source(job, at)
    return None


def _step(job: Job, at: Cursor) -> dict[str, Any] | None:
    a = _attempt(job, at.attempt)
    for s in (a.steps or []) if a else []:
        if s.index == at.step:
            return s.model_dump()
    return None


def _command(job: Job, at: Cursor) -> str | None:
    s = _step(job, at)
    return s["command_id"] if s else None


def _step_done(job: Job, at: Cursor) -> bool:
    s = _step(job, at)
    return s is None or s["status"] not in ("running", "pending") or _over(job, at)


def _exit(job: Job) -> dict[str, Any]:
    return {"status": job.status, "exit_code": job.exit_code, "end_reason": job.end_reason,
            "attempts": len(job.attempts)}

