"""Streaming speed and size, beside the raw floor (issue 3, "Speed and size").

Run as root: `.venv/bin/python bench/bench_stream.py`. Prints
  - first byte: a background command prints its own `time.time()` every 20 ms while a
    stream client is already connected; latency = receive time - printed time (the
    sandbox shares the host clock). Floor: the same printer as a local subprocess read
    through a pipe;
  - throughput: a foreground exec writing 1 GB to stdout (MB/s and the server's RSS,
    idle and peak), beside `head -c 1e9 /dev/zero | cat > /dev/null`; and 200 MB of a
    background command's text output streamed over SSE to a live client (median of 3);
  - fan-in: 200 background commands each printing a line a second, each with its own
    streaming client: the server's CPU (fraction of one core) over a 10 s steady-state
    window, whether every client got every line, line latency under that load, and how
    long `GET /healthz` (from a process of its own) waits meanwhile: event-loop stalls;
  - fan-out: 100 stream clients on one command (every client gets every line);
  - `docker exec` / `docker logs -f` equivalents where a Docker engine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
from httpx_sse import aconnect_sse, connect_sse

from _common import docker_available, docker_image, pct, running_server

TICK = os.sysconf("SC_CLK_TCK")
PRINTER = ("import time\n"
           "for _ in range({n}):\n"
           "    print(repr(time.time()), flush=True)\n"
           "    time.sleep(0.02)\n")
MB = 1e6


def printer_cmd(n: int) -> str:
    return "python3 -c " + shlex.quote(PRINTER.format(n=n))


def ms_line(name: str, ms: list[float]) -> float:
    p50 = pct(ms, 50)
    print(f"  {name:<52} p50 {p50:7.2f} ms   p90 {pct(ms, 90):7.2f} ms   max {max(ms):7.2f} ms   (n={len(ms)})")
    return p50


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """utime+stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class RssSampler:
    """Samples a process's VmRSS every few ms on a thread; `.peak` in kB."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


PINGER = """
import sys, time, httpx
with httpx.Client(base_url=sys.argv[1], timeout=30) as c:
    while True:
        sent, t = time.time(), time.perf_counter()
        c.get("/healthz")
        print(sent, (time.perf_counter() - t) * 1000, flush=True)
        time.sleep(0.02)
"""


class HealthPinger:
    """GET /healthz every 20 ms from a process of its own (so the bench's own event loop
    cannot delay it): how long the server takes to answer, and when."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, float]] = []  # (time.time() sent, ms)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HealthPinger:
        self.proc = subprocess.Popen([sys.executable, "-c", PINGER, self.url], stdout=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        for line in out.decode().splitlines():
            sent, ms = line.split()
            self.samples.append((float(sent), float(ms)))


class LineClock:
    """Splits a byte/text stream into lines; stamps each complete line with `now`."""

    def __init__(self) -> None:
        self.buf = ""
        self.lat_ms: list[float] = []
        self.lines: list[str] = []

    def feed(self, text: str, now: float) -> None:
        self.buf += text
        *done, self.buf = self.buf.split("\n")
        for line in done:
            self.lines.append(line)
            stamp = line.split()[-1] if line.strip() else ""
            try:
                self.lat_ms.append((now - float(stamp)) * 1000)
            except ValueError:
                pass


def iso_s(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------- first byte

def first_byte_floor(n: int) -> float:
    p = subprocess.Popen(["python3", "-c", PRINTER.format(n=n)], stdout=subprocess.PIPE)
    clock = LineClock()
    assert p.stdout
    for raw in p.stdout:
        clock.feed(raw.decode(), time.time())
    p.wait(30)
    return ms_line("floor: local subprocess read through a pipe", clock.lat_ms)


def first_byte_api(c: httpx.Client, sid: str, n: int) -> float:
    # The printer waits 1 s so the stream client is connected before the first line.
    r = c.post(f"/v1/sessions/{sid}/exec",
               json={"command": "sleep 1; " + printer_cmd(n), "background": True})
    r.raise_for_status()
    cid = r.json()["command_id"]
    clock = LineClock()
    exit_seen = False
    with connect_sse(c, "GET", f"/v1/sessions/{sid}/commands/{cid}/stream", params={"from": 0}) as es:
        for ev in es.iter_sse():
            now = time.time()
            if ev.event == "output":
                clock.feed(json.loads(ev.data)["data"], now)
            elif ev.event == "exit":
                exit_seen = True
                break
    assert exit_seen and len(clock.lat_ms) == n, (exit_seen, len(clock.lat_ms))
    return ms_line("SSE stream client, already connected", clock.lat_ms)


# ---------------------------------------------------------------------------- throughput

def throughput_floor() -> float:
    t = time.perf_counter()
    subprocess.run(["sh", "-c", "head -c 1000000000 /dev/zero | cat > /dev/null"], check=True)
    rate = 1e9 / MB / (time.perf_counter() - t)
    print(f"  {'floor: head -c 1e9 /dev/zero | cat > /dev/null':<52} {rate:8.0f} MB/s")
    return rate


def throughput_api(srv, c: httpx.Client, sid: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    pid = srv.proc.pid
    time.sleep(1)
    idle = rss_kb(pid)
    with RssSampler(pid) as s:
        t = time.perf_counter()
        r = c.post(f"/v1/sessions/{sid}/exec", timeout=120,
                   json={"command": "head -c 1000000000 /dev/zero", "max_output_bytes": 1024})
        wall = time.perf_counter() - t
    body = r.json()
    assert r.status_code == 200 and body["exit_code"] == 0, body
    assert body["output_size"] == 1_000_000_000, body["output_size"]
    rate = 1e9 / MB / wall
    print(f"  {'POST .../exec head -c 1e9 /dev/zero (foreground)':<52} {rate:8.0f} MB/s   "
          f"({wall:.2f} s)")
    print(f"  {'server RSS':<52} idle {idle / 1024:6.1f} MB   peak {s.peak / 1024:6.1f} MB   "
          f"(+{(s.peak - idle) / 1024:.1f} MB)")
    return {"rate": rate, "idle_mb": idle / 1024, "delta_mb": (s.peak - idle) / 1024}


def sse_throughput(srv, c: httpx.Client, sid: str, size: int = 200_000_000) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """A live client streaming `size` bytes of text written by a background command."""
    pid = srv.proc.pid
    idle = rss_kb(pid)
    line = "x" * 99  # 100-byte lines of text (NUL bytes would be JSON-escaped 6x)
    cmd = f"sleep 1; yes {line} | head -c {size}"
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": cmd, "background": True})
    r.raise_for_status()
    cid = r.json()["command_id"]
    got = 0
    first = last_offset = None
    exit_ev = None
    contiguous = True
    cpu0, me0 = cpu_s(pid), time.process_time()
    with RssSampler(pid) as s, connect_sse(
            c, "GET", f"/v1/sessions/{sid}/commands/{cid}/stream", params={"from": 0},
            timeout=httpx.Timeout(60)) as es:
        for ev in es.iter_sse():
            if ev.event == "output":
                d = json.loads(ev.data)
                if first is None:
                    first = time.perf_counter()
                if last_offset is not None and d["offset"] != last_offset:
                    contiguous = False
                n = len(d["data"].encode())
                last_offset = d["offset"] + n
                got += n
            elif ev.event == "exit":
                exit_ev = json.loads(ev.data)
                break
        end = time.perf_counter()
    cpu1, me1 = cpu_s(pid), time.process_time()
    assert exit_ev is not None and first is not None
    info = c.get(f"/v1/sessions/{sid}/commands/{cid}", params={"limit": 0}).json()
    rate = got / MB / (end - first)
    note = "" if got == size and contiguous else f"   INCOMPLETE: {got} of {size} bytes, contiguous={contiguous}"
    print(f"  {'SSE stream of a 200 MB background command (live)':<52} {rate:8.0f} MB/s   "
          f"({end - first:.2f} s, RSS +{(s.peak - idle) / 1024:.1f} MB){note}")
    print(f"    server CPU {cpu1 - cpu0:.2f} s, bench client CPU {me1 - me0:.2f} s; the command ran "
          f"{iso_s(info['ended_at']) - iso_s(info['started_at']):.2f} s, output_start "
          f"{info['output_start']} (bytes the log dropped)")
    return {"rate": rate, "complete": float(got == size and contiguous)}


# ---------------------------------------------------------------------------- fan-out

async def fan_out(srv, clients: int, lines: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Many clients streaming one command: every client gets every line, and when."""
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    headers = {"Authorization": f"Bearer {srv.admin_key}"}
    async with httpx.AsyncClient(base_url=srv.url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(60)) as ac:
        sid = (await ac.post("/v1/sessions", json={})).json()["id"]
        try:
            cmd = (f"sleep 2; i=1; while [ $i -le {lines} ]; do "
                   f"echo \"$i $(date +%s.%N)\"; i=$((i+1)); sleep 0.1; done")
            r = await ac.post(f"/v1/sessions/{sid}/exec", json={"command": cmd, "background": True})
            r.raise_for_status()
            cid = r.json()["command_id"]
            clocks = [LineClock() for _ in range(clients)]

            async def follow(clock: LineClock) -> bool:
                async with aconnect_sse(ac, "GET", f"/v1/sessions/{sid}/commands/{cid}/stream",
                                        params={"from": 0}) as es:
                    async for ev in es.aiter_sse():
                        if ev.event == "output":
                            clock.feed(json.loads(ev.data)["data"], time.time())
                        elif ev.event == "exit":
                            return True
                return False

            res = await asyncio.gather(*(follow(k) for k in clocks), return_exceptions=True)
        finally:
            await ac.delete(f"/v1/sessions/{sid}")
    want = [str(i) for i in range(1, lines + 1)]
    complete = sum(1 for k in clocks if [ln.split()[0] for ln in k.lines if ln] == want)
    errors = [x for x in res if isinstance(x, BaseException)]
    print(f"  {f'{clients} clients on one command: got every line':<52} {complete:5d} / {clients}   "
          f"(exit events: {sum(1 for x in res if x is True)}; errors: {len(errors)})")
    ms_line(f"line latency, {clients} clients on one command", [x for k in clocks for x in k.lat_ms])
    return {"complete": complete, "total": clients}


# ---------------------------------------------------------------------------- fan-in

async def fan_in(srv, sessions: int, per_session: int, lines: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    total = sessions * per_session
    pid = srv.proc.pid
    limits = httpx.Limits(max_connections=total + 50, max_keepalive_connections=total + 50)
    headers = {"Authorization": f"Bearer {srv.admin_key}"}
    pinger = HealthPinger(srv.url)
    async with httpx.AsyncClient(base_url=srv.url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(60)) as ac:
        sids = []
        try:
            for _ in range(sessions):
                r = await ac.post("/v1/sessions", json={})
                r.raise_for_status()
                sids.append(r.json()["id"])
            results: list[LineClock] = []
            exits: list[dict[str, object] | None] = []
            connected = 0

            async def follow(sid: str, cid: str, clock: LineClock, k: int) -> None:
                nonlocal connected
                async with aconnect_sse(ac, "GET", f"/v1/sessions/{sid}/commands/{cid}/stream",
                                        params={"from": 0}) as es:
                    connected += 1
                    async for ev in es.aiter_sse():
                        if ev.event == "output":
                            clock.feed(json.loads(ev.data)["data"], time.time())
                        elif ev.event == "exit":
                            exits[k] = json.loads(ev.data)
                            return

            # Every command waits until a common start time (so the window below is all
            # steady state), then prints at its own phase within the second.
            setup_s = 8.0
            t0 = time.time() + setup_s
            tasks = []
            pinger.__enter__()
            t_setup = time.perf_counter()
            for k in range(total):
                sid = sids[k % sessions]
                phase = (k % 100) / 100
                delay = max(0.0, t0 + phase - time.time())
                cmd = (f"sleep {delay:.3f}; i=1; while [ $i -le {lines} ]; do "
                       f"echo \"$i $(date +%s.%N)\"; i=$((i+1)); sleep 1; done")
                r = await ac.post(f"/v1/sessions/{sid}/exec", json={"command": cmd, "background": True})
                r.raise_for_status()
                clock = LineClock()
                results.append(clock)
                exits.append(None)
                tasks.append(asyncio.create_task(follow(sid, r.json()["command_id"], clock, k)))
            while connected < total and time.perf_counter() - t_setup < 30:
                await asyncio.sleep(0.05)
            setup = time.perf_counter() - t_setup
            print(f"  started {total} commands in {sessions} sessions and connected {connected} "
                  f"stream clients in {setup:.1f} s")
            # Steady state: from t0 + 2.5 s, a 10 s window.
            await asyncio.sleep(max(0.0, t0 + 2.5 - time.time()))
            load0 = os.getloadavg()[0]
            c0, me0, w0 = cpu_s(pid), time.process_time(), time.perf_counter()
            lines0 = sum(len(c.lines) for c in results)
            await asyncio.sleep(10)
            c1, me1, w1 = cpu_s(pid), time.process_time(), time.perf_counter()
            lines1 = sum(len(c.lines) for c in results)
            window = w1 - w0
            server_cores = (c1 - c0) / window
            done, pending = await asyncio.wait(tasks, timeout=lines + setup_s + 30)
            for t in pending:
                t.cancel()
            errors = [t.exception() for t in done if t.exception()]
        finally:
            pinger.__exit__()
            for sid in sids:
                await ac.delete(f"/v1/sessions/{sid}")
    want = [str(i) for i in range(1, lines + 1)]
    complete = sum(1 for c in results if [ln.split()[0] for ln in c.lines if ln] == want)
    clean_exit = sum(1 for e in exits if e and e.get("exit_code") == 0)
    lat = [x for c in results for x in c.lat_ms]
    print(f"  {'server CPU over a 10 s steady-state window':<52} {server_cores:8.3f} cores   "
          f"({(lines1 - lines0) / window:.0f} lines/s delivered; bench client "
          f"{(me1 - me0) / window:.2f} cores; load avg {load0:.2f})")
    print(f"  {'clients that received every line, in order':<52} {complete:5d} / {total}   "
          f"(exit events with code 0: {clean_exit}; client errors: {len(errors)}; "
          f"pending: {len(pending)})")
    if errors:
        print(f"    first client error: {errors[0]!r}")
    if lat:
        ms_line("line latency under this load (date +%s.%N)", lat)
        by_line: dict[int, list[float]] = {}
        for c in results:
            for ln, ms in zip(c.lines, c.lat_ms):
                by_line.setdefault(int(ln.split()[0]), []).append(ms)
        print("    p99 by line number: " + " ".join(f"{i}:{pct(v, 99):.0f}" for i, v in sorted(by_line.items())))
    ms_line("GET /healthz every 20 ms meanwhile (own process)", [ms for _, ms in pinger.samples])
    slow = [(t - t0, ms) for t, ms in pinger.samples if ms > 50]
    if slow:
        print("    /healthz over 50 ms at (s from the common start, ms): "
              + " ".join(f"{t:+.1f}:{ms:.0f}" for t, ms in slow[:12]))
    return {"cores": server_cores, "complete": complete, "total": total}


# ---------------------------------------------------------------------------- docker

def docker(n: int) -> None:
    if not docker_available():
        print("  docker: no Docker engine running here (`docker info` fails), so no "
              "docker exec / docker logs -f figures")
        return
    name = "chaser-bench-stream"
    image = docker_image()
    subprocess.run(["docker", "run", "-d", "--name", name, image, "sleep", "600"],
                   check=True, capture_output=True)
    try:
        # docker exec: the printer's stdout through the exec attach stream.
        p = subprocess.Popen(["docker", "exec", name, "python3", "-c", PRINTER.format(n=n)],
                             stdout=subprocess.PIPE)
        clock = LineClock()
        assert p.stdout
        for raw in p.stdout:
            clock.feed(raw.decode(), time.time())
        p.wait(60)
        ms_line("docker exec printer (first byte)", clock.lat_ms)
        # docker logs -f: a container whose main process is the printer, after a 1 s wait.
        subprocess.run(["docker", "run", "-d", "--name", name + "-logs", image,
                        "sh", "-c", "sleep 2; " + printer_cmd(n)], check=True, capture_output=True)
        try:
            p = subprocess.Popen(["docker", "logs", "-f", name + "-logs"], stdout=subprocess.PIPE)
            clock = LineClock()
            assert p.stdout
            for raw in p.stdout:
                clock.feed(raw.decode(), time.time())
            p.wait(60)
            ms_line("docker logs -f printer (first byte)", clock.lat_ms)
        finally:
            subprocess.run(["docker", "rm", "-f", name + "-logs"], capture_output=True)
        t = time.perf_counter()
        subprocess.run(["docker", "exec", name, "head", "-c", "1000000000", "/dev/zero"],
                       check=True, stdout=subprocess.DEVNULL)
        rate = 1e9 / MB / (time.perf_counter() - t)
        print(f"  {'docker exec head -c 1e9 /dev/zero > /dev/null':<52} {rate:8.0f} MB/s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


# ---------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="lines printed by the first-byte printer")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--per-session", type=int, default=20)
    parser.add_argument("--lines", type=int, default=15, help="lines per fan-in command (one a second)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the server needs it)")
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("first byte (a background command printing time.time() every 20 ms)")
    fb_floor = first_byte_floor(args.n)
    with running_server() as srv, srv.client(timeout=60) as c:
        sid = c.post("/v1/sessions", json={}).json()["id"]
        try:
            fb = first_byte_api(c, sid, args.n)
            print("throughput (1 GB of stdout)")
            tp_floor = throughput_floor()
            tp = throughput_api(srv, c, sid)
            sse_runs = [sse_throughput(srv, c, sid) for _ in range(3)]
            sse = sorted(sse_runs, key=lambda r: r["rate"])[1]
        finally:
            c.delete(f"/v1/sessions/{sid}")
        print(f"fan-in ({args.sessions * args.per_session} background commands, a line a second, "
              f"a stream client each)")
        fan = asyncio.run(asyncio.wait_for(
            fan_in(srv, args.sessions, args.per_session, args.lines), args.lines + 120))
        print("fan-out (one command, many stream clients)")
        fo = asyncio.run(asyncio.wait_for(fan_out(srv, 100, 50), 90))
    print("docker")
    docker(args.n)
    print("targets")
    print(f"  first byte p50 = {fb:.2f} ms (floor {fb_floor:.2f} ms)  (target <= 20)")
    print(f"  1 GB capture = {tp['rate']:.0f} MB/s (floor {tp_floor:.0f} MB/s)  (target >= 200); "
          f"SSE median of 3: {sse['rate']:.0f} MB/s")
    print(f"  server RSS +{tp['delta_mb']:.1f} MB over idle {tp['idle_mb']:.1f} MB during the 1 GB run  "
          f"(target <= 100)")
    print(f"  fan-in server CPU = {fan['cores']:.3f} cores, {fan['complete']}/{fan['total']} clients "
          f"got every line  (target < 1.0, all)")
    print(f"  fan-out: {fo['complete']}/{fo['total']} clients of one command got every line  (target all)")


if __name__ == "__main__":
    main()
