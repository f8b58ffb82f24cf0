"""Regressions from review: limits under concurrency, wedged agents, workspace reuse."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import httpx

from chaser.runtime.agent_client import descendants
from chaser.runtime.uids import BLOCK, FIRST_BASE
from tests.conftest import ServerProcess
from tests.types import Tenant


def test_session_limit_holds_under_concurrent_creates(tmp_root: Path) -> None:
    import tempfile
    data = Path(tempfile.mkdtemp(dir=tmp_root)) / "data"
    data.parent.chmod(0o711)
    srv = ServerProcess(data_dir=data, extra_env={"CHASER_MAX_SESSIONS_PER_TENANT": "2"}).start()
    try:
        def create(_: int) -> int:
            with srv.client() as c:
                return c.post("/v1/sessions", json={}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(create, range(8)))
        assert codes.count(201) == 2 and codes.count(429) == 6, codes
    finally:
        srv.stop()


def test_commands_cannot_stop_or_kill_the_agent(server: ServerProcess, tenant: Tenant,
                                               session_id: str) -> None:
    c = tenant.client
    url = f"/v1/sessions/{session_id}/exec"
    # The agent is the sandbox's init (pid 1): signals from inside never reach it.
    r = c.post(url, json={"command": "kill -STOP 1; kill -KILL 1; kill -TERM 1; sleep 0.2; "
                                     "grep State /proc/1/status", "timeout_ms": 5000}).json()
    assert r["output"] == "State:\tS (sleeping)\n", r
    # A command that freezes its own shepherd still times out, and takes its tree along.
    t = time.monotonic()
    r = c.post(url, json={"command": "sleep 300 & kill -STOP $PPID; sleep 30",
                          "timeout_ms": 1500}, timeout=30).json()
    assert r["status"] == "timed_out" and time.monotonic() - t < 10, r
    r = c.post(url, json={"command": "pgrep -x sleep || echo none"}, timeout=30).json()
    assert r["output"] == "none\n", r
    assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200


def test_workspace_exec_does_not_take_over_a_users_session(tenant: Tenant) -> None:
    c = tenant.client
    c.post("/v1/sessions", json={"workspace": "mine", "env": {"FOO": "session"}, "cwd": "/tmp",
                                 "limits": {"memory_mb": 64}})
    r = c.post("/v1/exec", json={"workspace": "mine", "command": "echo ${FOO:-unset}; pwd"}).json()
    assert r["output"] == "unset\n/workspace\n"


def test_limits_are_validated(tenant: Tenant) -> None:
    c = tenant.client
    assert c.post("/v1/sessions", json={"limits": {"cpus": 0.001}}).status_code == 422
    assert c.post("/v1/sessions", json={"limits": {"memry_mb": 64}}).status_code == 422


def test_ephemeral_output_cannot_fake_a_bad_cwd(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={"command": "printf \"bwrap: Can't chdir to x\"; exit 1"})
    assert r.status_code == 200 and r.json()["exit_code"] == 1
    for cwd in ("/tmp", "/var/tmp", "/usr/lib", "/"):
        r = tenant.client.post("/v1/exec", json={"command": "pwd", "cwd": cwd})
        assert r.status_code == 200 and r.json()["output"] == cwd + "\n", r.text


def test_stream_never_splits_valid_utf8(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    r = c.post(f"/v1/sessions/{session_id}/exec",
               json={"command": "python3 -c \"print('€' * 100000)\""}).json()
    with c.stream("GET", f"/v1/sessions/{session_id}/commands/{r['command_id']}/stream") as s:
        body = s.read().decode()
    assert "\\ufffd" not in body and "data_b64" not in body
    assert body.count("€") == 100000


def test_warm_sandboxes_never_share_a_host_uid(server: ServerProcess, tenant: Tenant) -> None:
    for _ in range(3):
        tenant.client.post("/v1/exec", json={"command": "true"})
    time.sleep(1.5)  # the pool refills once runs pause
    agents = []
    for pid in descendants(server.proc.pid):  # type: ignore[union-attr]
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            status = open(f"/proc/{pid}/status").read()
            nspid = status.split("NSpid:")[1].split("\n")[0].split()
            # the agent itself (pid 1 inside: not its bwrap parents, nor the shepherds
            # forked from it), in sandboxes without a workspace
            if (cmdline.split(b"\0")[0] in (b"/.chaser/agent", b"/usr/bin/python3")
                    and nspid[-1] == "1"
                    and (uid - FIRST_BASE) % BLOCK >= BLOCK // 2):
                agents.append(uid)
        except FileNotFoundError:
            pass
    assert len(agents) >= 2
    assert len(set(agents)) == len(agents), agents


def test_commands_cannot_trace_or_inspect_the_agent(tenant: Tenant, session_id: str) -> None:
    # pid 1 is the agent, $PPID the command's shepherd (a fork of it, undumpable too)
    for pid in ("1", "$PPID"):
        r = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={"command": (
            f"ls /proc/{pid}/fd >/dev/null 2>&1 && echo fds-readable; "
            f"cat /proc/{pid}/environ >/dev/null 2>&1 && echo environ-readable; "
            "python3 -c 'import ctypes, sys; "
            f"print(\"attach\", ctypes.CDLL(None).ptrace(16, int(sys.argv[1]), 0, 0))' {pid}; "
            "ls /proc/self/fd >/dev/null && echo own-fds-ok")}).json()
        assert r["output"] == "attach -1\nown-fds-ok\n", r["output"]


SYSCALL_PROBE = (
    "grep '^Seccomp:' /proc/self/status; python3 -c \""
    "import ctypes, errno\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for name, nr in (('keyctl', 250), ('bpf', 321), ('userfaultfd', 323), "
    "('io_uring_setup', 425), ('perf_event_open', 298), ('x32_getpid', 0x40000000 | 39)):\n"
    "    ctypes.set_errno(0)\n"
    "    rc = libc.syscall(nr, 0, 0, 0, 0, 0)\n"
    "    print(name, rc, errno.errorcode.get(ctypes.get_errno()))\n"
    "print('getpid', libc.syscall(39) > 0)\"")


def test_seccomp_refuses_risky_kernel_interfaces(server: ServerProcess, tenant: Tenant,
                                                 session_id: str) -> None:
    if not httpx.get(server.url + "/healthz").json()["limits"].get("seccomp"):
        import pytest
        pytest.skip("no seccomp filter on this architecture")
    expected = ("Seccomp:\t2\nkeyctl -1 EPERM\nbpf -1 EPERM\nuserfaultfd -1 EPERM\n"
                "io_uring_setup -1 EPERM\nperf_event_open -1 EPERM\nx32_getpid -1 EPERM\n"
                "getpid True\n")
    c = tenant.client
    for url, body in ((f"/v1/sessions/{session_id}/exec", {}), ("/v1/exec", {"ephemeral": True}),
                      ("/v1/exec", {"workspace": "sec"})):
        r = c.post(url, json={"command": SYSCALL_PROBE, **body}).json()
        assert r["output"] == expected, (url, body, r["output"])


def test_commands_set_their_own_limits_but_not_the_agents(tenant: Tenant, session_id: str) -> None:
    """prlimit64 on another process is refused (PID 1's limits would cripple the agent);
    a command's own limits (`ulimit`, setrlimit) are its business."""
    r = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={
        "command": "ulimit -n 64 && ulimit -n; prlimit --pid 1 --nofile=3:3 2>&1; "
                   "prlimit --pid $$ --nofile=32:32 2>&1 >/dev/null || echo refused-self-by-pid",
        "shell": "bash"}).json()
    lines = r["output"].splitlines()
    assert lines[0] == "64", r
    assert "Operation not permitted" in lines[1], r
    after = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={"command": "echo ok"})
    assert after.json()["output"] == "ok\n"
