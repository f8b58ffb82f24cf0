"""Jobs and schedules in the synchronous client (`client.jobs`, `client.schedules`)."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import connect_sse

from chaser.jobs.models import FINAL_STATUSES, Job, JobList, JobLogs, Schedule

from . import _jobs_api as api
from ._errors import TimeoutError  # noqa: A004
from ._http import STREAM_READ_TIMEOUT, api_error

if TYPE_CHECKING:
    from ._client import Client

STREAM_RETRIES = 5


@dataclass
class JobEvent:
    """One event of a job's stream: `attempt`, `step`, `output` or `exit`, its data and
    its id (the cursor a stream resumes from)."""

    event: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


def wait_step(waited: float) -> float:
    """Poll every 0.1 s at first, then less often, up to once a second."""
    return min(1.0, 0.1 + waited / 10)


class Jobs:
    """`client.jobs`: submit, follow and manage jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def exec(self, command: str, **fields: Any) -> Job:
        """Queue a `sandbox.exec` job (fields as `POST /v1/jobs`; `max_attempts=N` is
        short for `retry={"max_attempts": N}`)."""
        return self.create(api.job_request("sandbox.exec", {"command": command, **fields}))

    def pipeline(self, steps: builtins.list[Any], **fields: Any) -> Job:
        """Queue a `pipeline.run` job of `steps` (dicts or `PipelineStep`)."""
        return self.create(api.job_request("pipeline.run", {"steps": steps, **fields}))

    def create(self, request: dict[str, Any]) -> Job:
        """Queue a job from a whole request body (as `POST /v1/jobs` takes it)."""
        return self._client._call(api.job_create(request))

    def get(self, job_id: str) -> Job:
        return self._client._call(api.job_get(job_id))

    def list(self, *, status: str | None = None, kind: str | None = None,
             queue: str | None = None, workspace: str | None = None,
             labels: dict[str, str] | None = None, schedule_id: str | None = None,
             cursor: str | None = None, limit: int | None = None) -> JobList:
        """One page of jobs, newest first; pass `next_cursor` back for the next."""
        return self._client._call(api.job_list(
            status=status, kind=kind, queue=queue, workspace=workspace, labels=labels,
            schedule_id=schedule_id, cursor=cursor, limit=limit))

    def cancel(self, job_id: str) -> Job:
        return self._client._call(api.job_cancel(job_id))

    def retry(self, job_id: str, *, resume_from_failed_step: bool | None = None) -> Job:
        return self._client._call(api.job_retry(job_id, resume_from_failed_step))

    def logs(self, job_id: str, attempt: int | None = None) -> JobLogs:
        return self._client._call(api.job_logs(job_id, attempt))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it is finished (TimeoutError after `timeout` seconds)."""
        started = time.monotonic()
        while True:
            job = self.get(job_id)
            if job.status in FINAL_STATUSES:
                return job
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            time.sleep(wait_step(waited))

    def stream(self, job_id: str, *, attempt: int | None = None,
               from_cursor: str | None = None) -> Iterator[JobEvent]:
        """The job's events until `exit`, reconnecting (from the last id) on a drop."""
        cursor, failures = from_cursor, 0
        http = self._client._http
        while True:
            params: dict[str, Any] = {}
            if attempt is not None and cursor is None:
                params["attempt"] = attempt
            headers = {"Last-Event-ID": cursor} if cursor else {}
            try:
                with connect_sse(http, "GET", f"{api.job_path(job_id)}/stream", params=params,
                                 headers=headers, timeout=httpx.Timeout(
                                     30.0, read=STREAM_READ_TIMEOUT)) as source:
                    if not source.response.is_success:
                        source.response.read()
                        raise api_error(source.response, self._client.config)
                    for sse in source.iter_sse():
                        if not sse.event or sse.event == "message":
                            continue
                        ev = JobEvent(sse.event, json.loads(sse.data) if sse.data else {},
                                      sse.id or None)
                        if ev.id:
                            cursor = ev.id
                        yield ev
                        if ev.event == "exit":
                            return
            except httpx.HTTPError:
                failures += 1
                if failures > STREAM_RETRIES:
                    raise
                time.sleep(min(2.0, 0.2 * failures))


class Schedules:
    """`client.schedules`: jobs on a cron expression or an interval."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, job: dict[str, Any], *, cron: str | None = None, timezone: str = "UTC",
               interval_s: int | None = None, name: str = "", overlap: str = "skip",
               paused: bool = False) -> Schedule:
        return self._client._call(api.schedule_create({
            "job": job, "cron": cron, "timezone": timezone, "interval_s": interval_s,
            "name": name, "overlap": overlap, "paused": paused}))

    def list(self) -> builtins.list[Schedule]:
        return self._client._call(api.schedule_list()).schedules

    def get(self, schedule_id: str) -> Schedule:
        return self._client._call(api.schedule_get(schedule_id))

    def delete(self, schedule_id: str) -> Schedule:
        return self._client._call(api.schedule_delete(schedule_id))

    def pause(self, schedule_id: str) -> Schedule:
        return self._client._call(api.schedule_pause(schedule_id, True))

    def resume(self, schedule_id: str) -> Schedule:
        return self._client._call(api.schedule_pause(schedule_id, False))
