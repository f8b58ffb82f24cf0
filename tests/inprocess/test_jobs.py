"""Jobs and schedules through every route: retries, pipelines, cancel, streams, logs,
idempotency, filters and pagination, tenancy, validation (fake runtime)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.inprocess.harness import Tenant, error, eventually, parse_sse, serving

FAST_RETRY = {"max_attempts": 3, "initial_backoff_ms": 10, "jitter": 0}


async def submit(t: Tenant, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    r = await t.client.post("/v1/jobs", json=body)
    assert r.status_code == status, r.text
    job: dict[str, Any] = r.json()
    return job


async def get(t: Tenant, job_id: str) -> dict[str, Any]:
    r = await t.client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def finished(t: Tenant, job_id: str, timeout: float = 10) -> dict[str, Any]:
    async def done() -> bool:
        return (await get(t, job_id))["status"] in ("succeeded", "failed", "cancelled")

    await eventually(done, timeout)
    return await get(t, job_id)


async def test_exec_job_fails_twice_then_succeeds(tenant: Tenant) -> None:
    cmd = ("n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
           "echo try $n; [ $n -ge 3 ]")
    job = await submit(tenant, {"kind": "sandbox.exec", "workspace": "jobs-retry",
                                "command": cmd, "retry": FAST_RETRY})
    assert job["status"] == "queued" and job["id"].startswith("job_")
    done = await finished(tenant, job["id"])
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    assert [a["status"] for a in done["attempts"]] == ["failed", "failed", "succeeded"]
    assert [a["exit_code"] for a in done["attempts"]] == [1, 1, 0]
    assert all(a["node"] and a["command_id"] and a["ended_at"] for a in done["attempts"])
    logs = (await tenant.client.get(f"/v1/jobs/{job['id']}/logs?attempt=2")).json()
    assert logs["attempt"] == 2 and logs["entries"][0]["output"] == "try 2\n"
    latest = (await tenant.client.get(f"/v1/jobs/{job['id']}/logs")).json()
    assert latest["attempt"] == 3 and latest["entries"][0]["output"] == "try 3\n"


async def test_never_retry_exit_codes_and_retry_on(tenant: Tenant) -> None:
    job = await submit(tenant, {"command": "exit 3", "ephemeral": True, "retry": {
        **FAST_RETRY, "never_retry_exit_codes": [3]}})
    done = await finished(tenant, job["id"])
    assert (done["status"], done["exit_code"], len(done["attempts"])) == ("failed", 3, 1)
    job = await submit(tenant, {"command": "sleep 5", "ephemeral": True, "timeout_ms": 100,
                                "retry": {**FAST_RETRY, "retry_on": ["exit_nonzero"]}})
    done = await finished(tenant, job["id"])
    assert done["status"] == "failed" and done["end_reason"] == "timeout"
    assert len(done["attempts"]) == 1


async def test_pipeline_stops_at_failing_step(tenant: Tenant) -> None:
    job = await submit(tenant, {"kind": "pipeline.run", "workspace": "jobs-pipe", "steps": [
        {"name": "one", "command": "echo one > out"},
        {"name": "two", "command": "cat out; exit 4"},
        {"name": "three", "command": "echo never"}]})
    done = await finished(tenant, job["id"])
    assert done["status"] == "failed" and done["exit_code"] == 4
    steps = done["steps"]
    assert [s["status"] for s in steps] == ["succeeded", "failed", "skipped"]
    assert steps[1]["exit_code"] == 4 and steps[1]["duration_ms"] is not None
    logs = (await tenant.client.get(f"/v1/jobs/{job['id']}/logs")).json()
    assert [e["output"] for e in logs["entries"]] == ["", "one\n", ""]


async def test_pipeline_step_may_fail(tenant: Tenant) -> None:
    job = await submit(tenant, {"kind": "pipeline.run", "ephemeral": True, "steps": [
        {"command": "exit 1", "continue_on_error": True}, {"command": "echo fine"}]})
    done = await finished(tenant, job["id"])
    assert done["status"] == "succeeded"
    assert [s["status"] for s in done["steps"]] == ["failed", "succeeded"]
    assert done["steps"][0]["name"] == "step 1"


async def test_pipeline_resumes_from_failed_step(tenant: Tenant) -> None:
    job = await submit(tenant, {
        "kind": "pipeline.run", "workspace": "jobs-resume", "resume_from_failed_step": True,
        "retry": FAST_RETRY, "steps": [
            {"name": "count", "command": "echo x >> ran"},
            {"name": "flaky", "command": "[ $(wc -l < ran) -ge 1 ] && [ -e ok ] || "
                                         "{ touch ok; exit 1; }",
             "retry": {"max_attempts": 1}}]})
    done = await finished(tenant, job["id"])
    assert done["status"] == "succeeded" and len(done["attempts"]) == 2
    second = done["attempts"][1]["steps"]
    assert second[0]["reused_from_attempt"] == 1 and second[1]["status"] == "succeeded"
    r = await tenant.client.post("/v1/exec", json={"workspace": "jobs-resume",
                                                   "command": "wc -l < ran"})
    assert r.json()["output"].strip() == "1"  # the first step ran once


async def test_step_retry_in_same_attempt(tenant: Tenant) -> None:
    job = await submit(tenant, {"kind": "pipeline.run", "workspace": "jobs-step-retry",
                                "steps": [{"command": "echo x >> n; [ $(wc -l < n) -ge 2 ]",
                                           "retry": {"max_attempts": 3}}]})
    done = await finished(tenant, job["id"])
    assert done["status"] == "succeeded" and len(done["attempts"]) == 1
    assert done["steps"][0]["tries"] == 2


async def test_cancel_running_and_queued(tenant: Tenant) -> None:
    job = await submit(tenant, {"command": "sleep 30", "workspace": "jobs-cancel"})

    async def running() -> bool:
        j = await get(tenant, job["id"])
        return bool(j["status"] == "running" and j["attempts"] and j["attempts"][0]["command_id"])

    await eventually(running)
    r = await tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    done = await get(tenant, job["id"])
    assert done["attempts"][0]["status"] == "cancelled"
    later = await submit(tenant, {"command": "echo no", "ephemeral": True,
                                  "run_at": "2099-01-01T00:00:00Z"})
    r = await tenant.client.post(f"/v1/jobs/{later['id']}/cancel")
    assert r.json()["status"] == "cancelled" and r.json()["attempts"] == []
    r = await tenant.client.post(f"/v1/jobs/{later['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    await tenant.client.post(f"/v1/jobs/{later['id']}/cancel")


async def test_retry_finished_job(tenant: Tenant) -> None:
    job = await submit(tenant, {"command": "exit 2", "ephemeral": True})
    await finished(tenant, job["id"])
    r = await tenant.client.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 200, r.text
    done = await finished(tenant, job["id"])
    assert len(done["attempts"]) == 2 and done["status"] == "failed"
    queued = await submit(tenant, {"command": "true", "ephemeral": True,
                                   "run_at": "2099-01-01T00:00:00+00:00"})
    error(await tenant.client.post(f"/v1/jobs/{queued['id']}/retry"), 409, "job_not_finished")
    await tenant.client.post(f"/v1/jobs/{queued['id']}/cancel")


async def test_idempotency_key(tenant: Tenant) -> None:
    body = {"command": "echo once", "ephemeral": True, "idempotency_key": "k-1"}
    first = await submit(tenant, body)
    again = await submit(tenant, body, status=200)
    assert again["id"] == first["id"]


async def test_stream_has_attempts_and_output(tenant: Tenant) -> None:
    job = await submit(tenant, {"command": "echo a; exit 1", "ephemeral": True,
                                "retry": {**FAST_RETRY, "max_attempts": 2}})
    await finished(tenant, job["id"])
    r = await tenant.client.get(f"/v1/jobs/{job['id']}/stream?attempt=1")
    events = parse_sse(r.text)
    kinds = [e.event for e in events]
    assert kinds == ["attempt", "output", "attempt", "attempt", "output", "attempt", "exit"]
    out = [e for e in events if e.event == "output"]
    assert out[0].id == "1:0:2" and json.loads(out[0].data)["data"] == "a\n"
    assert json.loads(events[-1].data)["status"] == "failed"
    r = await tenant.client.get(f"/v1/jobs/{job['id']}/stream",
                                headers={"Last-Event-ID": "1:0:2"})
    resumed = parse_sse(r.text)
    assert [e.event for e in resumed] == ["attempt", "attempt", "output", "attempt", "exit"]


async def test_stream_pipeline_steps(tenant: Tenant) -> None:
    job = await submit(tenant, {"kind": "pipeline.run", "ephemeral": True, "steps": [
        {"name": "a", "command": "echo A"}, {"name": "b", "command": "echo B"}]})
    await finished(tenant, job["id"])
    events = parse_sse((await tenant.client.get(f"/v1/jobs/{job['id']}/stream")).text)
    steps = [json.loads(e.data) for e in events if e.event == "step"]
    assert [(s["name"], s["status"]) for s in steps] == [("a", "succeeded"), ("b", "succeeded")]
    assert "".join(json.loads(e.data)["data"] for e in events if e.event == "output") == "A\nB\n"
    assert [e.id for e in events if e.event == "output"] == ["1:0:2", "1:1:2"]


async def test_list_filters_and_cursor(tenant: Tenant) -> None:
    ids = [(await submit(tenant, {"command": "true", "ephemeral": True, "queue": "lists",
                                  "labels": {"team": "a" if i % 2 else "b"},
                                  "run_at": "2099-01-01T00:00:00Z"}))["id"] for i in range(5)]
    r = await tenant.client.get("/v1/jobs?queue=lists&limit=2")
    page = r.json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next_cursor"]
    rest = (await tenant.client.get(f"/v1/jobs?queue=lists&cursor={page['next_cursor']}")).json()
    assert [j["id"] for j in rest["jobs"]] == ids[::-1][2:] and rest["next_cursor"] is None
    a = (await tenant.client.get("/v1/jobs?queue=lists&label=team=a")).json()["jobs"]
    assert [j["id"] for j in a] == [ids[3], ids[1]]
    assert (await tenant.client.get("/v1/jobs?status=queued&kind=sandbox.exec&queue=lists")
            ).json()["jobs"]
    error(await tenant.client.get("/v1/jobs?cursor=zzz"), 400, "invalid_cursor")
    error(await tenant.client.get("/v1/jobs?status=bogus"), 422, "invalid_request")  # an enum
    for i in ids:
        await tenant.client.post(f"/v1/jobs/{i}/cancel")


async def test_other_tenant_sees_nothing(tenant: Tenant, other: Tenant) -> None:
    job = await submit(tenant, {"command": "echo mine", "ephemeral": True})
    await finished(tenant, job["id"])
    for method, path in (("GET", ""), ("GET", "/stream"), ("GET", "/logs"),
                         ("POST", "/cancel"), ("POST", "/retry")):
        error(await other.client.request(method, f"/v1/jobs/{job['id']}{path}"), 404,
              "not_found")
    assert job["id"] not in [j["id"] for j in (await other.client.get("/v1/jobs")).json()["jobs"]]
    sched = (await tenant.client.post("/v1/schedules", json={
        "interval_s": 3600, "job": {"command": "true", "ephemeral": True}})).json()
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume")):
        error(await other.client.request(method, f"/v1/schedules/{sched['id']}{path}"), 404,
              "not_found")
    assert (await other.client.get("/v1/schedules")).json()["schedules"] == []
    await tenant.client.delete(f"/v1/schedules/{sched['id']}")


async def test_validation(tenant: Tenant) -> None:
    for body in ({"kind": "sandbox.exec"}, {"kind": "pipeline.run", "command": "x"},
                 {"command": "x", "workspace": "w", "ephemeral": True},
                 {"command": "x", "retry": {"max_attempts": 0}},
                 {"command": "x", "labels": {"bad key": "v"}},
                 {"command": "x", "labels": {"k": "nul\x00inside"}},
                 {"command": "x", "queue": "../q"}, {"command": "x", "bogus": 1}):
        error(await tenant.client.post("/v1/jobs", json=body), 422, "invalid_request")
    error(await tenant.client.post("/v1/jobs", json={"command": "x", "run_at": "tomorrow"}),
          400, "invalid_run_at")
    error(await tenant.client.post("/v1/jobs", json={"command": "x",
                                                     "webhook": "http://evil.example/x"}),
          403, "webhook_not_allowed")
    error(await tenant.client.post("/v1/schedules", json={"cron": "61 * * * *", "job": {
        "command": "x"}}), 400, "invalid_cron")
    error(await tenant.client.post("/v1/schedules", json={"cron": "* * * * *", "timezone": "Mars/X",
                                                          "job": {"command": "x"}}),
          400, "invalid_timezone")
    # Six fields (cronsim's seconds) would fire every second; "localtime" is the host's zone.
    error(await tenant.client.post("/v1/schedules", json={"cron": "* * * * * *", "job": {
        "command": "x"}}), 400, "invalid_cron")
    for zone in ("localtime", "Factory", "posixrules"):
        error(await tenant.client.post("/v1/schedules", json={
            "cron": "* * * * *", "timezone": zone, "job": {"command": "x"}}), 400,
            "invalid_timezone")


async def test_schedule_fires_and_pauses(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/schedules", json={
        "name": "tick", "interval_s": 1, "job": {"command": "echo tick", "ephemeral": True}})
    assert r.status_code == 201, r.text
    sched = r.json()
    assert len(sched["next_run_times"]) == 5 and sched["next_run_at"]

    async def fired() -> bool:
        jobs = (await tenant.client.get(f"/v1/jobs?schedule_id={sched['id']}")).json()["jobs"]
        return any(j["status"] == "succeeded" for j in jobs)

    await eventually(fired, 10)
    paused = (await tenant.client.post(f"/v1/schedules/{sched['id']}/pause")).json()
    assert paused["paused"] and paused["next_run_at"] is None
    resumed = (await tenant.client.post(f"/v1/schedules/{sched['id']}/resume")).json()
    assert not resumed["paused"] and resumed["last_job_id"]
    cron = (await tenant.client.post("/v1/schedules", json={
        "cron": "0 9 * * 1", "timezone": "Europe/Paris", "job": {"command": "true"}})).json()
    assert cron["next_run_times"][0].endswith("T08:00:00.000Z") or \
        cron["next_run_times"][0].endswith("T07:00:00.000Z")
    listed = (await tenant.client.get("/v1/schedules")).json()["schedules"]
    assert {s["id"] for s in listed} >= {sched["id"], cron["id"]}
    for s in (sched, cron):
        assert (await tenant.client.delete(f"/v1/schedules/{s['id']}")).status_code == 200
    error(await tenant.client.get(f"/v1/schedules/{sched['id']}"), 404, "not_found")


async def test_queue_bound_is_429(inproc_root: Path) -> None:
    async with serving(inproc_root / "queue-bound", max_queued_jobs_per_tenant=3) as api:
        t = await api.new_tenant("bounded")
        body = {"command": "true", "ephemeral": True, "run_at": "2099-01-01T00:00:00Z"}
        ids = [(await submit(t, body))["id"] for _ in range(3)]
        r = await t.client.post("/v1/jobs", json=body)
        error(r, 429, "job_queue_full")
        assert int(r.headers["retry-after"]) > 0
        await t.client.post(f"/v1/jobs/{ids[0]}/cancel")
        await submit(t, body)  # room again once one ended
        # a retry is bounded as a submit is (cancel, submit, retry must not grow the queue)
        error(await t.client.post(f"/v1/jobs/{ids[0]}/retry", json={}), 429, "job_queue_full")
        for extreme in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"):
            error(await t.client.post("/v1/jobs", json={**body, "run_at": extreme}), 400,
                  "invalid_run_at")


async def test_schedule_cap_holds_under_concurrent_creates(inproc_root: Path) -> None:
    async with serving(inproc_root / "schedule-cap", max_schedules_per_tenant=3) as api:
        t = await api.new_tenant("racer")
        body = {"interval_s": 3600, "job": {"command": "true", "ephemeral": True}}
        answers = await asyncio.gather(*(t.client.post("/v1/schedules", json=body)
                                         for _ in range(12)))
        assert sorted(r.status_code for r in answers) == [201] * 3 + [429] * 9
        assert len((await t.client.get("/v1/schedules")).json()["schedules"]) == 3


async def test_odd_input_gets_a_clean_answer(tenant: Tenant) -> None:
    job = await submit(tenant, {"command": "true", "ephemeral": True})
    await finished(tenant, job["id"])
    odd: list[tuple[str, str] | tuple[str, str, object]] = [
        ("GET", "/v1/jobs?cursor=" + "A" * 5000), ("GET", "/v1/jobs?limit=0"),
           ("GET", "/v1/jobs?label=nolabel"), ("GET", "/v1/jobs?" + "&".join(
               f"label=k{i}=v" for i in range(40))),
           ("GET", f"/v1/jobs/{job['id']}/stream?from=1:2"),
           ("GET", f"/v1/jobs/{job['id']}/stream?from=" + "9" * 60),
           ("GET", f"/v1/jobs/{job['id']}/logs?attempt=99999999999999999999"),
           ("GET", f"/v1/jobs/{job['id']}/logs?attempt=7"), ("GET", "/v1/jobs/..%2F..%2Fx"),
           ("POST", f"/v1/jobs/{job['id']}/retry", {"resume_from_failed_step": "maybe"}),
           ("POST", "/v1/jobs", {"command": "x", "run_at": "2030-01-01T00:00:00"}),
           ("POST", "/v1/jobs", {"command": "x", "priority": 10**30}),
           ("POST", "/v1/jobs", {"command": "x", "retry": {"jitter": 2}}),
           ("POST", "/v1/jobs", {"command": "x", "webhook": "http://[::1"}),
           ("POST", "/v1/jobs", {"kind": "pipeline.run", "steps": []}),
           ("POST", "/v1/schedules", {"interval_s": 5, "cron": "* * * * *", "job": {
               "command": "x"}}),
           ("POST", "/v1/schedules", {"interval_s": 5, "job": {"command": "x",
                                                                "idempotency_key": "k"}})]
    for method, path, *body in odd:
        r = await tenant.client.request(str(method), str(path), json=body[0] if body else None)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert set(r.json()) == {"error"}, r.text
    r = await tenant.client.get(f"/v1/jobs/{job['id']}/stream?from=" + "1:0:999999")
    assert r.status_code == 200  # past the end of a finished attempt: the rest, then exit


async def test_schedule_overlap_skip_and_queue(tenant: Tenant) -> None:
    async def jobs_of(sid: str) -> list[dict[str, Any]]:
        r = await tenant.client.get(f"/v1/jobs?schedule_id={sid}&limit=200")
        listed: list[dict[str, Any]] = r.json()["jobs"]
        return listed

    skip = (await tenant.client.post("/v1/schedules", json={
        "interval_s": 1, "overlap": "skip", "job": {"command": "sleep 2.5", "ephemeral": True}})).json()
    queue = (await tenant.client.post("/v1/schedules", json={
        "interval_s": 1, "overlap": "queue", "job": {"command": "sleep 1.5",
                                                       "ephemeral": True}})).json()

    async def two_queued() -> bool:
        return len(await jobs_of(queue["id"])) >= 2

    await eventually(two_queued, 10)
    await tenant.client.post(f"/v1/schedules/{skip['id']}/pause")
    await tenant.client.post(f"/v1/schedules/{queue['id']}/pause")
    first, second = (await jobs_of(queue["id"]))[-1], (await jobs_of(queue["id"]))[-2]
    done_second = await finished(tenant, second["id"])
    done_first = await get(tenant, first["id"])
    # The second waited for the first: never both running.
    assert done_second["attempts"][0]["started_at"] >= done_first["ended_at"]
    # Its second tick came while its first run (2.5 s) was going: skipped, not queued.
    assert len(await jobs_of(skip["id"])) == 1
    for sid in (skip["id"], queue["id"]):
        for j in await jobs_of(sid):
            await tenant.client.post(f"/v1/jobs/{j['id']}/cancel")
        await tenant.client.delete(f"/v1/schedules/{sid}")


async def test_schedule_queue_overlap_keeps_one_run_waiting(tenant: Tenant) -> None:
    sched = (await tenant.client.post("/v1/schedules", json={
        "interval_s": 1, "overlap": "queue", "job": {"command": "sleep 30",
                                                      "ephemeral": True}})).json()

    async def listed() -> list[dict[str, Any]]:
        r = await tenant.client.get(f"/v1/jobs?schedule_id={sched['id']}")
        jobs: list[dict[str, Any]] = r.json()["jobs"]
        return jobs

    async def one_running() -> bool:
        return any(j["status"] == "running" for j in await listed())

    await eventually(one_running, 10)
    await asyncio.sleep(3.5)  # three more ticks while the first still runs
    statuses = sorted(j["status"] for j in await listed())
    assert statuses == ["queued", "running"], statuses
    await tenant.client.delete(f"/v1/schedules/{sched['id']}")
    for j in await listed():
        await tenant.client.post(f"/v1/jobs/{j['id']}/cancel")
