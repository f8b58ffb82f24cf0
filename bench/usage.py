"""What `?usage=true` costs the session list: 200 running sessions listed with and
without each one's usage (memory, CPU time, processes, disk: a few reads of its cgroup's
files and its disk's counters per session, in one thread hop).

Run as root: `.venv/bin/python bench/usage.py [--sessions 200] [-n 40]`. Prints the
list's latency both ways, one session's `GET /v1/sessions/{id}` (which always carries
it), `GET /v1/usage` (one read of the tenant's cgroup), and the floor: the reads alone
for every session, in this process, on the server's own cgroups.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import report, running_server, timed

from chaser.runtime.cgroups import CgroupManager  # noqa: E402  (after _common's path)
from chaser.runtime.usage import sandbox_usage  # noqa: E402


def reads_floor(data_dir: Path, ids: list[str]) -> list[float]:
    """Every session's cgroup read from here, straight off the files (no HTTP, no models)."""
    mgr = CgroupManager.detect("bench-probe")
    dirs: dict[str, list[Path]] = {}
    for ctrl, root in mgr.roots.items():  # the server's instance dir beside the probe's
        parent = root.parent
        for sid in ids:
            found = list(parent.glob(f"*/*/{sid}"))
            if found:
                dirs.setdefault(sid, []).append(found[0])
    mgr.close()
    controllers = list(mgr.roots)

    def read_all() -> None:
        for sid in ids:
            where = dict(zip(controllers, dirs.get(sid, [])))
            sandbox_usage(where, mgr.version, None, 0)

    return timed(read_all, 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("-n", type=int, default=40)
    args = ap.parse_args()
    with running_server() as srv, srv.client() as c:
        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: c.post("/v1/sessions", json={}).json()["id"],
                                range(args.sessions)))
        print(f"{len(ids)} sessions started in {time.perf_counter() - t:.1f} s")
        with_usage = c.get("/v1/sessions", params={"usage": "true"}).json()["sessions"]
        assert sum(s["usage"] is not None for s in with_usage) == len(ids)
        plain, usage, cached = [], [], []

        def with_usage() -> None:
            c.get("/v1/sessions", params={"usage": "true"}).raise_for_status()

        for _ in range(args.n):  # interleaved: all three see the same load
            time.sleep(1.05)  # past the server's once-a-second reads: every sandbox read
            usage += timed(with_usage, 1, warmup=0)
            cached += timed(with_usage, 1, warmup=0)  # within the second: none read
            plain += timed(lambda: c.get("/v1/sessions").raise_for_status(), 1, warmup=0)
        one = timed(lambda: c.get(f"/v1/sessions/{ids[0]}").raise_for_status(), args.n)
        tenant = timed(lambda: c.get("/v1/usage").raise_for_status(), args.n)
        print(f"{len(ids)} running sessions:")
        base = report("GET /v1/sessions", plain)
        extra = report("GET /v1/sessions?usage=true (every sandbox read)", usage)
        print(f"  {'usage adds':<48}     {extra - base:8.2f} ms "
              f"({(extra - base) * 1000 / len(ids):.0f} us a session)")
        report("GET /v1/sessions?usage=true (read < 1 s ago)", cached)
        report("GET /v1/sessions/{id} (with its usage)", one)
        report("GET /v1/usage (the tenant's cgroup, once)", tenant)
        report(f"floor: the {len(ids)} sessions' reads, in process", reads_floor(
            srv.data_dir, ids))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: c.delete(f"/v1/sessions/{i}"), ids))


if __name__ == "__main__":
    main()
