"""Helpers of the jobs tests: submit, read and wait for jobs over a real server."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.types import Json

FINAL = ("succeeded", "failed", "cancelled")
FAST_RETRY = {"initial_backoff_ms": 50, "jitter": 0}


def submit(c: httpx.Client, body: Json, status: int = 201) -> Json:
    r = c.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    job: Json = r.json()
    return job


def get(c: httpx.Client, job_id: str) -> Json:
    r = c.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: Json = r.json()
    return job


def wait_for(c: httpx.Client, job_id: str, check: Any, timeout: float = 60) -> Json:
    """The job once `check(job)` holds (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = get(c, job_id)
        if check(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        time.sleep(0.05)


def finished(c: httpx.Client, job_id: str, timeout: float = 60) -> Json:
    return wait_for(c, job_id, lambda j: j["status"] in FINAL, timeout)


def running_command(c: httpx.Client, job_id: str, attempt: int = 1) -> Json:
    """The job once its attempt `attempt` has its command started."""
    return wait_for(c, job_id, lambda j: j["status"] == "running" and len(j["attempts"]) >= attempt
                    and bool(j["attempts"][attempt - 1]["command_id"]))
