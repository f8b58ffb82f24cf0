"""Jobs and schedules in the async client (`client.jobs`, `client.schedules`)."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import aconnect_sse

from chaser.jobs.models import FINAL_STATUSES, Job, JobList, JobLogs, Schedule

from . import _jobs_api as api
from ._errors import TimeoutError  # noqa: A004
from ._http import STREAM_READ_TIMEOUT, api_error
from ._jobs import STREAM_RETRIES, JobEvent, wait_step

if TYPE_CHECKING:
    from ._async_client import AsyncClient


class AsyncJobs:
    """`client.jobs`: submit, follow and manage jobs."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def exec(self, command: str, **fields: Any) -> Job:
        """Queue a `sandbox.exec` job (see `Jobs.exec`)."""
        return await self.create(api.job_request("sandbox.exec", {"command": command, **fields}))

    async def pipeline(self, steps: builtins.list[Any], **fields: Any) -> Job:
        """Queue a `pipeline.run` job of `steps`."""
        return await self.create(api.job_request("pipeline.run", {"steps": steps, **fields}))

    async def create(self, request: dict[str, Any]) -> Job:
        return await self._client._call(api.job_create(request))

    async def get(self, job_id: str) -> Job:
        return await self._client._call(api.job_get(job_id))

    async def list(self, *, status: str | None = None, kind: str | None = None,
                   queue: str | None = None, workspace: str | None = None,
                   labels: dict[str, str] | None = None, schedule_id: str | None = None,
                   cursor: str | None = None, limit: int | None = None) -> JobList:
        return await self._client._call(api.job_list(
            status=status, kind=kind, queue=queue, workspace=workspace, labels=labels,
            schedule_id=schedule_id, cursor=cursor, limit=limit))

    async def cancel(self, job_id: str) -> Job:
        return await self._client._call(api.job_cancel(job_id))

    async def retry(self, job_id: str, *, resume_from_failed_step: bool | None = None) -> Job:
        return await self._client._call(api.job_retry(job_id, resume_from_failed_step))

    async def logs(self, job_id: str, attempt: int | None = None) -> JobLogs:
        return await self._client._call(api.job_logs(job_id, attempt))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it is finished (TimeoutError after `timeout` seconds)."""
        started = time.monotonic()
        while True:
            job = await self.get(job_id)
            if job.status in FINAL_STATUSES:
                return job
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            await asyncio.sleep(wait_step(waited))

    async def stream(self, job_id: str, *, attempt: int | None = None,
                     from_cursor: str | None = None) -> AsyncIterator[JobEvent]:
        """The job's events until `exit`, reconnecting (from the last id) on a drop."""
        cursor, failures = from_cursor, 0
        http = self._client._http
        while True:
            params: dict[str, Any] = {}
            if attempt is not None and cursor is None:
                params["attempt"] = attempt
            headers = {"Last-Event-ID": cursor} if cursor else {}
            try:
                async with aconnect_sse(http, "GET", f"{api.job_path(job_id)}/stream",
                                        params=params, headers=headers, timeout=httpx.Timeout(
                                            30.0, read=STREAM_READ_TIMEOUT)) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        raise api_error(source.response, self._client.config)
                    async for sse in source.aiter_sse():
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
                await asyncio.sleep(min(2.0, 0.2 * failures))


class AsyncSchedules:
    """`client.schedules`: jobs on a cron expression or an interval."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, job: dict[str, Any], *, cron: str | None = None,
                     timezone: str = "UTC", interval_s: int | None = None, name: str = "",
                     overlap: str = "skip", paused: bool = False) -> Schedule:
        return await self._client._call(api.schedule_create({
            "job": job, "cron": cron, "timezone": timezone, "interval_s": interval_s,
            "name": name, "overlap": overlap, "paused": paused}))

    async def list(self) -> builtins.list[Schedule]:
        return (await self._client._call(api.schedule_list())).schedules

    async def get(self, schedule_id: str) -> Schedule:
        return await self._client._call(api.schedule_get(schedule_id))

    async def delete(self, schedule_id: str) -> Schedule:
        return await self._client._call(api.schedule_delete(schedule_id))

    async def pause(self, schedule_id: str) -> Schedule:
        return await self._client._call(api.schedule_pause(schedule_id, True))

    async def resume(self, schedule_id: str) -> Schedule:
        return await self._client._call(api.schedule_pause(schedule_id, False))
