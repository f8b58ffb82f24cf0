"""`GET /metrics`: Prometheus text format, admin keys only, numbers that move."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess
from tests.jobs.helpers import finished, submit
from tests.types import Tenant


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with server.client() as admin:
        r = admin.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_count_what_happens(server: ServerProcess, tenant: Tenant) -> None:
    before = scrape(server)
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
    tenant.client.post("/v1/exec", json={"ephemeral": True, "command": "true"})
    after = scrape(server)

    def count(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert count("chaser_exec_seconds_count", kind="session") == 1
    assert count("chaser_exec_seconds_count", kind="one_shot") == 1
    assert count("chaser_sandbox_start_seconds_count") >= 1
    assert after[("chaser_sessions", ())] >= 1
    assert after[("chaser_sandboxes", (("kind", "session"),))] >= 1
    assert count("chaser_warm_pool_total", outcome="hit") + count(
        "chaser_warm_pool_total", outcome="miss") == 1
    assert after[("chaser_data_disk_free_bytes", ())] > 0
    assert tenant.client.get("/metrics").status_code == 403
    assert tenant.client.get("/metrics", headers={"Authorization": ""}).status_code == 401


def test_job_metrics(server: ServerProcess, tenant: Tenant) -> None:
    before = scrape(server)
    job = submit(tenant.client, {"ephemeral": True, "command": "exit 4"})
    ok = submit(tenant.client, {"ephemeral": True, "command": "true"})
    finished(tenant.client, job["id"])
    finished(tenant.client, ok["id"])
    after = scrape(server)

    def count(outcome: str) -> float:
        key = ("chaser_job_attempts_total", (("outcome", outcome),))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert count("exit_nonzero") == 1 and count("succeeded") == 1
    running = ("chaser_jobs_running", (("queue", "default"),))
    assert after.get(running, 0.0) == 0
    slow = submit(tenant.client, {"ephemeral": True, "command": "sleep 30"})
    deadline = time.monotonic() + 20
    while scrape(server).get(running, 0.0) < 1:
        assert time.monotonic() < deadline, "the running job never showed"
        time.sleep(0.1)
    tenant.client.post(f"/v1/jobs/{slow['id']}/cancel")
    finished(tenant.client, slow["id"])
    assert scrape(server)[("chaser_job_attempts_total", (("outcome", "cancelled"),))] >= 1
