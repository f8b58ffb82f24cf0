"""Jobs: submit, list, get, stream, logs, cancel, retry (thin over `core.jobs`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from chaser.errors import BadRequest
from chaser.jobs.models import Job, JobCreate, JobList, JobLogs, JobRetry, JobStatus
from chaser.jobs.service import CURSOR_PATTERN, parse_cursor
from chaser.jobs.stream import STREAM_CURSOR_PATTERN, JobStream
from chaser.jobs.stream import parse_cursor as parse_stream_cursor
from chaser.server.deps import Caller, Core
from chaser.server.events import sse_response
from chaser.store.jobs import JobFilter

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

LABEL_FILTER = r"^[^=]+=[\s\S]*$"  # KEY=VALUE (what _labels takes)
_STREAM_CURSOR = {"pattern": STREAM_CURSOR_PATTERN}


@router.post("", response_model=Job, status_code=201)
async def submit_job(req: JobCreate, core: Core, caller: Caller, response: Response) -> Job:
    """Queue a job and return it at once (201; 200 with the first job for a known
    `idempotency_key`)."""
    job, created = await core.jobs.submit(caller.tenant, req)
    if not created:
        response.status_code = 200
    return job


@router.get("", response_model=JobList)
async def list_jobs(core: Core, caller: Caller, status: JobStatus | None = None,
                    kind: str | None = None, queue: str | None = None,
                    workspace: str | None = None,
                    label: Annotated[list[str] | None, Query(max_length=32, json_schema_extra={
                        "items": {"type": "string", "pattern": LABEL_FILTER}})] = None,
                    schedule_id: str | None = None,
                    cursor: Annotated[str | None, Query(json_schema_extra={
                        "pattern": CURSOR_PATTERN})] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> JobList:
    """The caller's jobs, newest first; `label=KEY=VALUE` (repeatable) narrows."""
    labels = _labels(label or [])
    return await core.jobs.find(caller.tenant, JobFilter(
        status=status, kind=kind, queue=queue, workspace=workspace, labels=labels,
        schedule_id=schedule_id, after=parse_cursor(cursor), limit=limit))


@router.get("/{job_id}", response_model=Job)
async def get_job(job_id: str, core: Core, caller: Caller) -> Job:
    """The job with every attempt and, for a pipeline, its steps."""
    return await core.jobs.get(caller.tenant, job_id)


@router.get("/{job_id}/stream", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_job(job_id: str, core: Core, caller: Caller,
                     from_: Annotated[str | None, Query(alias="from", max_length=64,
                                                        json_schema_extra=_STREAM_CURSOR)] = None,
                     attempt: Annotated[int | None, Query(ge=1)] = None,
                     last_event_id: Annotated[str | None, Header(
                         max_length=64, json_schema_extra=_STREAM_CURSOR)] = None,
                     ) -> EventSourceResponse:
    """Live output of the job (`attempt`, `step`, `output` events, then `exit`),
    resumable from an event id (`from` or `Last-Event-ID`)."""
    start = parse_stream_cursor(last_event_id or from_)
    events = await JobStream(core.jobs, core.executor, caller.tenant, job_id).events(
        start, attempt)

    async def sse() -> AsyncIterator[ServerSentEvent]:
        async for ev in events:
            yield ServerSentEvent(event=ev.event, id=ev.id, data=_json(ev.data))

    return sse_response(core, caller, sse())


@router.get("/{job_id}/logs", response_model=JobLogs)
async def job_logs(job_id: str, core: Core, caller: Caller,
                   attempt: Annotated[int | None, Query(ge=1)] = None) -> JobLogs:
    """The output of one attempt (default: the latest), per command."""
    return await core.jobs.logs(caller.tenant, job_id, attempt)


@router.post("/{job_id}/cancel", response_model=Job)
async def cancel_job(job_id: str, core: Core, caller: Caller) -> Job:
    """A queued job never starts; a running attempt's whole tree is killed."""
    return await core.jobs.cancel(caller.tenant, job_id)


@router.post("/{job_id}/retry", response_model=Job)
async def retry_job(job_id: str, core: Core, caller: Caller, req: JobRetry | None = None) -> Job:
    """Queue a finished job again (409 while it is queued or running)."""
    return await core.jobs.retry(caller.tenant, job_id, req or JobRetry())


def _json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


def _labels(items: list[str]) -> dict[str, str]:
    """`label=KEY=VALUE` query parameters as a dict (400 for one without `=`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"label filter {item[:100]!r} is not KEY=VALUE", "invalid_label")
        out[key] = value
    return out
