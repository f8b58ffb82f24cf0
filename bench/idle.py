"""What an idle session costs the host (issue 12, point 3): at most 2 MB all told.

Run as root: `.venv/bin/python bench/idle.py [-n 2000] [--clients 16] [--sample 20]`.
A server of its own on loopback, its limits lifted enough for `-n` sessions of one
tenant (CHASER_* variables already set in the environment win), and no warm pool (so
every sandbox process belongs to a session). After one warm-up session it takes a
baseline, starts `-n` idle sessions from `--clients` concurrent clients, and measures:

  - processes: the summed PSS (smaps_rollup) of every process in the sessions' cgroups,
    by program, and the server's own RSS, fds and threads, each per session;
  - kernel: the /proc/meminfo deltas (Slab, SUnreclaim, KernelStack, PageTables, Shmem,
    Percpu; MemAvailable as the cross-check), the slab caches that grew most, and what
    the sessions' memory cgroups were charged;
  - all told: sandbox PSS + server growth + Slab + KernelStack + PageTables, per session,
    against the 2 MB goal, and how many such sessions MemTotal would hold;
  - start rate, and that all are running (the API's list; `true` in a sample of them).

Then deletes them all and shows MemAvailable coming back. The host's other work shows
in the /proc/meminfo deltas too: run it on a quiet host.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import os
import random
import re
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import pct, running_server

from tests.conftest import ServerProcess

GOAL_KIB = 2048
MEMINFO_KEYS = ("MemAvailable", "MemFree", "Slab", "SReclaimable", "SUnreclaim", "KernelStack",
                "PageTables", "Shmem", "Percpu", "VmallocUsed")
KERNEL_KEYS = ("Slab", "KernelStack", "PageTables")  # the kernel's part of "all told"
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_FAILURES = 50  # creates refused before the run stops asking


# -- reading the host -------------------------------------------------------------------

def meminfo() -> dict[str, int]:
    """/proc/meminfo, in KiB."""
    out: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0])
    return out


def slabinfo() -> dict[str, tuple[int, int]]:
    """(objects in use, object size) per slab cache."""
    out: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        out[f[0]] = (int(f[1]), int(f[3]))
    return out


def num_cgroups() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        f = line.split()
        out[f[0]] = int(f[2])
    return out


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss, Pss, ... of one process, in KiB ({} when it is gone)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            out[name] = int(rest.split()[0])
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass
class ServerStats:
    rss_kib: int
    pss_kib: int
    fds: int
    threads: int
    nofile: int  # soft RLIMIT_NOFILE

    @classmethod
    def of(cls, pid: int) -> ServerStats:
        status = Path(f"/proc/{pid}/status").read_text()
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        limits = Path(f"/proc/{pid}/limits").read_text()
        nofile = re.search(r"^Max open files\s+(\d+)", limits, re.M)
        roll = smaps_rollup(pid)
        return cls(roll.get("Rss", 0), roll.get("Pss", 0), len(os.listdir(f"/proc/{pid}/fd")),
                   threads, int(nofile.group(1)) if nofile else -1)


def instance_dirs(srv: ServerProcess) -> list[Path]:
    """The server's cgroup directories, one per controller hierarchy (see
    ServerProcess.sandbox_processes)."""
    instance = hashlib.sha256(str((srv.data_dir / "runtime").resolve()).encode()).hexdigest()[:12]
    mounts: list[Path] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if f[2] in ("cgroup", "cgroup2"):
            mounts.append(Path(f[1]))
    return [m / "chaser" / instance for m in mounts if (m / "chaser" / instance).is_dir()]


def sandbox_cgroups(srv: ServerProcess) -> dict[str, list[Path]]:
    """Every sandbox's cgroup directories (one per hierarchy), by sandbox name: the
    leaves under the instance (and its tenant groups)."""
    out: dict[str, list[Path]] = collections.defaultdict(list)
    for top in instance_dirs(srv):
        for dirpath, dirnames, _ in os.walk(top):
            if not dirnames and Path(dirpath) != top and not Path(dirpath).name.startswith("t_"):
                out[Path(dirpath).name].append(Path(dirpath))
    return out


def cgroup_pids(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return pids


def memcg_charge(dirs: list[Path]) -> tuple[int, int]:
    """(all, kernel) bytes charged to the sandbox's memory cgroup (v1 or v2)."""
    for d in dirs:
        if (d / "memory.kmem.usage_in_bytes").exists():
            return (int((d / "memory.usage_in_bytes").read_text()),
                    int((d / "memory.kmem.usage_in_bytes").read_text()))
        if (d / "memory.current").exists():
            stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
            return int((d / "memory.current").read_text()), int(stat.get("kernel", 0))
    return 0, 0


@dataclass
class Snapshot:
    mem: dict[str, int]
    slab: dict[str, tuple[int, int]]
    server: ServerStats
    cgroups: dict[str, int]

    @classmethod
    def take(cls, srv: ServerProcess) -> Snapshot:
        assert srv.proc is not None
        return cls(meminfo(), slabinfo(), ServerStats.of(srv.proc.pid), num_cgroups())


# -- driving the server -----------------------------------------------------------------

@dataclass
class Starts:
    ids: list[str] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_error_at: int | None = None  # sessions running when the first create failed
    seconds: float = 0.0


def error_text(r: httpx.Response) -> str:
    """`status code: message`, with ids and cgroup paths made alike so errors group."""
    try:
        err = r.json()["error"]
        text = f"{r.status_code} {err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        text = f"{r.status_code} {r.text[:200]}"
    return re.sub(r"\b(ses|t)_[0-9a-f]{4,}", r"\1_*", text)


async def start_sessions(srv: ServerProcess, n: int, clients: int) -> Starts:
    res = Starts()
    todo = iter(range(n))
    headers = {"Authorization": f"Bearer {srv.admin_key}"}
    t0 = time.perf_counter()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=120) as c:
            for _ in todo:
                if sum(res.errors.values()) >= MAX_FAILURES:
                    return
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/sessions", json={})
                except httpx.HTTPError as e:
                    failure = f"{type(e).__name__}: {e}"
                else:
                    if r.status_code == 201:
                        res.ids.append(str(r.json()["id"]))
                        res.ms.append((time.perf_counter() - t) * 1000)
                        done = len(res.ids)
                        if done % 250 == 0:
                            print(f"  {done} sessions started ({time.perf_counter() - t0:.0f} s)",
                                  flush=True)
                        continue
                    failure = error_text(r)
                if res.first_error_at is None:
                    res.first_error_at = len(res.ids)
                res.errors[failure] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    res.seconds = time.perf_counter() - t0
    return res


async def exec_true(srv: ServerProcess, ids: list[str]) -> list[str]:
    """Run `true` in each of `ids`; the failures, as text."""
    headers = {"Authorization": f"Bearer {srv.admin_key}"}
    async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=60) as c:
        async def one(sid: str) -> str | None:
            try:
                r = await c.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
            except httpx.HTTPError as e:
                return f"{sid}: {type(e).__name__}"
            if r.status_code != 200:
                return f"{sid}: {error_text(r)}"
            if r.json().get("exit_code") != 0:
                return f"{sid}: exit {r.json().get('exit_code')}"
            return None

        found = await asyncio.gather(*(one(sid) for sid in ids))
    return [f for f in found if f is not None]


async def per_session(srv: ServerProcess, ids: list[str], clients: int,
                      call: Callable[[httpx.AsyncClient, str], Awaitable[str | None]],
                      timeout: float = 60) -> collections.Counter[str]:
    """`call` on each session by `clients` concurrent clients: how often each answer
    (None is not counted) or transport error came."""
    counts: collections.Counter[str] = collections.Counter()
    todo = iter(ids)
    headers = {"Authorization": f"Bearer {srv.admin_key}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=timeout) as c:
            for sid in todo:
                try:
                    key = await call(c, sid)
                except httpx.HTTPError as e:
                    key = type(e).__name__
                if key is not None:
                    counts[key] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return counts


async def delete_sessions(srv: ServerProcess, ids: list[str], clients: int) -> collections.Counter[str]:
    """DELETE each session: the errors, counted."""
    async def delete(c: httpx.AsyncClient, sid: str) -> str | None:
        r = await c.delete(f"/v1/sessions/{sid}")
        return None if r.status_code == 200 else error_text(r)

    return await per_session(srv, ids, clients, delete, timeout=120)


def listed_running(srv: ServerProcess) -> tuple[int, int]:
    """Sessions GET /v1/sessions?status=running lists, and the tenant's sessions in
    GET /v1/usage."""
    with srv.client(timeout=120) as c:
        r = c.get("/v1/sessions", params={"status": "running"})
        r.raise_for_status()
        sessions: list[Any] = r.json()["sessions"]
        u = c.get("/v1/usage")
        u.raise_for_status()
        return len(sessions), int(u.json()["usage"]["sessions"])


async def statuses(srv: ServerProcess, ids: list[str], clients: int) -> collections.Counter[str]:
    """GET /v1/sessions/{id} of each: how many are in each status."""
    async def status(c: httpx.AsyncClient, sid: str) -> str:
        r = await c.get(f"/v1/sessions/{sid}")
        return str(r.json()["status"]) if r.status_code == 200 else error_text(r)

    return await per_session(srv, ids, clients, status)


# -- measuring --------------------------------------------------------------------------

@dataclass
class Processes:
    count: int = 0
    pss_kib: int = 0
    rss_kib: int = 0
    by_comm: dict[str, list[int]] = field(default_factory=dict)  # name -> [count, pss, rss]
    memcg_bytes: int = 0
    memcg_kernel_bytes: int = 0
    per_session: collections.Counter[int] = field(default_factory=collections.Counter)


def measure_processes(cgroups: dict[str, list[Path]], names: set[str]) -> Processes:
    out = Processes()
    for name in names:
        dirs = cgroups.get(name, [])
        pids = cgroup_pids(dirs)
        out.per_session[len(pids)] += 1
        charged, kernel = memcg_charge(dirs)
        out.memcg_bytes += charged
        out.memcg_kernel_bytes += kernel
        for pid in pids:
            roll = smaps_rollup(pid)
            if not roll:
                continue
            row = out.by_comm.setdefault(comm(pid), [0, 0, 0])
            row[0] += 1
            row[1] += roll.get("Pss", 0)
            row[2] += roll.get("Rss", 0)
            out.count += 1
            out.pss_kib += roll.get("Pss", 0)
            out.rss_kib += roll.get("Rss", 0)
    return out


def wait_gone(srv: ServerProcess, names: set[str], timeout: float) -> tuple[int, list[str], float]:
    """Wait until no process or cgroup of these sandboxes is left; (processes, cgroups)
    still there, and the seconds waited."""
    t0 = time.monotonic()
    while True:
        cgroups = {k: v for k, v in sandbox_cgroups(srv).items() if k in names}
        procs = sum(len(cgroup_pids(d)) for d in cgroups.values())
        if (not procs and not cgroups) or time.monotonic() - t0 > timeout:
            return procs, sorted(cgroups), time.monotonic() - t0
        time.sleep(0.5)


def remove_instance_cgroups(dirs: list[Path]) -> int:
    """Remove the empty cgroup directories a stopped server left (its instance and
    tenant groups); directories still in use stay. Returns those removed."""
    removed = 0
    for top in dirs:
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
                removed += 1
            except OSError:
                pass
    return removed


def new_superblocks(pid: int) -> int:
    """Filesystems mounted in the process's mount namespace that the host does not have
    (each is a superblock of its own: tmpfs, proc, devpts, ...)."""
    def devices(path: str) -> set[str]:
        try:
            return {line.split()[2] for line in Path(path).read_text().splitlines()}
        except OSError:
            return set()
    return len(devices(f"/proc/{pid}/mountinfo") - devices("/proc/self/mountinfo"))


# -- printing ---------------------------------------------------------------------------

def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<44} {value:>16}  {note}".rstrip())


def kib(v: float) -> str:
    return f"{v:,.1f} KiB"


def mib(v_kib: float) -> str:
    return f"{v_kib / 1024:,.1f} MiB"


def settings_for(n: int) -> dict[str, str]:
    """What a server needs for `n` sessions of one tenant (the environment's own
    CHASER_* values win)."""
    room = str(n + 64)
    pid_budget = int(Path("/proc/sys/kernel/pid_max").read_text()) // 2  # pids_fraction 0.5
    wanted = {"CHASER_MAX_SANDBOXES": room, "CHASER_MAX_SANDBOXES_PER_TENANT": room,
              "CHASER_MAX_SESSIONS_PER_TENANT": room, "CHASER_MEMORY_FRACTION": "1000",
              "CHASER_MAX_PIDS_PER_TENANT": str(pid_budget), "CHASER_WARM_POOL": "0"}
    for k, v in wanted.items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in sorted(os.environ) if k.startswith("CHASER_")}


def raise_nofile(wanted: int | None) -> tuple[int, int]:
    """The bench's RLIMIT_NOFILE (its server inherits it): `wanted` for both limits when
    given, else the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
    elif soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", type=int, default=2000, help="idle sessions to start")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients creating them")
    ap.add_argument("--sample", type=int, default=20, help="sessions that run `true`")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before measuring")
    ap.add_argument("--nofile", type=int, default=None,
                    help="RLIMIT_NOFILE for the bench and its server [default: the hard limit]")
    args = ap.parse_args()
    n: int = args.n

    nofile = raise_nofile(args.nofile)
    settings = settings_for(n)
    print(f"idle sessions: n={n}, {args.clients} clients, RLIMIT_NOFILE {nofile[0]}/{nofile[1]}")
    print("  settings: " + " ".join(f"{k.removeprefix('CHASER_')}={v}" for k, v in settings.items()))
    leftovers: list[Path] = []
    try:
        with running_server() as srv:
            leftovers = instance_dirs(srv)
            asyncio.run(run(srv, n, args.clients, args.sample, args.settle))
    finally:
        # A server that left its instance's (empty) cgroup directories behind: each
        # memory cgroup left costs the host kernel memory for good (see the table).
        removed = remove_instance_cgroups(leftovers)
        left = [str(d) for d in leftovers if d.exists()]
        if removed or left:
            print(f"  cgroup directories the stopped server left: {removed} removed"
                  + (f", still there: {', '.join(left)}" if left else ""))


async def run(srv: ServerProcess, n: int, clients: int, sample: int, settle: float) -> None:
    up = Snapshot.take(srv)
    warm = await start_sessions(srv, 1, 1)
    if not warm.ids:
        raise SystemExit(f"the warm-up session failed: {dict(warm.errors)}\n{srv.log()}")
    warm_failed = await exec_true(srv, warm.ids)
    assert not warm_failed, warm_failed
    await asyncio.sleep(settle)
    base = Snapshot.take(srv)

    print(f"starting {n} sessions ...", flush=True)
    starts = await start_sessions(srv, n, clients)
    got = len(starts.ids)
    if not got:
        raise SystemExit(f"no session started: {dict(starts.errors)}")
    await asyncio.sleep(settle)
    after = Snapshot.take(srv)
    cgroups = sandbox_cgroups(srv)
    procs = measure_processes(cgroups, set(starts.ids))
    listed, in_usage = await asyncio.to_thread(listed_running, srv)
    by_status = await statuses(srv, starts.ids, clients)
    agents = [p for name in starts.ids[:1] for p in cgroup_pids(cgroups.get(name, []))
              if comm(p) != "bwrap"]
    superblocks = new_superblocks(agents[0]) if agents else 0
    picked = random.sample(starts.ids, min(sample, got))
    exec_failures = await exec_true(srv, picked)
    log = srv.log()  # its last 20,000 characters
    log_problems = [line for line in log.splitlines()
                    if re.search(r"\b(ERROR|WARNING|CRITICAL)\b|Traceback|Too many open files", line)]

    d = {k: after.mem[k] - base.mem[k] for k in MEMINFO_KEYS}
    sandbox_pss = procs.pss_kib / got
    server_growth = (after.server.rss_kib - base.server.rss_kib) / got
    kernel = sum(d[k] for k in KERNEL_KEYS) / got
    told_brief = sandbox_pss + kernel
    told = sandbox_pss + max(server_growth, 0) + kernel
    avail_drop = -d["MemAvailable"] / got
    fds_per = (after.server.fds - base.server.fds) / got

    print()
    print(f"{got} idle sessions ({n} asked; one warm-up session besides, not counted)")
    print(" start")
    row("wall time", f"{starts.seconds:.1f} s", f"{got / starts.seconds:.1f} sessions/s")
    row("create latency p50 / p90", f"{statistics.median(starts.ms):.0f} / {pct(starts.ms, 90):.0f} ms")
    row("running (GET /v1/sessions/{id} of each)", str(by_status["running"]),
        ", ".join(f"{k}: {v}" for k, v in by_status.items() if k != "running"))
    row("running (GET /v1/usage)", str(in_usage), f"of {got + 1} incl. warm-up")
    row("running (GET /v1/sessions?status=running)", str(listed),
        "the list stops at 1000" if listed == 1000 else "")
    row("`true` in a sample", f"{len(picked) - len(exec_failures)}/{len(picked)} ok")
    for err, count in collections.Counter(f.partition(": ")[2] for f in exec_failures).most_common():
        row("  `true` failed", f"{count}x", err[:160])
    for err, count in starts.errors.most_common():
        row("create refused", f"{count}x", err[:160])
    if starts.first_error_at is not None:
        row("started before the first refusal", str(starts.first_error_at), "(not counting the warm-up)")
    print(" processes (per session)")
    row("sandbox processes", f"{procs.count / got:.2f}",
        "processes per session: " + ", ".join(f"{k}: {v} sessions"
                                              for k, v in sorted(procs.per_session.items())))
    for name, (count, pss, rss) in sorted(procs.by_comm.items(), key=lambda kv: -kv[1][1]):
        row(f"  PSS of {name}", kib(pss / got), f"{count} processes, RSS {rss / count:,.0f} KiB each")
    row("sandbox PSS", kib(sandbox_pss), f"RSS {kib(procs.rss_kib / got)}")
    row("server RSS growth", kib(server_growth),
        f"{base.server.rss_kib / 1024:.0f} -> {after.server.rss_kib / 1024:.0f} MiB "
        f"(PSS {base.server.pss_kib / 1024:.0f} -> {after.server.pss_kib / 1024:.0f} MiB)")
    row("server fds", f"{fds_per:.2f}",
        f"{base.server.fds} -> {after.server.fds}; RLIMIT_NOFILE {after.server.nofile}: "
        f"room for ~{int((after.server.nofile - base.server.fds) / fds_per) if fds_per > 0 else 0} sessions")
    row("server threads", f"{(after.server.threads - base.server.threads) / got:.3f}",
        f"{base.server.threads} -> {after.server.threads}")
    print(" kernel (/proc/meminfo deltas, per session)")
    for k in ("Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "Percpu",
              "VmallocUsed", "Shmem"):
        row(k, kib(d[k] / got), f"{mib(d[k])} in all")
    grown = sorted((((objs - base.slab.get(k, (0, 0))[0]) * size, k)
                    for k, (objs, size) in after.slab.items()), reverse=True)
    print(" slab caches that grew most (objects in use x size, per session)")
    for v, k in grown[:6]:
        row(f"  {k}", kib(v / 1024 / got), f"{mib(v / 1024)} in all")
    cg = {k: after.cgroups.get(k, 0) - base.cgroups.get(k, 0) for k in ("memory", "pids", "cpu")}
    row("cgroups made", ", ".join(f"{k} {v / got:.0f}" for k, v in cg.items()),
        f"memory cgroups on the host: {base.cgroups.get('memory', 0)} -> "
        f"{after.cgroups.get('memory', 0)}")
    k1k = [s.slab.get("kmalloc-1k", (0, 0))[0] / max(1, s.cgroups.get("memory", 1))
           for s in (base, after)]
    row("kmalloc-1k objects per memory cgroup", f"{k1k[0]:.0f} -> {k1k[1]:.0f}",
        "each memcg holds a 1 KiB shrinker_info unit per 64 shrinker ids (superblocks)")
    row("new superblocks seen in a sandbox", str(superblocks),
        "tmpfs, proc, devpts, ... (bwrap's hidden root tmpfs besides)")
    row("memcg charge (usage / of it kernel)",
        f"{procs.memcg_bytes / 1024 / got:,.0f} / {procs.memcg_kernel_bytes / 1024 / got:,.0f} KiB",
        "what the sessions' own memory cgroups were charged")
    print(" all told (per session)")
    row("sandbox PSS + Slab + KernelStack + PageTables", kib(told_brief), mib(told_brief * got) + " in all")
    row("  + server RSS growth", kib(told),
        f"goal {GOAL_KIB} KiB: {'met' if told <= GOAL_KIB else 'NOT met'}")
    row("  + Percpu", kib(told + d["Percpu"] / got))
    row("MemAvailable drop (cross-check)", kib(avail_drop), f"MemFree drop {kib(-d['MemFree'] / got)}")
    total = after.mem["MemTotal"]
    at_drop = f"; {int(total / avail_drop):,} at the MemAvailable drop" if avail_drop > 0 else ""
    row("MemTotal would hold", f"{int(total / told):,}",
        f"sessions at {told:,.0f} KiB (MemTotal {mib(total)}){at_drop}")
    if log_problems:
        print(f" server log: {len(log_problems)} warning/error lines (last 20,000 characters)")
        for line in log_problems[:8]:
            print("   " + line[:200])

    print(f"deleting {got + 1} sessions ...", flush=True)
    t = time.perf_counter()
    del_errors = await delete_sessions(srv, warm.ids + starts.ids, clients)
    deleted_s = time.perf_counter() - t
    left_procs, left_cgroups, waited = await asyncio.to_thread(
        wait_gone, srv, set(warm.ids + starts.ids), 120)
    await asyncio.sleep(settle)
    end = Snapshot.take(srv)
    print(" after deleting them all")
    row("delete wall time", f"{deleted_s:.1f} s",
        f"{(got + 1) / deleted_s:.0f} sessions/s; processes and cgroups gone {waited:.1f} s later")
    if left_procs or left_cgroups:
        row("left behind", f"{left_procs} processes",
            f"{len(left_cgroups)} cgroups: {', '.join(left_cgroups[:5])}")
    for err, count in del_errors.most_common():
        row("delete failed", f"{count}x", err[:160])
    row("MemAvailable vs baseline", mib(end.mem["MemAvailable"] - base.mem["MemAvailable"]),
        f"vs server up (before the warm-up): {mib(end.mem['MemAvailable'] - up.mem['MemAvailable'])}")
    for k in ("Slab", "SUnreclaim", "KernelStack", "PageTables", "Percpu"):
        row(f"{k} vs baseline", mib(end.mem[k] - base.mem[k]))
    k1k_end = (end.slab.get("kmalloc-1k", (0, 0))[0] - base.slab.get("kmalloc-1k", (0, 0))[0]) * 1024 // 1024  # 1 KiB objects, in KiB
    row("kmalloc-1k vs baseline", mib(k1k_end), f"memory cgroups on the host: "
        f"{base.cgroups.get('memory', 0)} -> {end.cgroups.get('memory', 0)}")
    row("server RSS vs baseline", mib(end.server.rss_kib - base.server.rss_kib),
        f"fds {base.server.fds} -> {end.server.fds}, threads {base.server.threads} -> "
        f"{end.server.threads}")


if __name__ == "__main__":
    main()
