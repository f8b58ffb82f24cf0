"""CPU fair share: sandbox starts are taken in turn by tenant, and the CPU inside
sandboxes is split between tenants, not between processes."""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from pathlib import Path

import httpx

from tests.server.test_fair_share import new_key, own_server

BURN = ("python3 -c \"import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"
        "print(round(time.process_time(), 2))\"")


def test_a_tenants_start_goes_ahead_of_another_tenants_queue(tmp_root: Path) -> None:
    """One start at a time, and a flooder keeping 30 session starts waiting: each of its
    sessions waits for the 29 before it, while another tenant's goes at the next turn.
    Served first come, first served, both would wait alike."""
    srv = own_server(tmp_root, CHASER_CONCURRENT_STARTS="1", CHASER_WARM_POOL="0")
    try:
        flooder = srv.client(new_key(srv)[0])
        other = srv.client(new_key(srv)[0])
        until = time.monotonic() + 4
        flood_ms: list[float] = []

        def timed(c: httpx.Client) -> float:
            t = time.monotonic()
            r = c.post("/v1/sessions", json={})
            took = (time.monotonic() - t) * 1000
            assert r.status_code == 201, r.text
            c.delete(f"/v1/sessions/{r.json()['id']}")
            return took

        def flood() -> None:
            while time.monotonic() < until:
                flood_ms.append(timed(flooder))

        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            floods = [pool.submit(flood) for _ in range(30)]
            time.sleep(1)  # the flood's queue is full
            mine = []
            for _ in range(5):
                mine.append(timed(other))
                time.sleep(0.2)
            for f in floods:
                f.result()
        theirs = statistics.median(flood_ms[len(flood_ms) // 4:])
        assert statistics.median(mine) * 3 < theirs, (mine, theirs)
    finally:
        srv.stop()


def test_the_cpu_is_split_between_tenants_not_processes(tmp_root: Path) -> None:
    """Eight busy processes of one tenant and one of another on this machine's CPUs:
    the lone process gets its tenant's share (with one CPU per tenant on 2 CPUs, about
    all of one), not a ninth of the machine."""
    srv = own_server(tmp_root, CHASER_WARM_POOL="0")
    try:
        busy = srv.client(new_key(srv)[0], timeout=60)
        lone = srv.client(new_key(srv)[0], timeout=60)
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            hogs = [pool.submit(busy.post, "/v1/exec", json={
                "ephemeral": True, "command": BURN.format(s=4)}) for _ in range(8)]
            time.sleep(0.5)  # the hogs are running
            mine = lone.post("/v1/exec", json={"ephemeral": True, "command": BURN.format(s=2)})
            for h in hogs:
                assert h.result().status_code == 200
        assert mine.status_code == 200, mine.text
        cpu = float(mine.json()["output"])
        # Its tenant's share: about 2 s of CPU in 2 s. Split by process it would get
        # 2 CPUs / 9 processes, about 0.45 s.
        assert cpu >= 1.0, f"the lone process got {cpu} s of CPU in 2 s"
    finally:
        srv.stop()
