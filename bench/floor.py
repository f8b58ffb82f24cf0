"""At the floor (issue 12): each path's Chaser p50 beside its floor measured in the same
run, and the same path under Docker when a Docker engine can be used.

Run as root: `.venv/bin/python bench/floor.py [-n 200] [--sessions 50] [--seconds 5]`.
Prints one table; medians throughout.

  1. session exec `true` (POST /v1/sessions/{id}/exec). Floor: the HTTP round trip
     (GET /healthz, same server, same client) plus a bare `nsenter` join of a running
     bubblewrap sandbox running `true`. Target: ratio <= 1.15. Docker: `docker exec`.
  2. session execs per second, 8 concurrent clients on one session. The clients are
     `wrk` when installed (`--clients auto`), otherwise 8 processes speaking raw
     keep-alive HTTP/1.1, so they cost little and share no GIL with the bench. Floor:
     bare nsenter joins per second from 8 concurrent shell loops. Target: >= 400/s.
     Notes give the machine's CPU busy % over the run (/proc/stat) and the server
     process's share of it. Docker: `docker exec` per second from 8 threads.
  3. one-shot exec (POST /v1/exec ephemeral) 100 ms apart. Floor: a bare `bwrap true`,
     also 100 ms apart (waking an idle machine, a VM's halted vCPUs above all, costs
     both the same; the back-to-back floor is noted beside it). Target: ratio <= 0.8
     (the warm pool's sandboxes are started ahead). Docker:
     `docker run --rm IMAGE true`, 100 ms apart.
  4. the same back to back: target ratio <= 1.5. Docker: `docker run --rm` back to back.
     Rows 3 and 4 note the warm pool's hits and misses over the phase (GET /healthz
     `limits.pool`).
  5. idle session memory (`--sessions` idle sessions): per session, the PSS of the
     processes in the server's sandboxes (found through its cgroups) plus kernel
     memory (Slab + KernelStack + PageTables from /proc/meminfo), as deltas over the
     sessions' start; and how many fit in MemTotal. The server process's own memory is
     not counted (nor dockerd's and containerd's for Docker). Floor: the same for bare
     bubblewrap sandboxes running `sleep`. Target: <= 2 MB. Docker: idle containers
     (`--docker-sessions`; each counts its containerd shim and `sleep`).

Docker is a comparison only: when `docker` and `dockerd` are installed but no engine
runs, one is started for the Docker rows (no iptables, no bridge; containers use
`--network none`) and stopped after; `--no-docker` skips them. Past 56 sessions, the
server's sandbox limits (all, and per tenant) are raised to fit `--sessions`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event
from pathlib import Path

from _common import (BWRAP_TRUE, docker_engine, docker_image, pss_kb, run_quiet, running_server, sandbox_pids,
                     timed)
from tests.conftest import ServerProcess

CLIENTS = 8
PACE_S = 0.1
# A bubblewrap sandbox as BWRAP_TRUE makes one, its command pid 1 (as Chaser's agent
# is), left idle: the memory floor.
BWRAP_IDLE = BWRAP_TRUE[:1] + ["--as-pid-1"] + BWRAP_TRUE[1:-1] + ["/bin/sleep", "3600"]
EXEC_TRUE = {"command": "true"}
ONE_SHOT_TRUE = {"ephemeral": True, "command": "true"}


# -- a raw HTTP/1.1 client ------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection to the server on loopback, the requests built
    by hand: as cheap a client as Python has, so the numbers are the server's."""

    IDLE_S = 4.0  # uvicorn closes connections idle for 5 s: a fresh one past this

    def __init__(self, port: int, key: str | None) -> None:
        self.port = port
        self.key = key
        self.sock = self._connect()
        self.buf = bytearray()
        self.used = time.monotonic()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        self.sock.close()

    def prepare(self, method: str, path: str, body: object = None) -> bytes:
        """The bytes of one request (send them with `send`, as often as wanted)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        if self.key:
            head += f"Authorization: Bearer {self.key}\r\n"
        data = b""
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        return head.encode() + data

    def send(self, request: bytes) -> tuple[int, bytes]:
        """Send a prepared request; (status, body) of its response."""
        if time.monotonic() - self.used > self.IDLE_S:
            self.sock.close()
            self.sock, self.buf = self._connect(), bytearray()
        self.sock.sendall(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = bytes(self.buf[:end]).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {lines!r}")
        del self.buf[:end + 4]
        while len(self.buf) < length:
            self._fill()
        body = bytes(self.buf[:length])
        del self.buf[:length]
        self.used = time.monotonic()
        return status, body

    def call(self, method: str, path: str, body: object = None, status: int = 200) -> object:
        """One request; its JSON answer (the status must be `status`)."""
        got, data = self.send(self.prepare(method, path, body))
        if got != status:
            raise RuntimeError(f"{method} {path}: {got} {data[:300]!r}")
        return json.loads(data) if data else None

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk


def ok_exec(status: int, body: bytes) -> bool:
    return status == 200 and b'"exit_code":0' in body


# -- the machine ----------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_ticks(pid: int) -> int:
    """utime + stime of one process, clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


@contextmanager
def cpu_busy(out: dict[str, float], server_pid: int | None = None) -> Iterator[None]:
    """Fill `out` with the machine's CPU busy % over the block (all CPUs) and, with a
    server pid, that process's share of the machine in %."""
    busy0, total0 = cpu_ticks()
    own0 = process_ticks(server_pid) if server_pid else 0
    yield
    busy1, total1 = cpu_ticks()
    span = max(total1 - total0, 1)
    out["busy"] = 100 * (busy1 - busy0) / span
    if server_pid:
        out["server"] = 100 * (process_ticks(server_pid) - own0) / span


def meminfo_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0])
    return out


def kernel_kb() -> int:
    m = meminfo_kb()
    return m["Slab"] + m["KernelStack"] + m["PageTables"]


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


@dataclass
class Memory:
    """Memory per idle sandbox, KiB: what its processes map (PSS) and what the kernel
    holds for it (its namespaces, mounts, cgroups, stacks, page tables)."""

    pss: float
    kernel: float

    @property
    def mb(self) -> float:
        return (self.pss + self.kernel) / 1024

    def note(self) -> str:
        noisy = " (other activity moved kernel memory: rerun)" if self.kernel < 0 else ""
        return f"PSS {self.pss / 1024:.2f} + kernel {self.kernel / 1024:.2f} MB{noisy}"

    def fit(self) -> str:
        total = meminfo_kb()["MemTotal"]
        return f"{total / max(self.pss + self.kernel, 1):,.0f} fit in MemTotal ({total / 2**20:.1f} GiB)"


def settle(limit_s: float = 30.0) -> None:
    """Wait until kernel memory stops moving: sandboxes that ended before are still
    being taken down (network namespaces are freed by a kernel worker, late)."""
    deadline = time.monotonic() + limit_s
    last, quiet = kernel_kb(), 0
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = kernel_kb()
        quiet = quiet + 1 if abs(now - last) < 256 else 0
        last = now


def memory_per_sandbox(count: int, start: Callable[[], None], pss_now: Callable[[], int]) -> Memory:
    """Start `count` idle sandboxes with `start`; the deltas per sandbox of `pss_now()`
    and of kernel memory."""
    settle()
    pss0, kernel0 = pss_now(), kernel_kb()
    for _ in range(count):
        start()
    settle()
    return Memory(pss=(pss_now() - pss0) / count, kernel=(kernel_kb() - kernel0) / count)


# -- the table ------------------------------------------------------------------------


@dataclass
class Row:
    path: str
    unit: str  # "ms", "/s" or "MB"
    bound: float
    on_ratio: bool  # the bound is on chaser / floor, else on the value itself
    at_least: bool = False
    chaser: float = math.nan
    floor: float = math.nan
    docker: float | str = "-"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.chaser / self.floor if self.floor else math.nan

    def target(self) -> str:
        value = self.ratio if self.on_ratio else self.chaser
        met = value >= self.bound if self.at_least else value <= self.bound
        what = "ratio " if self.on_ratio else ""
        unit = "" if self.on_ratio else f" {self.unit}"
        return f"{what}{'>=' if self.at_least else '<='} {self.bound:g}{unit} {'ok' if met else 'MISSED'}"


def fmt(value: float | str, unit: str) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "-"
    digits = 0 if unit == "/s" else 2
    return f"{value:.{digits}f} {unit}"


def print_table(rows: list[Row]) -> None:
    head = ("path", "Chaser p50", "floor p50", "ratio", "target", "docker p50", "notes")
    cells = [head] + [(r.path, fmt(r.chaser, r.unit), fmt(r.floor, r.unit),
                       "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}", r.target(),
                       fmt(r.docker, r.unit), r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
    for i, c in enumerate(cells):
        print("  ".join(c[j].ljust(widths[j]) if j in (0, 4) else c[j].rjust(widths[j])
                        for j in range(len(widths))) + "  " + c[-1])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 5)


def median_ms(fn: Callable[[], object], n: int, warmup: int = 5) -> float:
    return statistics.median(timed(fn, n, warmup))


# -- 8 concurrent clients -------------------------------------------------------------


def _client(port: int, key: str | None, path: str, body: object, ready: Queue[str], go: Event,
            window: SynchronizedArray[float], done: Queue[tuple[int, int]]) -> None:
    """One client process: a keep-alive connection sending the same request over and
    over; counts what completed inside the window (and the failures)."""
    try:
        http = Http(port, key)
        request = http.prepare("POST", path, body)
        for _ in range(5):
            http.send(request)
    except Exception as e:  # noqa: BLE001  (reported by the parent)
        ready.put(f"{type(e).__name__}: {e}")
        return
    ready.put("")
    go.wait()
    start, end = window[0], window[1]
    time.sleep(max(start - time.monotonic(), 0))
    count = errors = 0
    try:
        while time.monotonic() < end:
            good = ok_exec(*http.send(request))
            if time.monotonic() <= end:
                count += good
                errors += not good
        http.close()
    except OSError:
        errors += 1  # the connection broke: this client stops
    done.put((count, errors))


def python_clients_rate(srv: ServerProcess, path: str, body: object, seconds: float,
                        cpu: dict[str, float]) -> tuple[float, int]:
    """(requests per second, failures) from CLIENTS processes for `seconds`."""
    ready: Queue[str] = mp.Queue()
    done: Queue[tuple[int, int]] = mp.Queue()
    go = mp.Event()
    window: SynchronizedArray[float] = mp.Array("d", 2)
    procs = [mp.Process(target=_client, args=(srv.port, srv.admin_key, path, body, ready, go, window, done))
             for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    try:
        problems = [m for m in (ready.get(timeout=60) for _ in procs) if m]
        if problems:
            raise RuntimeError(f"clients failed to start: {problems}")
        start = time.monotonic() + 0.1
        window[0], window[1] = start, start + seconds
        go.set()
        time.sleep(max(start - time.monotonic(), 0))
        with cpu_busy(cpu, srv.proc.pid if srv.proc else None):
            time.sleep(max(start + seconds - time.monotonic(), 0))
        results = [done.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return sum(c for c, _ in results) / seconds, sum(e for _, e in results)


def wrk_rate(srv: ServerProcess, path: str, body: object, seconds: float,
             cpu: dict[str, float]) -> tuple[float, int]:
    """(requests per second, failures) from `wrk` with CLIENTS connections on one thread."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(json.dumps(body))}\n"
                     "wrk.headers['Content-Type'] = 'application/json'\n"
                     f"wrk.headers['Authorization'] = 'Bearer {srv.admin_key}'\n")
        script.flush()
        with cpu_busy(cpu, srv.proc.pid if srv.proc else None):
            out = subprocess.run(["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds:g}s", "-s", script.name,
                                  srv.url + path], capture_output=True, text=True, check=True).stdout
    rate = errors = 0.0
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(words[1])
        elif "Non-2xx" in line or line.strip().startswith("Socket errors"):
            errors += sum(int(w.strip(",")) for w in words if w.strip(",").isdigit())
    return rate, int(errors)


def shell_loops_rate(cmd: list[str], per_loop: int) -> float:
    """Runs per second of `cmd` from CLIENTS concurrent shell loops of `per_loop` runs."""
    quoted = " ".join(f"'{a}'" for a in cmd)
    loop = f"i=0; while [ $i -lt {per_loop} ]; do {quoted} >/dev/null 2>&1; i=$((i+1)); done"
    t = time.perf_counter()
    procs = [subprocess.Popen(["sh", "-c", loop]) for _ in range(CLIENTS)]
    for p in procs:
        p.wait()
    return CLIENTS * per_loop / (time.perf_counter() - t)


def threads_rate(cmd: list[str], seconds: float) -> float:
    """Runs per second of `cmd` from CLIENTS threads for `seconds`."""
    end = time.monotonic() + seconds

    def loop(_: int) -> int:
        count = 0
        while time.monotonic() < end:
            run_quiet(cmd)
            count += time.monotonic() <= end
        return count

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(loop, range(CLIENTS))) / seconds


# -- the measurements -----------------------------------------------------------------


@contextmanager
def running_sandbox() -> Iterator[int]:
    """A bare bubblewrap sandbox running `sleep`: the pid of its command, to join."""
    holder = subprocess.Popen(["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--", "sleep", "600"])
    try:
        children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children")
        deadline = time.monotonic() + 10
        while not children.read_text().split():
            if time.monotonic() > deadline:
                raise RuntimeError("bwrap did not start its sandbox")
            time.sleep(0.01)
        time.sleep(0.1)
        yield int(children.read_text().split()[0])
    finally:
        holder.kill()
        holder.wait()


def idle_bwraps(count: int) -> Memory:
    """The memory floor: `count` bare bubblewrap sandboxes left idle."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(BWRAP_IDLE))
        children = Path(f"/proc/{procs[-1].pid}/task/{procs[-1].pid}/children")
        while not children.read_text().split():  # started (its command runs as pid 1)
            time.sleep(0.002)

    try:
        return memory_per_sandbox(count, start, lambda: pss_kb(p for q in procs for p in descendants(q.pid)))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def pool_stats(http: Http) -> tuple[int, int]:
    health = http.call("GET", "/healthz")
    assert isinstance(health, dict)
    pool = health["limits"]["pool"]
    return int(pool["hit"]), int(pool["miss"])


def measure_chaser(args: argparse.Namespace, rows: dict[str, Row]) -> None:
    n = args.n
    env = {}
    if args.sessions + 8 > 256 // 4:  # past the default limits (the bench is one tenant)
        env = {"CHASER_MAX_SANDBOXES": str(max(256, args.sessions + 16)), "CHASER_TENANT_SHARE": "1"}
    with running_server(env) as srv:
        http = Http(srv.port, srv.admin_key)
        sid = str(http.call("POST", "/v1/sessions", {}, status=201)["id"])  # type: ignore[index]
        session_exec = http.prepare("POST", f"/v1/sessions/{sid}/exec", EXEC_TRUE)
        healthz = http.prepare("GET", "/healthz")

        def exec_once() -> None:
            assert ok_exec(*http.send(session_exec))

        # 1. session exec.
        row = rows["session"]
        with running_sandbox() as pid:
            join = ["nsenter", "-t", str(pid), "-U", "-m", "-p", "-n", "-i", "-u",
                    "--preserve-credentials", "-r", "-w", "/bin/true"]
            join_ms = median_ms(lambda: run_quiet(join), n)
            round_trip = median_ms(lambda: http.send(healthz), n)
            row.chaser = median_ms(exec_once, n)
            row.floor = round_trip + join_ms
            row.note = f"floor = healthz {round_trip:.2f} + nsenter join {join_ms:.2f} ms"

            # 2. execs per second, 8 clients.
            row = rows["per_s"]
            per_loop = max(10, int(args.seconds * 1000 / join_ms * (os.cpu_count() or 1) / CLIENTS))
            row.floor = shell_loops_rate(join, per_loop)
        use_wrk = args.clients == "wrk" or (args.clients == "auto" and shutil.which("wrk"))
        cpu: dict[str, float] = {}
        rate = wrk_rate if use_wrk else python_clients_rate
        row.chaser, errors = rate(srv, f"/v1/sessions/{sid}/exec", EXEC_TRUE, args.seconds, cpu)
        row.note = (f"{'wrk' if use_wrk else 'python'} clients; CPU {cpu['busy']:.0f}% busy "
                    f"(server process {cpu.get('server', math.nan):.0f}%); floor = nsenter joins/s")
        if errors:
            row.note += f"; {errors} FAILED"

        # 3. and 4. one-shot exec, paced and back to back.
        one_shot = http.prepare("POST", "/v1/exec", ONE_SHOT_TRUE)

        def one_shot_once() -> None:
            assert ok_exec(*http.send(one_shot))

        def paced_ms(fn: Callable[[], object], pace: float) -> list[float]:
            ms = []
            for _ in range(n):
                time.sleep(pace)
                t = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t) * 1000)
            return ms

        # The floor is measured as the path is: paced, it pays what an idle machine (a
        # VM's halted vCPUs) costs to wake as Chaser does; both floors are noted.
        bwrap_ms = {pace: statistics.median(paced_ms(lambda: run_quiet(BWRAP_TRUE), pace))
                    for pace in (PACE_S, 0.0)}
        for key, pace in (("paced", PACE_S), ("back", 0.0)):
            row = rows[key]
            for _ in range(3):
                one_shot_once()
            time.sleep(pace)
            hit0, miss0 = pool_stats(http)
            ms = paced_ms(one_shot_once, pace)
            hit1, miss1 = pool_stats(http)
            row.chaser, row.floor = statistics.median(ms), bwrap_ms[pace]
            other = bwrap_ms[0.0 if pace else PACE_S]
            row.note = (f"warm pool {hit1 - hit0} hits / {miss1 - miss0} misses; floor = bwrap "
                        f"true {'paced' if pace else 'back to back'} ({other:.2f} ms "
                        f"{'back to back' if pace else 'paced'})")

        # 5. idle session memory.
        row = rows["memory"]
        floor = idle_bwraps(args.sessions)
        made: list[str] = []

        def new_session() -> None:
            made.append(str(http.call("POST", "/v1/sessions", {}, status=201)["id"]))  # type: ignore[index]

        mem = memory_per_sandbox(args.sessions, new_session, lambda: pss_kb(sandbox_pids(srv)))
        row.chaser, row.floor = mem.mb, floor.mb
        row.note = f"{mem.note()}, {mem.fit()}; floor (bwrap sleep) {floor.note()}"
        http.close()  # the server's stop ends the sessions


def measure_docker(args: argparse.Namespace, rows: dict[str, Row]) -> None:
    image = docker_image()
    name = f"chaser-floor-{os.getpid()}"
    run_quiet(["docker", "run", "-d", "--network", "none", "--name", name, image, "sleep", "3600"])
    containers: list[str] = []
    try:
        exec_true = ["docker", "exec", name, "true"]
        rows["session"].docker = median_ms(lambda: run_quiet(exec_true), max(args.n // 4, 10), 2)
        rows["per_s"].docker = threads_rate(exec_true, args.docker_seconds)
        run_true = ["docker", "run", "--rm", "--network", "none", image, "true"]
        runs = max(args.n // 10, 5)

        def paced_run() -> None:
            time.sleep(PACE_S)
            t = time.perf_counter()
            run_quiet(run_true)
            paced_ms.append((time.perf_counter() - t) * 1000)

        paced_ms: list[float] = []
        timed(paced_run, runs, 1)
        rows["paced"].docker = statistics.median(paced_ms[1:])
        rows["back"].docker = median_ms(lambda: run_quiet(run_true), runs, 1)

        def pss_now() -> int:
            if not containers:
                return 0
            out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", *containers],
                                 capture_output=True, text=True, check=True).stdout.split()
            shims = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in out}
            return pss_kb(p for shim in shims for p in descendants(shim))

        def start() -> None:
            containers.append(subprocess.run(
                ["docker", "run", "-d", "--network", "none", image, "sleep", "3600"],
                capture_output=True, text=True, check=True).stdout.strip())

        mem = memory_per_sandbox(args.docker_sessions, start, pss_now)
        rows["memory"].docker = mem.mb
        rows["memory"].note += f"; docker ({args.docker_sessions} containers) {mem.note()}"
    finally:
        subprocess.run(["docker", "rm", "-f", name, *containers], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="runs per latency (Docker: a quarter, a tenth for docker run)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the 8-client run")
    ap.add_argument("--clients", choices=("auto", "wrk", "python"), default="auto",
                    help="the 8 concurrent clients: wrk if installed, else Python processes")
    ap.add_argument("--sessions", type=int, default=50, help="idle sessions for the memory row")
    ap.add_argument("--docker-seconds", type=float, default=3.0, help="length of the docker exec/s run")
    ap.add_argument("--docker-sessions", type=int, default=10, help="idle containers for the memory row")
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker column")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the server needs it)")
    rows = {
        "session": Row("session exec `true`", "ms", 1.15, on_ratio=True),
        "per_s": Row(f"session execs/s, {CLIENTS} clients", "/s", 400, on_ratio=False, at_least=True),
        "paced": Row(f"one-shot exec `true`, {PACE_S * 1000:.0f} ms apart", "ms", 0.8, on_ratio=True),
        "back": Row("one-shot exec `true`, back to back", "ms", 1.5, on_ratio=True),
        "memory": Row(f"idle session memory ({args.sessions})", "MB", 2.0, on_ratio=False),
    }
    print(f"measuring Chaser and its floors (n={args.n}) ...", file=sys.stderr)
    measure_chaser(args, rows)
    if args.no_docker:
        for row in rows.values():
            row.docker = "n/a: skipped"
    else:
        print("measuring Docker ...", file=sys.stderr)
        with docker_engine() as usable:
            if usable:
                measure_docker(args, rows)
            else:
                for row in rows.values():
                    row.docker = "n/a: no engine"
    print_table(list(rows.values()))


if __name__ == "__main__":
    main()
