"""Exec latency and throughput, beside the raw floor (issue 2).

Run as root: `.venv/bin/python bench/bench_exec.py [-n 200]`. Prints medians of
  - the floor: fork+exec of `true`, a bare bubblewrap sandbox running `true`, a bare
    nsenter join of a running sandbox, and docker run/exec where a Docker engine runs;
  - the API: ephemeral `POST /v1/exec`, session exec, warm workspace exec, and
    session execs per second with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import time

from _common import docker_available, docker_image, report, run_quiet, running_server, timed

BWRAP_TRUE = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
              "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
              "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
              "--", "/bin/true"]


def floor(n: int) -> dict[str, float]:
    print("raw floor")
    res = {"fork_exec": report("fork+exec /bin/true", timed(lambda: run_quiet(["/bin/true"]), n))}
    res["bwrap"] = report("bare bubblewrap sandbox running true", timed(lambda: run_quiet(BWRAP_TRUE), n))
    holder = subprocess.Popen(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--", "sleep", "600"])
    time.sleep(0.3)
    child = int(open(f"/proc/{holder.pid}/task/{holder.pid}/children").read().split()[0])
    join = ["nsenter", "-t", str(child), "-U", "-m", "-p", "-n", "-i", "-u", "--preserve-credentials",
            "-r", "-w", "/bin/true"]
    res["join"] = report("bare nsenter join of a running sandbox", timed(lambda: run_quiet(join), n))
    holder.kill()
    holder.wait()
    if docker_available():
        image = docker_image()
        run_quiet(["docker", "run", "-d", "--name", "chaser-bench", image, "sleep", "600"])
        try:
            report("docker run --rm true", timed(
                lambda: run_quiet(["docker", "run", "--rm", image, "true"]), max(n // 10, 5), 1))
            report("docker exec true", timed(
                lambda: run_quiet(["docker", "exec", "chaser-bench", "true"]), max(n // 4, 10), 2))
        finally:
            run_quiet(["docker", "rm", "-f", "chaser-bench"])
    else:
        print("  docker: no Docker engine running here (measured on the dev machine: "
              "docker run --rm ~370-460 ms, docker exec ~70-100 ms)")
    return res


def api(n: int) -> dict[str, float]:
    res = {}
    with running_server() as srv, srv.client() as c:
        print("through the HTTP API (keep-alive client on loopback)")
        res["health"] = report("GET /healthz (the HTTP round trip alone)", timed(lambda: c.get("/healthz"), n))

        def ephemeral() -> None:
            r = c.post("/v1/exec", json={"ephemeral": True, "command": "true"}).json()
            assert r["exit_code"] == 0, r

        res["ephemeral"] = report("POST /v1/exec ephemeral true, back to back", timed(ephemeral, n))

        def paced() -> None:
            time.sleep(0.15)  # sporadic calls, as an agent makes them: the warm pool refills
            t = time.perf_counter()
            ephemeral()
            paced_ms.append((time.perf_counter() - t) * 1000)

        paced_ms: list[float] = []
        timed(paced, max(n // 4, 20))
        res["ephemeral_paced"] = report("POST /v1/exec ephemeral true, 150 ms apart", paced_ms)
        sid = c.post("/v1/sessions", json={}).json()["id"]

        def session() -> None:
            assert c.post(f"/v1/sessions/{sid}/exec", json={"command": "true"}).json()["exit_code"] == 0

        res["session"] = report("POST /v1/sessions/{id}/exec true", timed(session, n))

        def workspace() -> None:
            assert c.post("/v1/exec", json={"workspace": "bench", "command": "true"}).json()["exit_code"] == 0

        res["workspace"] = report("POST /v1/exec warm workspace true", timed(workspace, n))
        res["per_s"] = concurrency(srv, sid, 8, n * 4)
    return res


def concurrency(srv, sid: str, clients: int, total: int) -> float:  # type: ignore[no-untyped-def]
    per_client = total // clients

    def worker(_: int) -> None:
        with srv.client() as own:
            for _ in range(per_client):
                own.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})

    worker(0)
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    rate = clients * per_client / (time.perf_counter() - t)
    print(f"  {'session execs/s, ' + str(clients) + ' concurrent clients':<48} {rate:8.1f} /s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="runs per measurement")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the server needs it)")
    f = floor(args.n)
    a = api(args.n)
    print("targets")
    print(f"  ephemeral p50 / bare bwrap p50 = {a['ephemeral'] / f['bwrap']:.2f} back to back, "
          f"{a['ephemeral_paced'] / f['bwrap']:.2f} paced  (target <= 1.5)")
    print(f"  session exec p50 = {a['session']:.2f} ms, workspace exec p50 = {a['workspace']:.2f} ms  (target < 8)")
    print(f"  {a['per_s']:.0f} session execs/s with 8 clients  (target >= 150)")


if __name__ == "__main__":
    main()
