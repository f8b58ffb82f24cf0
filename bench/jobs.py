"""Jobs (issue 14): how soon a queued job starts, and what the queue costs in throughput.

Run as root: `.venv/bin/python bench/jobs.py [-n 100] [--jobs 1000]`. Prints one table.

  1. queue-to-start latency on an idle server: a `sandbox.exec` job of `true` in a
     workspace whose session is running, submitted one at a time; from the job's
     `created_at` to its command's `started_at` (both the server's clock). Goal: p50
     and p99 under 20 ms. Floor: a background command started directly in the same
     session (POST /v1/sessions/{id}/exec, round trip), which is what a job's start is.
  2. 1,000 short jobs (`true`, one workspace) through a pool of 4 workers (one tenant
     may use all 4 here),
     submitted by 4 client threads, beside the same 1,000 commands run directly through
     POST /v1/exec by 4 client threads. Two ways: the pool draining a queue of 1,000
     jobs all stored before the first starts (first start to last end, server clock),
     and jobs submitted while the pool runs (first submission to last end: the same
     server also answers the 1,000 submissions meanwhile). Goal: jobs within 1.5x of
     direct exec.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

from _common import pct, running_server  # noqa: E402

WORKSPACE = "bench-jobs"
CLIENTS = 4


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def wait_done(c: httpx.Client, job_id: str) -> dict[str, object]:
    while True:
        job: dict[str, object] = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.005)


def latency(c: httpx.Client, n: int) -> tuple[list[float], list[float]]:
    """(queue-to-start ms per job, direct background-start ms per command)."""
    sid = c.post("/v1/exec", json={"workspace": WORKSPACE, "command": "true"}).json()["session_id"]
    out = []
    for i in range(n + 5):
        job = c.post("/v1/jobs", json={"workspace": WORKSPACE, "command": "true"}).json()
        done = wait_done(c, str(job["id"]))
        attempt = done["attempts"][0]  # type: ignore[index]
        cmd = c.get(f"/v1/sessions/{attempt['session_id']}/commands/{attempt['command_id']}").json()
        if i >= 5:  # warm-up
            out.append((ts(cmd["started_at"]) - ts(str(done["created_at"]))) * 1000)
    floor = []
    for i in range(n + 5):
        t = time.perf_counter()
        r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "true", "background": True})
        assert r.status_code == 201, r.text
        if i >= 5:
            floor.append((time.perf_counter() - t) * 1000)
    return out, floor


def submit_all(srv_url: str, key: str, total: int, label: str,
               run_at: str | None = None) -> float:
    """Submit `total` jobs from CLIENTS threads; seconds it took."""
    body: dict[str, object] = {"workspace": WORKSPACE, "command": "true", "labels": {"run": label}}
    if run_at:
        body["run_at"] = run_at

    def submit(count: int) -> None:
        with httpx.Client(base_url=srv_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as c:
            for _ in range(count):
                assert c.post("/v1/jobs", json=body).status_code == 201

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(submit, [total // CLIENTS] * CLIENTS))
    return time.perf_counter() - started


def finished_jobs(srv_url: str, key: str, total: int, label: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=srv_url, headers={"Authorization": f"Bearer {key}"},
                      timeout=60) as c:
        while any(c.get("/v1/jobs", params={"status": s, "limit": 1}).json()["jobs"]
                  for s in ("queued", "running")):
            time.sleep(0.2)
        jobs: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = c.get("/v1/jobs", params={"label": f"run={label}", "limit": 200,
                                             **({"cursor": cursor} if cursor else {})}).json()
            jobs += page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert len(jobs) == total and all(j["status"] == "succeeded" for j in jobs)
    return jobs


def through_jobs(srv_url: str, key: str, total: int) -> tuple[float, float, float]:
    """(seconds from the first submission to the last job's end, with submissions
    going on meanwhile; the seconds the submissions took; seconds the pool took to
    drain a queue of `total` jobs that were all queued before the first started)."""
    submitted = submit_all(srv_url, key, total, "live")
    jobs = finished_jobs(srv_url, key, total, "live")
    live = max(ts(j["ended_at"]) for j in jobs) - min(ts(j["created_at"]) for j in jobs)
    start = datetime.now(UTC) + timedelta(seconds=2 * submitted + 1)
    submit_all(srv_url, key, total, "queued", start.isoformat().replace("+00:00", "Z"))
    jobs = finished_jobs(srv_url, key, total, "queued")
    drain = max(ts(j["ended_at"]) for j in jobs) - min(ts(j["started_at"]) for j in jobs)
    return live, submitted, drain


def through_exec(srv_url: str, key: str, total: int) -> float:
    def run(count: int) -> None:
        with httpx.Client(base_url=srv_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as c:
            for _ in range(count):
                r = c.post("/v1/exec", json={"workspace": WORKSPACE, "command": "true"})
                assert r.json()["exit_code"] == 0, r.text

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run, [total // CLIENTS] * CLIENTS))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100, help="jobs for the latency row")
    ap.add_argument("--jobs", type=int, default=1000, help="jobs for the throughput row")
    args = ap.parse_args()
    with running_server({"CHASER_JOB_WORKERS": "4",
                         "CHASER_MAX_RUNNING_JOBS_PER_TENANT": "4"}) as srv:
        assert srv.admin_key is not None
        with srv.client() as c:
            lat, floor = latency(c, args.n)
        exec_s = through_exec(srv.url, srv.admin_key, args.jobs)
        live_s, submit_s, drain_s = through_jobs(srv.url, srv.admin_key, args.jobs)
    n = args.jobs
    print(f"{'measure':<60} {'chaser':>10} {'floor':>10} {'goal':>12}")
    print(f"{'queue-to-start p50 (ms)':<60} {statistics.median(lat):>10.1f} "
          f"{statistics.median(floor):>10.1f} {'< 20':>12}")
    print(f"{'queue-to-start p99 (ms)':<60} {pct(lat, 99):>10.1f} {pct(floor, 99):>10.1f} "
          f"{'< 20':>12}")
    print(f"{f'{n} queued jobs drained by a pool of 4 (s) | /v1/exec x4':<60} {drain_s:>10.2f} "
          f"{exec_s:>10.2f} {'<= 1.5x':>12}")
    print(f"{'  ratio':<60} {drain_s / exec_s:>10.2f}")
    print(f"{f'{n} jobs submitted while the pool runs (s) | /v1/exec x4':<60} {live_s:>10.2f} "
          f"{exec_s:>10.2f}")
    print(f"{'  ratio (the same server also answers the submissions)':<60} {live_s / exec_s:>10.2f}")
    print(f"{'  of which submitting (s)':<60} {submit_s:>10.2f}")


if __name__ == "__main__":
    main()
