"""Helpers for the security catalogue: sandboxes of every kind, probes, host-side views,
health checks and the result table.

A probe is a Python script fed to `python3 -` on stdin inside the sandbox. It gets its
parameters as `P`, a prelude of small helpers (`sc` for raw system calls, `tryit`, `sh`,
...), fills the dict `R` and the harness prints `R` as JSON on the last line. Nothing
secret (API keys, host paths of the data dir) is ever sent into a sandbox: the test side
compares what comes back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServerProcess
from tests.types import Tenant

EPHEMERAL, SESSION, WORKSPACE, HOST = "ephemeral", "session", "workspace", "host"
KINDS = (EPHEMERAL, SESSION, WORKSPACE)
# Copies of an ephemeral run sent at once: the warm pool holds at most 2 sandboxes, so a
# burst of 3 always reaches the fresh bwrap-only path, and the warm agent path too when
# the pool holds sandboxes of the tenant's shape.
EPHEMERAL_BURST = 3
HEALTHZ_BUDGET_S = 2.0


# --- the result table ------------------------------------------------------------------

@dataclass
class Row:
    attack: str
    kind: str
    expected: str
    result: str


ROWS: list[Row] = []


def record(attack: str, kind: str, expected: str, result: str) -> None:
    ROWS.append(Row(attack, kind, expected, " ".join(result.split())))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(rows: list[Row], width: int = 120) -> str:
    heads = ("attack", "kind", "expected", "result")
    cells = [(r.attack, r.kind, _cut(r.expected, 70), _cut(r.result, width)) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line, "|".join(f" {h:<{w}} " for h, w in zip(heads, widths, strict=True)), line]
    out += ["|".join(f" {c:<{w}} " for c, w in zip(row, widths, strict=True)) for row in cells]
    out.append(line)
    passed = sum(1 for r in rows if r.result.startswith("blocked"))
    holes = sum(1 for r in rows if r.result.startswith("HOLE"))
    out.append(f"{len(rows)} rows: {passed} blocked, {holes} known holes (xfail), "
               f"{len(rows) - passed - holes} failed")
    return "\n".join(out)


# --- tokens and small host helpers -------------------------------------------------------

def token(prefix: str = "sec") -> str:
    return prefix + secrets.token_hex(6)


def host_ip() -> str | None:
    """The host's primary non-loopback address (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = str(s.getsockname()[0])
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


def host_tasks_with(marker: str) -> list[tuple[int, int]]:
    """(pid, tid) of every host thread whose argv holds `marker`. Threads are looked at
    one by one: a process whose main thread exited shows an empty argv at its pid."""
    found = []
    needle = marker.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for task in (proc / "task").iterdir():
                with contextlib.suppress(OSError):
                    if needle in (task / "cmdline").read_bytes():
                        found.append((int(proc.name), int(task.name)))
    return found


def wait_gone(marker: str, within: float = 2.0) -> list[tuple[int, int]]:
    """Survivors with `marker` in their argv once `within` seconds have passed (or [])."""
    deadline = time.monotonic() + within
    while True:
        left = host_tasks_with(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_present(marker: str, within: float = 15.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = sorted({pid for pid, _ in host_tasks_with(marker)})
        if found:
            return found
        time.sleep(0.02)
    return []


def host_status(pid: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def host_uid_map(pid: int) -> list[list[int]]:
    return [[int(x) for x in ln.split()] for ln in
            Path(f"/proc/{pid}/uid_map").read_text().splitlines() if ln.strip()]


def host_cgroup_dir(pid: int, controller: str) -> Path | None:
    """The host directory of `pid`'s cgroup for a v1 controller (or the v2 one)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            d = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
            return d if d.is_dir() else None
        if ctrls == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            d = Path("/sys/fs/cgroup") / path.lstrip("/")
            if d.is_dir():
                return d
    return None


def snapshot(paths: list[str]) -> dict[str, Any]:
    """Owner, mode, mtime and content digest (files) or listing (directories)."""
    snap: dict[str, Any] = {}
    for p in paths:
        try:
            st = os.lstat(p)
        except OSError as e:
            snap[p] = e.strerror
            continue
        entry: dict[str, Any] = {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode,
                                 "mtime": st.st_mtime_ns, "nlink": st.st_nlink}
        if os.path.isdir(p) and not os.path.islink(p):
            entry["ls"] = sorted(os.listdir(p))
        elif os.path.isfile(p) and not os.path.islink(p):
            entry["sha"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
        snap[p] = entry
    return snap


# --- the probe prelude -------------------------------------------------------------------

PRELUDE = r'''
import ctypes, errno, json, os, re, signal, socket, stat, struct, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
R = {}
def en(n):
    return errno.errorcode.get(n, str(n))
def sc(nr, *args):
    """A raw system call: 'ok:<rc>' or the errno name."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *conv)
    return "ok:%d" % rc if rc >= 0 else en(ctypes.get_errno())
def tryit(fn, *a):
    try:
        r = fn(*a)
        return "ok" if r is None else "ok:%s" % (r,)
    except OSError as e:
        return en(e.errno) if e.errno else str(e)
    except ValueError as e:
        return "ValueError:%s" % e
def sh(cmd, timeout=20):
    p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return [p.returncode, (p.stdout + p.stderr)[-600:]]
def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
def pids():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
def agentish(pid):
    """The agent (PID 1 of a session sandbox) or a shepherd (a fork of it): the static
    /.chaser/agent (not a one-shot's `agent exec`), or the Python fallback's agent.py(c)."""
    c = cmdline(pid)
    return c == "/.chaser/agent" or "/.chaser/agent.py" in c
def status(pid):
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out
R["_mode"] = "agent" if agentish(1) else "bwrap"
'''

EPILOGUE = '\nprint()\nprint(json.dumps(R, default=str))\n'


def probe_script(body: str, params: dict[str, Any] | None = None) -> str:
    return f"P = {json.dumps(params or {})!r}\nP = __import__('json').loads(P)\n" + \
        PRELUDE + body + EPILOGUE


def last_json(output: str) -> dict[str, Any]:
    lines = [ln for ln in output.splitlines() if ln.startswith("{")]
    assert lines, f"the probe printed no JSON: {output[-2000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def modes(results: list[dict[str, Any]]) -> str:
    """How an ephemeral burst ran: e.g. 'agent x2, bwrap x1'."""
    counts: dict[str, int] = {}
    for r in results:
        m = str(r.get("_mode", "?"))
        counts[m] = counts.get(m, 0) + 1
    return ", ".join(f"{m} x{n}" for m, n in sorted(counts.items()))


# --- sandboxes ---------------------------------------------------------------------------

class Box:
    """One tenant's way into one kind of sandbox.

    ephemeral: `POST /v1/exec {"ephemeral": true}` (bursts reach both one-shot paths);
    session: a session of its own (`POST /v1/sessions`); workspace: `POST /v1/exec
    {"workspace"}`, the workspace's auto session.
    """

    def __init__(self, server: ServerProcess, tenant: Tenant, kind: str, *,
                 limits: dict[str, Any] | None = None, workspace: str | None = None) -> None:
        assert kind in KINDS, kind
        self.server = server
        self.tenant = tenant
        self.kind = kind
        self.limits = limits
        self.workspace = workspace or (token("ws") if kind == WORKSPACE else None)
        self.session_id: str | None = None
        self.sessions: set[str] = set()

    @property
    def client(self) -> httpx.Client:
        return self.tenant.client

    def ensure_session(self) -> str:
        """The session commands of this box run in (ephemeral boxes have none)."""
        if self.kind == EPHEMERAL:
            raise AssertionError("an ephemeral sandbox has no session")
        if self.session_id is None:
            if self.kind == SESSION:
                body = {"limits": self.limits} if self.limits else {}
                r = self.client.post("/v1/sessions", json=body)
                assert r.status_code == 201, r.text
                self.session_id = str(r.json()["id"])
            else:
                self.session_id = str(self.request({"command": "true"}).json()["session_id"])
            self.sessions.add(self.session_id)
        return self.session_id

    def request(self, body: dict[str, Any], *, client: httpx.Client | None = None,
                timeout: float = 60.0) -> httpx.Response:
        """One exec request of this box's kind (any status)."""
        c = client or self.client
        if self.kind == EPHEMERAL:
            return c.post("/v1/exec", json={**body, "ephemeral": True}, timeout=timeout)
        if self.kind == WORKSPACE:
            r = c.post("/v1/exec", json={**body, "workspace": self.workspace}, timeout=timeout)
            if r.status_code == 200 and r.json().get("session_id"):
                self.session_id = str(r.json()["session_id"])
                self.sessions.add(self.session_id)
            return r
        sid = self.ensure_session()
        return c.post(f"/v1/sessions/{sid}/exec", json=body, timeout=timeout)

    def run(self, command: str, *, burst: int = 1, stdin: str | None = None,
            env: dict[str, str] | None = None, cwd: str | None = None, shell: str | None = None,
            timeout_ms: int = 20000, http_timeout: float = 60.0) -> list[dict[str, Any]]:
        """Run a foreground command (`burst` concurrent copies for ephemeral boxes)."""
        body: dict[str, Any] = {"command": command, "timeout_ms": timeout_ms}
        for k, v in (("stdin", stdin), ("env", env), ("cwd", cwd), ("shell", shell)):
            if v is not None:
                body[k] = v
        n = burst if self.kind == EPHEMERAL else 1
        if n == 1:
            responses = [self.request(body, timeout=http_timeout)]
        else:
            def one(_: int) -> httpx.Response:
                with self.server.client(self.tenant.key) as c:
                    return self.request(body, client=c, timeout=http_timeout)

            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                responses = list(pool.map(one, range(n)))
        for r in responses:
            assert r.status_code == 200, r.text
        return [r.json() for r in responses]

    def run1(self, command: str, **kw: Any) -> dict[str, Any]:
        return self.run(command, **kw)[0]

    def probe(self, body: str, params: dict[str, Any] | None = None, *,
              burst: int = EPHEMERAL_BURST, **kw: Any) -> list[dict[str, Any]]:
        """Run a probe; one result per sandbox it ran in."""
        results = self.run("python3 -", stdin=probe_script(body, params), burst=burst, **kw)
        return [last_json(r["output"]) for r in results]

    def background(self, command: str, timeout_ms: int = 60000) -> tuple[str, str, int]:
        """Start a background command: (session id, command id, its pid inside)."""
        sid = self.ensure_session()
        r = self.client.post(f"/v1/sessions/{sid}/exec", json={
            "command": command, "background": True, "timeout_ms": timeout_ms})
        assert r.status_code == 201, r.text
        return sid, str(r.json()["command_id"]), int(r.json()["pid"])

    def command(self, command_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/sessions/{self.ensure_session()}/commands/{command_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def host_workspace_dir(self) -> Path:
        """The workspace's directory on the host (found by a file planted in it)."""
        assert self.kind == WORKSPACE
        mark = token("find")
        self.run1(f"touch {mark}")
        hits = list((self.server.data_dir / "workspaces").glob(f"*/files/{mark}"))
        assert len(hits) == 1, hits
        hits[0].unlink()
        return hits[0].parent.parent

    def host_tree(self) -> list[Path]:
        """Everything the workspace's sandboxes can reach, as seen on the host: its
        files/, home/ and tmp/ (a workspace disk's own root holds more, e.g. lost+found)."""
        ws = self.host_workspace_dir()
        return [p for sub in ("files", "home", "tmp") for p in (ws / sub).rglob("*")]

    def close(self) -> None:
        for sid in self.sessions:
            with contextlib.suppress(httpx.HTTPError):
                self.client.delete(f"/v1/sessions/{sid}", timeout=30)


@contextlib.contextmanager
def running(fn: Callable[[], Any]) -> Iterator[concurrent.futures.Future[Any]]:
    """Run `fn` in a thread for the block's duration; its result is waited for after."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(fn)
        yield fut
        fut.result(timeout=120)


# --- the health of everything else ---------------------------------------------------------

def check_health(server: ServerProcess, bystander: Tenant) -> str:
    """The server answers /healthz within budget and another tenant's run works."""
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    t0 = time.monotonic()
    r = httpx.get(server.url + "/healthz", timeout=10)
    dt = time.monotonic() - t0
    assert r.status_code == 200 and r.json().get("status") == "ok", r.text
    assert dt < HEALTHZ_BUDGET_S, f"/healthz took {dt:.2f} s"
    t0 = time.monotonic()
    r = bystander.client.post("/v1/exec", json={"ephemeral": True, "command": "echo ok"},
                              timeout=30)
    dt2 = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["output"] == "ok\n", r.text
    return f"healthz {dt * 1000:.0f} ms, other tenant {dt2 * 1000:.0f} ms"


def is_json_error(r: httpx.Response | RawResponse) -> bool:
    with contextlib.suppress(ValueError, AttributeError):
        err = r.json().get("error")
        return isinstance(err, dict) and isinstance(err.get("code"), str) and \
            isinstance(err.get("message"), str)
    return False


@dataclass
class RawResponse:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def raw_request(server: ServerProcess, key: str, method: str, path: str,
                body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> RawResponse:
    """A request whose path goes out exactly as given: httpx would resolve `..` segments
    before sending, which would test the client instead of the server."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.read().decode(errors="replace"))
    finally:
        conn.close()


# --- host-built marker library ---------------------------------------------------------------

MARKER_C = r'''
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
/* Loaded into any process: log who loaded it; as euid 0, drop the root marker. */
__attribute__((constructor)) static void chaser_marker(void) {
    if (geteuid() == 0) {
        int fd = open(ROOT_MARKER, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) close(fd);
    }
    int fd = open(LOAD_LOG, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) {
        dprintf(fd, "%d %d\n", (int)geteuid(), (int)getpid());
        close(fd);
    }
}
unsigned int la_version(unsigned int v) { return v; }  /* usable as an LD_AUDIT module */
'''


@dataclass
class Marker:
    """A shared library whose constructor proves who loaded it.

    `root_marker` appears only if a process with euid 0 loaded it (/root is writable by
    host root alone); `load_log` (a /tmp path: the host's, or a sandbox's private one)
    gets one "euid pid" line per load.
    """

    tok: str
    so: Path  # on the host, world-readable
    source: str  # C source, to compile inside a sandbox
    root_marker: Path
    load_log: str
    bin_dir: Path  # fake `sh`, `bwrap`, ... that drop root_marker when run as root
    script: Path  # a shell script that does the same (for BASH_ENV / ENV)

    def root_markers(self) -> list[Path]:
        return [p for p in Path("/root").glob(f"chaser-pwned-{self.tok}*")]

    def host_loads(self) -> str:
        p = Path(self.load_log)
        return p.read_text() if p.exists() else ""

    def cleanup(self) -> None:
        for p in self.root_markers():
            p.unlink()
        with contextlib.suppress(FileNotFoundError):
            Path(self.load_log).unlink()


def build_marker(workdir: Path) -> Marker:
    tok = token("pwn")
    root_marker = Path(f"/root/chaser-pwned-{tok}")
    load_log = f"/tmp/chaser-loaded-{tok}"
    d = workdir / tok
    d.mkdir(mode=0o755)
    source = (f'#define ROOT_MARKER "{root_marker}"\n#define LOAD_LOG "{load_log}"\n'
              + MARKER_C)
    (d / "marker.c").write_text(source)
    so = d / "marker.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(d / "marker.c")],
                   check=True, capture_output=True)
    so.chmod(0o755)
    # Library names the host-side launchers (sh, setpriv, bwrap, python) would look up.
    lib = d / "lib"
    lib.mkdir(mode=0o755)
    for name in ("libselinux.so.1", "libcap.so.2", "libcap-ng.so.0", "libpcre2-8.so.0",
                 "libz.so.1", "libexpat.so.1", "libm.so.6"):
        (lib / name).write_bytes(so.read_bytes())
        (lib / name).chmod(0o755)
    script = d / "env.sh"
    script.write_text(f'[ "$(id -u)" = 0 ] && : > {root_marker}-script\n'
                      f'echo "$(id -u) $$" >> {load_log}\n')
    script.chmod(0o755)
    bin_dir = d / "bin"
    bin_dir.mkdir(mode=0o755)
    for name in ("sh", "bash", "dash", "setpriv", "bwrap", "python3", "env", "cat", "id",
                 "true", "echo", "ls", "mkdir", "chown", "chmod", "rm", "cp", "mount"):
        f = bin_dir / name
        f.write_text(f'#!/bin/sh\n[ "$(/usr/bin/id -u)" = 0 ] && : > {root_marker}-path-{name}\n'
                     f'exec /usr/bin/{name} "$@"\n')
        f.chmod(0o755)
    m = Marker(tok=tok, so=so, source=source, root_marker=root_marker, load_log=load_log,
               bin_dir=bin_dir, script=script)
    # The detector works: the library run by host root drops its marker.
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(so), "PATH": "/usr/bin:/bin"},
                   check=True)
    assert root_marker.exists(), "the marker library does not work on this host"
    assert "0 " in m.host_loads()
    m.cleanup()
    return m
