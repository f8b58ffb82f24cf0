"""Fair share under load (issue 9): mixed operations from many clients, with and without
one tenant flooding the server at the same time.

Run as root: `.venv/bin/python bench/load.py [--seconds 60] [--clients 50] [--think-ms 100]`.
Each client pauses `--think-ms` between requests, as real clients do (with none, 50
clients saturate 2 cores on their own and the run measures queueing, not fairness). A server of
its own on loopback; four ordinary tenants share `--clients` concurrent clients doing
session exec, one-shot exec, workspace exec, background + stream, listing, and session
create + delete. The run is made twice: alone, then beside a fifth tenant that floods
with 100 concurrent one-shot runs from a process of its own. Prints per operation count, errors, p50 and p99 for
both runs, the flooder's outcome, and the server's CPU and RSS. Goal: no errors but
the flooder's documented 429s, and the others' p99 within 2x of the run alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing import Process, Queue

import httpx
from _common import pct, running_server

SMALL = {"memory_mb": 256}
FLOODERS = 100  # concurrent one-shot runs the flooding tenant keeps asking for


@dataclass
class Stats:
    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    codes: dict[int, int] = field(default_factory=lambda: defaultdict(int))


async def timed(stats: Stats, op: str, call: object) -> httpx.Response | None:
    t = time.perf_counter()
    try:
        r = await call  # type: ignore[misc]
    except httpx.HTTPError as e:
        stats.errors[op].append(type(e).__name__)
        return None
    stats.ms[op].append((time.perf_counter() - t) * 1000)
    stats.codes[r.status_code] += 1
    if r.status_code >= 300:
        stats.errors[op].append(f"{r.status_code} {r.text[:80]}")
    return r  # type: ignore[no-any-return]


async def worker(c: httpx.AsyncClient, workspace: str, stats: Stats, until: float,
                 think_s: float) -> None:
    sid = (await c.post("/v1/sessions", json={"limits": SMALL})).json()["id"]
    rng = random.Random()
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(0, 2 * think_s))
        op = rng.choices(["session", "one_shot", "workspace", "background", "list", "create"],
                         weights=[30, 15, 20, 10, 15, 10])[0]
        if op == "session":
            await timed(stats, op, c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo hi"}))
        elif op == "one_shot":
            await timed(stats, op, c.post("/v1/exec", json={
                "ephemeral": True, "command": "echo hi", "limits": SMALL}))
        elif op == "workspace":
            await timed(stats, op, c.post("/v1/exec", json={
                "workspace": workspace, "command": "echo hi >> log; wc -l < log"}))
        elif op == "background":
            t = time.perf_counter()
            started = await c.post(f"/v1/sessions/{sid}/exec", json={
                "command": "for i in 1 2 3; do echo $i; sleep 0.05; done", "background": True})
            if started.status_code != 201:
                stats.errors[op].append(f"{started.status_code} {started.text[:80]}")
                continue
            cid = started.json()["command_id"]
            async with c.stream("GET", f"/v1/sessions/{sid}/commands/{cid}"
                                       "/stream") as s:
                body = b"".join([chunk async for chunk in s.aiter_bytes()])
            if b"event: exit" not in body:
                stats.errors[op].append("stream ended without exit")
            stats.ms[op].append((time.perf_counter() - t) * 1000)
        elif op == "list":
            await timed(stats, op, c.get("/v1/sessions", params={"status": "running"}))
        else:
            r = await timed(stats, op, c.post("/v1/sessions", json={"limits": SMALL}))
            if r is not None and r.status_code == 201:
                await timed(stats, "delete", c.delete(f"/v1/sessions/{r.json()['id']}"))


def machine_busy() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU so far, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def server_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, RSS bytes) of the server process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return cpu, rss


def flood_process(url: str, key: str, seconds: float, out: Queue[dict[int, int]]) -> None:
    """The flooding tenant, in a process of its own, on raw keep-alive connections: it
    stands for another party, and a client of its own as costly as httpx would take the
    CPU of this 2-core machine from the server instead of flooding it (`wrk` is what
    one would use from another machine)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"ephemeral": True, "command": "sleep 1", "limits": SMALL}).encode()
    request = (f"POST /v1/exec HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    codes: dict[int, int] = defaultdict(int)

    async def one(until: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < until:
                writer.write(request)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                codes[status] += 1
                await asyncio.sleep(0.01)
        finally:
            writer.close()

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(one(until) for _ in range(FLOODERS)))

    asyncio.run(main())
    out.put(dict(codes))


async def phase(url: str, keys: list[str], flood_key: str | None, seconds: float,
                clients: int, think_s: float) -> tuple[Stats, dict[int, int]]:
    until = time.monotonic() + seconds
    others = Stats()
    limits = httpx.Limits(max_connections=200)
    cs = [httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {k}"},
                            timeout=120, limits=limits) for k in keys]
    codes: Queue[dict[int, int]] = Queue()
    flooder = (Process(target=flood_process, args=(url, flood_key, seconds, codes))
               if flood_key else None)
    if flooder is not None:
        flooder.start()
    try:
        await asyncio.gather(*(worker(cs[i % len(cs)], f"ws{i % len(cs)}", others, until, think_s)
                               for i in range(clients)))
    finally:
        for c in cs:
            await c.aclose()
    flood_codes = codes.get() if flooder is not None else {}
    if flooder is not None:
        flooder.join()
    return others, flood_codes


def table(alone: Stats, flooded: Stats) -> None:
    print(f"  {'operation':<12}{'count':>8}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}"
          f"   | with flood:{'count':>7}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}{'p99 x':>8}")
    worst = 0.0
    for op in sorted(set(alone.ms) | set(flooded.ms)):
        a, f = alone.ms.get(op, []), flooded.ms.get(op, [])
        ratio = pct(f, 99) / pct(a, 99) if a and f else 0.0
        worst = max(worst, ratio)
        print(f"  {op:<12}{len(a):>8}{len(alone.errors.get(op, [])):>8}"
              f"{pct(a, 50) if a else 0:>10.1f}{pct(a, 99) if a else 0:>10.1f}   |"
              f"{'':>12}{len(f):>7}{len(flooded.errors.get(op, [])):>8}"
              f"{pct(f, 50) if f else 0:>10.1f}{pct(f, 99) if f else 0:>10.1f}{ratio:>8.2f}")
    print(f"  worst p99 ratio (flooded / alone): {worst:.2f}  (goal: <= 2)")
    for label, stats in (("alone", alone), ("with flood", flooded)):
        for op, errs in stats.errors.items():
            print(f"  errors {label} {op}: {len(errs)}, e.g. {errs[0]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--think-ms", type=float, default=100)
    args = ap.parse_args()
    with running_server() as srv:
        assert srv.proc is not None
        with srv.client() as admin:
            keys = [admin.post("/v1/keys", json={"name": f"t{i}"}).json()["key"]
                    for i in range(5)]
        results = []
        for flood_key in (None, keys[4]):
            cpu0, _ = server_usage(srv.proc.pid)
            busy0 = machine_busy()
            t = time.monotonic()
            others, flooder = asyncio.run(phase(srv.url, keys[:4], flood_key, args.seconds,
                                                args.clients, args.think_ms / 1000))
            cpu1, rss = server_usage(srv.proc.pid)
            busy1 = machine_busy()
            wall = time.monotonic() - t
            print(f"{'with' if flood_key else 'without'} flood: {args.clients} clients "
                  f"(think {args.think_ms:g} ms), "
                  f"{wall:.0f} s, server CPU {100 * (cpu1 - cpu0) / wall:.0f}% of one core, "
                  f"RSS {rss / 2**20:.0f} MiB; the machine's CPUs "
                  f"{100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]):.0f}% busy")
            if flood_key:
                print(f"  flooder: {flooder} (429 = refused at its share)")
            with srv.client() as admin:
                pool = [line for line in admin.get("/metrics").text.splitlines()
                        if line.startswith("chaser_warm_pool_total")]
            print(f"  warm pool so far: {'; '.join(pool)}")
            results.append(others)
        table(*results)


if __name__ == "__main__":
    main()
