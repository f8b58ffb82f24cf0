"""The SDK's jobs and schedules, sync and async, against a real server."""

from __future__ import annotations

import pytest

from chaser.client import AsyncClient, Client, NotFoundError, PipelineStep
from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant


def test_sync_jobs(server: ServerProcess, tenant: Tenant, new_tenant: NewTenant) -> None:
    with Client(server.url, tenant.key) as client:
        job = client.jobs.exec("echo try; exit 1", ephemeral=True, max_attempts=2,
                               retry={"initial_backoff_ms": 10}, labels={"sdk": "sync"})
        assert job.status == "queued" and job.request["retry"]["max_attempts"] == 2
        done = client.jobs.wait(job.id, timeout=60)
        assert done.status == "failed" and [a.exit_code for a in done.attempts] == [1, 1]
        assert client.jobs.logs(job.id, attempt=1).entries[0].output == "try\n"
        events = list(client.jobs.stream(job.id, attempt=1))
        assert [e.event for e in events].count("attempt") == 4 and events[-1].event == "exit"
        assert [e.id for e in events if e.event == "output"] == ["1:0:4", "2:0:4"]
        assert [j.id for j in client.jobs.list(labels={"sdk": "sync"}).jobs] == [job.id]
        again = client.jobs.retry(job.id)
        assert again.status == "queued"
        client.jobs.wait(job.id, timeout=60)
        pipe = client.jobs.pipeline([PipelineStep(name="a", command="echo A"),
                                     {"name": "b", "command": "echo B"}], workspace="sdk")
        assert client.jobs.wait(pipe.id, timeout=60).status == "succeeded"
        s = client.schedules.create({"kind": "sandbox.exec", "command": "true"}, cron="0 0 * * *")
        assert len(client.schedules.get(s.id).next_run_times) == 5
        assert client.schedules.pause(s.id).paused
        assert not client.schedules.resume(s.id).paused
        assert [x.id for x in client.schedules.list()] == [s.id]
        client.schedules.delete(s.id)
    other = new_tenant("other")
    with Client(server.url, other.key) as client, pytest.raises(NotFoundError):
        client.jobs.get(job.id)


async def test_async_jobs(server: ServerProcess, tenant: Tenant) -> None:
    async with AsyncClient(server.url, tenant.key) as client:
        job = await client.jobs.exec("echo async", workspace="sdk-async")
        done = await client.jobs.wait(job.id, timeout=60)
        assert done.status == "succeeded" and done.exit_code == 0
        out = [e.data["data"] async for e in client.jobs.stream(job.id) if e.event == "output"]
        assert out == ["async\n"]
        assert (await client.jobs.logs(job.id)).entries[0].output == "async\n"
        queued = await client.jobs.exec("true", run_at="2099-01-01T00:00:00Z")
        assert (await client.jobs.cancel(queued.id)).status == "cancelled"
        s = await client.schedules.create({"command": "true"}, interval_s=3600)
        assert s.interval_s == 3600 and (await client.schedules.delete(s.id)).id == s.id
