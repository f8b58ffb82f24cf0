"""Jobs end to end on a real server: retries, pipelines, cancel, idempotency, tenancy."""

from __future__ import annotations

import time

from tests.conftest import ServerProcess
from tests.jobs.helpers import FAST_RETRY, finished, get, running_command, submit
from tests.types import NewTenant, Tenant

COUNTER = ("n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
           "echo attempt $n; [ $n -ge 3 ]")


def test_fails_twice_then_succeeds(tenant: Tenant) -> None:
    job = submit(tenant.client, {"kind": "sandbox.exec", "workspace": "counter",
                                 "command": COUNTER, "retry": {"max_attempts": 3, **FAST_RETRY}})
    assert job["status"] == "queued"
    done = finished(tenant.client, job["id"])
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    assert [(a["number"], a["status"], a["exit_code"]) for a in done["attempts"]] == [
        (1, "failed", 1), (2, "failed", 1), (3, "succeeded", 0)]
    for a in done["attempts"]:
        assert a["started_at"] <= a["ended_at"] and a["node"] and a["end_reason"] == "exit"
    outputs = [tenant.client.get(f"/v1/jobs/{job['id']}/logs?attempt={n}").json()
               ["entries"][0]["output"] for n in (1, 2, 3)]
    assert outputs == ["attempt 1\n", "attempt 2\n", "attempt 3\n"]
    # The same workspace, as /v1/exec sees it: the counter file is there.
    r = tenant.client.post("/v1/exec", json={"workspace": "counter", "command": "cat count"})
    assert r.json()["output"] == "3\n"


def test_out_of_attempts_fails_with_the_code(tenant: Tenant) -> None:
    job = submit(tenant.client, {"ephemeral": True, "command": "echo no; exit 7",
                                 "retry": {"max_attempts": 2, **FAST_RETRY}})
    done = finished(tenant.client, job["id"])
    assert (done["status"], done["exit_code"], len(done["attempts"])) == ("failed", 7, 2)


def test_pipeline_second_step_fails(tenant: Tenant) -> None:
    job = submit(tenant.client, {"kind": "pipeline.run", "workspace": "pipe", "steps": [
        {"name": "build", "command": "echo built > artifact"},
        {"name": "test", "command": "cat artifact; echo failing >&2; exit 5"},
        {"name": "deploy", "command": "touch deployed"}]})
    done = finished(tenant.client, job["id"])
    assert done["status"] == "failed" and done["exit_code"] == 5
    assert [(s["name"], s["status"], s["exit_code"]) for s in done["steps"]] == [
        ("build", "succeeded", 0), ("test", "failed", 5), ("deploy", "skipped", None)]
    assert all(s["duration_ms"] is not None for s in done["steps"][:2])
    entries = tenant.client.get(f"/v1/jobs/{job['id']}/logs").json()["entries"]
    assert entries[1]["output"] == "built\nfailing\n"
    r = tenant.client.post("/v1/exec", json={"workspace": "pipe", "command": "ls"})
    assert r.json()["output"] == "artifact\n"  # one sandbox, one workspace; deploy never ran


def test_pipeline_step_that_may_fail(tenant: Tenant) -> None:
    job = submit(tenant.client, {"kind": "pipeline.run", "ephemeral": True, "steps": [
        {"name": "setup", "command": "echo x > /tmp/shared"},
        {"name": "lint", "command": "exit 3", "continue_on_error": True},
        {"name": "test", "command": "cat /tmp/shared"}]})
    done = finished(tenant.client, job["id"])
    assert done["status"] == "succeeded"
    assert [s["status"] for s in done["steps"]] == ["succeeded", "failed", "succeeded"]
    assert done["steps"][1]["exit_code"] == 3
    entries = tenant.client.get(f"/v1/jobs/{job['id']}/logs").json()["entries"]
    assert entries[2]["output"] == "x\n"  # the steps shared one sandbox


def test_cancel_running_kills_the_tree(server: ServerProcess, tenant: Tenant) -> None:
    marker = f"sleep 3{int(time.time() * 1000) % 100000:05d}"
    # Two children in its process group, and one that left it (setsid): all three go.
    job = submit(tenant.client, {"workspace": "cancel-me",
                                 "command": f"{marker} & {marker} & setsid {marker} & wait"})
    running_command(tenant.client, job["id"])
    deadline = time.monotonic() + 10
    while sum(marker in p for p in server.sandbox_processes()) < 3:
        assert time.monotonic() < deadline, "the job's processes never started"
        time.sleep(0.05)
    r = tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["attempts"][0]["status"] == "cancelled"
    deadline = time.monotonic() + 5
    while any(marker in p for p in server.sandbox_processes()):
        assert time.monotonic() < deadline, "the cancelled job's processes live on"
        time.sleep(0.05)


def test_cancel_queued_never_starts(tenant: Tenant) -> None:
    job = submit(tenant.client, {"workspace": "never", "command": "touch started",
                                 "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime(time.time() + 2))})
    r = tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.json()["status"] == "cancelled" and r.json()["attempts"] == []
    time.sleep(3)
    assert get(tenant.client, job["id"])["attempts"] == []
    r = tenant.client.post("/v1/exec", json={"workspace": "never", "command": "ls"})
    assert r.json()["output"] == ""


def test_idempotency_key(tenant: Tenant, new_tenant: NewTenant) -> None:
    body = {"ephemeral": True, "command": "echo once", "idempotency_key": "deploy-42"}
    first = submit(tenant.client, body)
    for _ in range(3):
        assert submit(tenant.client, body, status=200)["id"] == first["id"]
    finished(tenant.client, first["id"])
    assert submit(tenant.client, body, status=200)["id"] == first["id"]
    assert len(tenant.client.get("/v1/jobs").json()["jobs"]) == 1
    other = new_tenant("other")  # keys are per tenant
    assert submit(other.client, body)["id"] != first["id"]


def test_other_tenant_gets_404_everywhere(tenant: Tenant, new_tenant: NewTenant) -> None:
    job = submit(tenant.client, {"ephemeral": True, "command": "echo secret"})
    finished(tenant.client, job["id"])
    sched = tenant.client.post("/v1/schedules", json={
        "interval_s": 3600, "job": {"ephemeral": True, "command": "true"}}).json()
    other = new_tenant("other")
    for method, path in (("GET", ""), ("GET", "/stream"), ("GET", "/logs?attempt=1"),
                         ("POST", "/cancel"), ("POST", "/retry")):
        r = other.client.request(method, f"/v1/jobs/{job['id']}{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    for method, path in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")):
        r = other.client.request(method, f"/v1/schedules/{sched['id']}{path}")
        assert r.status_code == 404, (path, r.text)
    assert other.client.get("/v1/jobs").json()["jobs"] == []
    assert other.client.get("/v1/schedules").json()["schedules"] == []
    assert get(tenant.client, job["id"])["status"] == "succeeded"
    tenant.client.delete(f"/v1/schedules/{sched['id']}")


def test_stream_follows_live_attempts(tenant: Tenant) -> None:
    job = submit(tenant.client, {"ephemeral": True, "command": "echo one; sleep 0.3; echo two; "
                                 "exit 1", "retry": {"max_attempts": 2, **FAST_RETRY}})
    events = []
    with tenant.client.stream("GET", f"/v1/jobs/{job['id']}/stream?attempt=1") as r:
        assert r.status_code == 200
        name = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name:
                events.append((name, line.split(":", 1)[1].strip()))
    names = [n for n, _ in events]
    assert names.count("attempt") == 4 and names[-1] == "exit"
    assert "".join(__import__("json").loads(d)["data"] for n, d in events if n == "output") \
        == "one\ntwo\none\ntwo\n"


def test_stream_of_an_attempt_an_ended_job_never_made_is_404(tenant: Tenant) -> None:
    job = submit(tenant.client, {"ephemeral": True, "command": "echo once"})
    finished(tenant.client, job["id"])
    r = tenant.client.get(f"/v1/jobs/{job['id']}/stream?attempt=999")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    with tenant.client.stream("GET", f"/v1/jobs/{job['id']}/stream?attempt=1") as r:
        assert r.status_code == 200 and "event: exit" in r.read().decode()


def test_a_retried_job_gets_its_deadline_again(tenant: Tenant) -> None:
    job = submit(tenant.client, {"ephemeral": True, "command": "exit 3", "deadline_ms": 60_000})
    done = finished(tenant.client, job["id"])
    assert done["status"] == "failed" and done["deadline_at"]
    r = tenant.client.post(f"/v1/jobs/{job['id']}/retry", json={})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["deadline_at"] and again["deadline_at"] > done["deadline_at"]
    assert finished(tenant.client, job["id"])["status"] == "failed"
