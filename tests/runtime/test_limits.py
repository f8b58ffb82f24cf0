"""Per-sandbox resource limits through cgroups, tried for real through the HTTP API.

A fork bomb, a memory hog and a CPU hog each run in a session of their own, with the
limits asked for at session creation; the server and a bystander session of another
tenant must stay responsive. Where `GET /healthz` says a limit is not enforced on this
host, its test is skipped with that reason. Host-side, the session's cgroup is read to
check that the limit was written where the kernel enforces it.
"""

from __future__ import annotations

import contextlib
import glob
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def enforced(server: ServerProcess) -> dict[str, Any]:
    r = httpx.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 200, r.text
    limits = r.json().get("limits")
    assert isinstance(limits, dict), r.json()
    return limits


def need(enforced: dict[str, Any], what: str) -> None:
    if not enforced.get(what):
        pytest.skip(f"GET /healthz reports the {what} limit as not enforced on this host "
                    f"(cgroup mode {enforced.get('cgroup')!r})")


def cgroup_dir(enforced: dict[str, Any], controller: str, session_id: str) -> Path | None:
    """The host directory of a session's cgroup for `controller`, if it can be found."""
    mounts: dict[str, str] = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                mounts.setdefault("cgroup2", parts[1])
            elif parts[2] == "cgroup" and controller in parts[3].split(","):
                mounts.setdefault(controller, parts[1])
    base = mounts.get("cgroup2" if enforced.get("cgroup") == "v2" else controller)
    if base is None:
        return None
    hits = glob.glob(f"{base}/chaser/**/{session_id}", recursive=True)
    return Path(hits[0]) if hits else None


class Session:
    def __init__(self, client: httpx.Client, **body: Any) -> None:
        self.client = client
        r = client.post("/v1/sessions", json=body)
        assert r.status_code == 201, r.text
        self.row = r.json()
        self.id = str(self.row["id"])

    def exec(self, command: str, timeout_ms: int = 10000, **extra: Any) -> dict[str, Any]:
        r = self.client.post(f"/v1/sessions/{self.id}/exec",
                             json={"command": command, "timeout_ms": timeout_ms, **extra})
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    def delete(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.client.delete(f"/v1/sessions/{self.id}")


@pytest.fixture
def sessions(new_tenant: NewTenant) -> Iterator[Any]:
    made: list[Session] = []

    def make(tenant: Tenant | None = None, **body: Any) -> Session:
        s = Session((tenant or new_tenant()).client, **body)
        made.append(s)
        return s

    yield make
    for s in made:
        s.delete()


def healthz_ok(server: ServerProcess, budget: float = 5.0) -> float:
    """GET /healthz; returns its latency (fails if slower than `budget`)."""
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    t0 = time.monotonic()
    r = httpx.get(server.url + "/healthz", timeout=budget)
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    return took


def test_fork_bomb_hits_the_pids_limit(server: ServerProcess, enforced: dict[str, Any],
                                       sessions: Any) -> None:
    need(enforced, "pids")
    bomb = sessions(limits={"pids": 64})
    assert bomb.row["limits"]["pids"] == 64
    bystander = sessions()
    assert bystander.exec("echo ready")["output"] == "ready\n"
    cg = cgroup_dir(enforced, "pids", bomb.id)
    if cg is not None:
        assert (cg / "pids.max").read_text().strip() == "64"

    started = bomb.exec(":(){ :|:& };:; while true; do sleep 1; done", timeout_ms=6000, background=True, shell="bash")
    assert "command_id" in started, started
    deadline = time.monotonic() + 6
    peak = 0
    rounds = 0
    # During the bomb: the server answers and another session runs commands.
    while time.monotonic() < deadline:
        healthz_ok(server)
        res = bystander.exec("echo alive; ls / | wc -l", timeout_ms=10000)
        assert res["exit_code"] == 0 and res["output"].startswith("alive\n"), res
        if cg is not None:
            with contextlib.suppress(OSError, ValueError):
                peak = max(peak, int((cg / "pids.current").read_text()))
        rounds += 1
        time.sleep(0.3)
    assert rounds >= 3
    if cg is not None:
        assert peak <= 64, peak
        events = (cg / "pids.events").read_text() if (cg / "pids.events").exists() else ""
        hit = events.split()[1] if events.startswith("max") else None
        assert peak >= 60 or (hit is not None and int(hit) > 0), (peak, events)
    # The bomb's own command saw forks fail.
    cmd_id = started["command_id"]
    end = time.monotonic() + 20
    while time.monotonic() < end:
        cmd = bomb.client.get(f"/v1/sessions/{bomb.id}/commands/{cmd_id}").json()
        if cmd["status"] != "running":
            break
        time.sleep(0.2)
    else:
        pytest.fail("the bomb outlived its timeout_ms")
    assert cmd["status"] in ("timed_out", "killed"), cmd
    out = cmd["output"].lower()
    assert "fork" in out or "resource temporarily unavailable" in out, cmd["output"][-500:]
    # After: deleting the bomb's session frees everything; the server is healthy.
    bomb.delete()
    healthz_ok(server)
    assert bystander.exec("echo after")["output"] == "after\n"
    if cg is not None:
        end = time.monotonic() + 10
        while cg.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert not cg.exists(), "the bomb's cgroup outlived its session"


def test_ephemeral_fork_bomb_is_contained(server: ServerProcess, enforced: dict[str, Any],
                                         tenant: Tenant, sessions: Any) -> None:
    """An ephemeral sandbox has the default pids limit; its bomb dies with its timeout."""
    need(enforced, "pids")
    bystander = sessions()
    result: dict[str, Any] = {}

    def bomb() -> None:
        r = tenant.client.post("/v1/exec", json={"ephemeral": True, "timeout_ms": 3000,
                                                 "shell": "bash", "command": ":(){ :|:& };:; while true; do sleep 1; done"},
                                   timeout=60)
        result["r"] = r

    t = threading.Thread(target=bomb)
    t.start()
    time.sleep(1.0)
    healthz_ok(server)
    assert bystander.exec("echo alive")["output"] == "alive\n"
    t.join(60)
    assert not t.is_alive(), "the ephemeral bomb's exec did not return"
    r = result["r"]
    assert r.status_code == 200, r.text
    assert r.json()["timed_out"] is True, r.json()
    healthz_ok(server)
    assert bystander.exec("echo after")["output"] == "after\n"


MEMORY_HOG = r"""
import sys
chunks = []
for i in range(32):                       # 32 x 16 MiB = 512 MiB, every page touched
    chunks.append(b"\x01" * (16 << 20))
    print("allocated", (i + 1) * 16, "MiB", flush=True)
print("survived")
"""


def test_memory_hog_is_killed(server: ServerProcess, enforced: dict[str, Any],
                              sessions: Any) -> None:
    need(enforced, "memory")
    hog = sessions(limits={"memory_mb": 128})
    assert hog.row["limits"]["memory_mb"] == 128
    bystander = sessions()
    cg = cgroup_dir(enforced, "memory", hog.id)
    if cg is not None:
        limit_file = cg / ("memory.max" if enforced.get("cgroup") == "v2" else "memory.limit_in_bytes")
        assert int(limit_file.read_text()) == 128 * 1024 * 1024
    res = hog.exec("python3 -", stdin=MEMORY_HOG, timeout_ms=30000)
    assert "survived" not in res["output"], res
    assert res["exit_code"] != 0 or res["status"] == "killed", res
    assert res["status"] != "timed_out", res
    # It got somewhere before dying, but not past 4x the limit.
    assert "allocated 16 MiB" in res["output"], res["output"][-300:]
    healthz_ok(server)
    assert bystander.exec("echo alive")["output"] == "alive\n"
    # The hog's session is either still usable or cleanly stopped, never wedged.
    row = hog.client.get(f"/v1/sessions/{hog.id}").json()
    if row["status"] == "running":
        assert hog.exec("echo ok")["output"] == "ok\n"


CPU_HOG = r"""
import os, time
t0 = time.monotonic()
kids = []
for _ in range(2):                        # two busy children: up to 2 CPUs if unlimited
    pid = os.fork()
    if pid == 0:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            pass
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
t = os.times()
print("cpu_per_wall %.3f" % ((t.children_user + t.children_system) / (time.monotonic() - t0)))
"""


def test_cpu_hog_is_throttled(server: ServerProcess, enforced: dict[str, Any],
                              sessions: Any) -> None:
    need(enforced, "cpu")
    hog = sessions(limits={"cpus": 0.5})
    assert hog.row["limits"]["cpus"] == 0.5
    cg = cgroup_dir(enforced, "cpu", hog.id)
    if cg is not None:
        if enforced.get("cgroup") == "v2":
            assert (cg / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            assert int((cg / "cpu.cfs_quota_us").read_text()) == 50000
            assert int((cg / "cpu.cfs_period_us").read_text()) == 100000
    res = hog.exec("python3 -", stdin=CPU_HOG, timeout_ms=20000)
    assert res["exit_code"] == 0, res
    ratio = float(res["output"].split("cpu_per_wall")[1].split()[0])
    # Two busy processes would use up to 2 CPUs; the limit holds them near 0.5.
    assert 0.05 < ratio < 0.8, ratio
    healthz_ok(server)
