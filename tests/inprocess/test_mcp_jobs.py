"""The MCP job tools: submit a job, read its status and output (over the same core)."""

from __future__ import annotations

from chaser.jobs.models import Job

from tests.inprocess.harness import Tenant
from tests.inprocess.test_mcp import call, call_raw


async def test_submit_and_read_a_job(tenant: Tenant, other: Tenant) -> None:
    job = await call(tenant, Job, "submit_job", command="echo from-mcp; exit 2",
                     max_attempts=2, wait_ms=10_000)
    assert job.status == "failed" and job.exit_code == 2 and len(job.attempts) == 2
    failed, text, data = await call_raw(tenant, "get_job", job_id=job.id, attempt=1)
    assert not failed and "from-mcp" in text and "exit code 2" in text
    assert Job.model_validate(data).id == job.id
    failed, text, _ = await call_raw(other, "get_job", job_id=job.id)
    assert failed and "not found" in text


async def test_submit_pipeline_without_waiting(tenant: Tenant) -> None:
    failed, text, data = await call_raw(tenant, "submit_job", workspace="mcp-jobs", steps=[
        {"name": "a", "command": "echo A"}, {"name": "b", "command": "echo B"}])
    assert not failed and Job.model_validate(data).kind == "pipeline.run"
    done = await call(tenant, Job, "get_job", job_id=Job.model_validate(data).id,
                      wait_ms=10_000)
    assert done.status == "succeeded" and [s.status for s in done.steps or []] == [
        "succeeded", "succeeded"]
    failed, text, _ = await call_raw(tenant, "get_job", job_id=done.id)
    assert "==> step b\nB\n" in text
    failed, text, _ = await call_raw(tenant, "submit_job")
    assert failed and "command" in text
