"""Jobs survive the server: a kill -9 mid-attempt, a restart, missed schedule ticks."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import datetime

import pytest

from tests.conftest import ServerProcess
from tests.jobs.helpers import FAST_RETRY, finished, get, running_command, submit, wait_for

SLOW_FIRST = ("n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
              "echo attempt $n; if [ $n -eq 1 ]; then sleep 300; fi")


def test_kill_9_mid_attempt_then_restart(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        job = submit(c, {"workspace": "crash", "command": SLOW_FIRST,
                         "retry": {"max_attempts": 3, **FAST_RETRY}})
        queued = submit(c, {"ephemeral": True, "command": "echo later",
                            "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                    time.gmtime(time.time() + 1))})
        running_command(c, job["id"])
    srv.stop(signal.SIGKILL)  # a crash mid-attempt: nothing is cleaned up
    db = sqlite3.connect(srv.data_dir / "chaser.db")
    status = db.execute("SELECT status FROM jobs WHERE id = ?", (job["id"],)).fetchone()[0]
    db.close()
    assert status == "running"  # as the crash left it
    srv.start()
    with srv.client() as c:
        done = finished(c, job["id"])
        assert done["status"] == "succeeded", done
        first, second = done["attempts"]
        assert first["status"] == "failed" and first["end_reason"] == "server_lost"
        assert first["ended_at"] and second["status"] == "succeeded"
        out = c.get(f"/v1/jobs/{job['id']}/logs?attempt=2").json()["entries"][0]["output"]
        assert out == "attempt 2\n"
        # The job queued before the crash is not lost either.
        assert finished(c, queued["id"])["status"] == "succeeded"
        # Nothing left `running`, and no attempt ran twice at once.
        assert c.get("/v1/jobs?status=running").json()["jobs"] == []


def test_crash_out_of_attempts_fails_by_infrastructure(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        job = submit(c, {"ephemeral": True, "command": "sleep 300",
                         "retry": {"max_attempts": 3, "retry_on": ["exit_nonzero"]}})
        running_command(c, job["id"])
    srv.stop(signal.SIGKILL)
    srv.start()
    with srv.client() as c:
        done = finished(c, job["id"], timeout=20)
        assert (done["status"], done["end_reason"]) == ("failed", "server_lost")
        assert len(done["attempts"]) == 1


def test_graceful_stop_requeues_running_job(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        job = submit(c, {"workspace": "graceful", "command": SLOW_FIRST,
                         "retry": {"max_attempts": 2, **FAST_RETRY}})
        running_command(c, job["id"])
    srv.stop(signal.SIGTERM)
    srv.start()
    with srv.client() as c:
        done = finished(c, job["id"])
        assert done["status"] == "succeeded"
        assert done["attempts"][0]["end_reason"] == "server_shutdown"


def test_schedule_fires_and_a_missed_tick_runs_once_after_restart(
        fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        r = c.post("/v1/schedules", json={"interval_s": 3, "name": "tick", "job": {
            "workspace": "ticks", "command": "echo tick >> ticks"}})
        assert r.status_code == 201, r.text
        sched = r.json()
        path = f"/v1/jobs?schedule_id={sched['id']}&limit=200"
        deadline = time.monotonic() + 15
        while not any(j["status"] == "succeeded" for j in c.get(path).json()["jobs"]):
            assert time.monotonic() < deadline, "the schedule never fired"
            time.sleep(0.1)
        assert c.post(f"/v1/schedules/{sched['id']}/pause").json()["paused"]
        before = len(c.get(path).json()["jobs"])
        resumed = c.post(f"/v1/schedules/{sched['id']}/resume").json()  # next run in 3 s
        assert not resumed["paused"] and resumed["next_run_at"]
    srv.stop(signal.SIGKILL)
    time.sleep(10)  # three ticks fall due while the server is down
    srv.start()
    with srv.client() as c:
        deadline = time.monotonic() + 15
        while len(jobs := c.get(path).json()["jobs"]) == before:  # fired at start
            assert time.monotonic() < deadline, "the missed run never fired"
            time.sleep(0.05)
        now = c.get(f"/v1/schedules/{sched['id']}").json()
        # Up to the next tick (3 s after the catch-up run) nothing more: once, not once
        # per missed tick.
        next_at = datetime.fromisoformat(now["next_run_at"]).timestamp()
        time.sleep(max(0.0, next_at - time.time() - 0.5))
        jobs = c.get(path).json()["jobs"]
        assert len(jobs) == before + 1, jobs
        assert finished(c, jobs[0]["id"])["status"] == "succeeded"
        assert now["last_job_id"] == jobs[0]["id"] and len(now["next_run_times"]) == 5
        assert next_at - datetime.fromisoformat(now["last_run_at"]).timestamp() == \
            pytest.approx(3, abs=0.5)  # counted from the catch-up run, not the old ticks
        c.delete(f"/v1/schedules/{sched['id']}")


def test_job_row_is_stored_before_the_answer(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        job = submit(c, {"ephemeral": True, "command": "true",
                         "run_at": "2099-01-01T00:00:00Z"})
    srv.stop(signal.SIGKILL)
    srv.start()
    with srv.client() as c:
        assert get(c, job["id"])["status"] == "queued"
        c.post(f"/v1/jobs/{job['id']}/cancel")


def test_crashed_pipeline_resumes_at_the_interrupted_step(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with srv.client() as c:
        job = submit(c, {"kind": "pipeline.run", "workspace": "resume-crash",
                         "resume_from_failed_step": True,
                         "retry": {"max_attempts": 2, **FAST_RETRY}, "steps": [
                             {"name": "once", "command": "echo x >> ran-once"},
                             {"name": "slow", "command": "[ -e second ] || { touch second; "
                                                         "sleep 300; }"}]})
        wait_for(c, job["id"], lambda j: len(j["attempts"]) == 1 and j["steps"] and
                 j["steps"][1]["status"] == "running")
    srv.stop(signal.SIGKILL)
    srv.start()
    with srv.client() as c:
        done = finished(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["attempts"][0]["end_reason"] == "server_lost"
        assert done["steps"][0]["reused_from_attempt"] == 1
        r = c.post("/v1/exec", json={"workspace": "resume-crash", "command": "wc -l < ran-once"})
        assert r.json()["output"].strip() == "1"
