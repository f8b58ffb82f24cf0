"""Regression tests for the holes a tenant-side review found: each performs the attack.

Every attack is made with an ordinary (non-admin) key through the public API, as the
review made it; each test then checks the server (and other tenants) are unharmed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaser.runtime.agent_client import descendants
from tests.conftest import ServerProcess, kernel_log_marker, kernel_log_since
from tests.types import NewTenant, Tenant

EVIL_SO = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void pwn(void) {
    char path[256];
    /* host /tmp: only a process outside every sandbox sees it (theirs is a tmpfs) */
    snprintf(path, sizeof path, "/tmp/chaser-preload-%s-%d", "TOKEN", (int)geteuid());
    FILE *f = fopen(path, "w"); if (f) fclose(f);
    if (geteuid() == 0) { f = fopen("/root/chaser-pwned-TOKEN", "w"); if (f) fclose(f); }
}
"""
HOSTILE_ENV_NAMES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "BASH_ENV", "ENV", "IFS",
                     "SHELLOPTS")


def markers(token: str) -> list[str]:
    found = [p for p in os.listdir("/tmp") if token in p]
    return found + (["/root"] if Path(f"/root/chaser-pwned-{token}").exists() else [])


def healthy(srv: ServerProcess, other: httpx.Client) -> None:
    """The server answers at once and another tenant's sandbox still works."""
    t = time.monotonic()
    assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - t < 2
    r = other.post("/v1/exec", json={"ephemeral": True, "command": "echo ok"}, timeout=30)
    assert r.json()["output"] == "ok\n", r.text


@pytest.fixture
def cold_server(tmp_root: Path) -> Iterator[ServerProcess]:
    """A server with no warm pool: every one-shot run takes the fresh-sandbox path."""
    data = Path(os.path.join(str(tmp_root), "cold-" + secrets.token_hex(4), "data"))
    data.parent.mkdir(mode=0o711)
    srv = ServerProcess(data_dir=data, extra_env={"CHASER_WARM_POOL": "0"}).start()
    yield srv
    srv.stop()


def make_tenant(srv: ServerProcess) -> httpx.Client:
    with srv.client() as admin:
        key = admin.post("/v1/keys", json={"name": "t"}).json()["key"]
    return srv.client(key)


# -- 1. nothing from a request reaches a privileged host process ----------------------

def test_request_env_never_reaches_a_host_process(cold_server: ServerProcess) -> None:
    token = secrets.token_hex(6)
    c, other = make_tenant(cold_server), make_tenant(cold_server)
    ws = "evil-" + token
    r = c.post("/v1/exec", json={"workspace": ws, "command": (
        f"cat > e.c <<'EOF'\n{EVIL_SO.replace('TOKEN', token)}\nEOF\n"
        "gcc -shared -fPIC -o evil.so e.c && mkdir -p bin && "
        "for b in sh setpriv bwrap echo env python3; do "
        f"printf '#!/bin/sh\\ntouch /tmp/chaser-path-{token}-$b\\n' > bin/$b; chmod +x bin/$b; done; "
        f"printf 'touch /tmp/chaser-rc-{token}\\n' > rc; chmod 644 evil.so; echo built")})
    assert r.json()["output"].endswith("built\n"), r.text
    files = next(cold_server.data_dir.glob("workspaces/*/files/evil.so")).parent
    hostile = {"LD_PRELOAD": str(files / "evil.so"), "LD_LIBRARY_PATH": str(files),
               "PATH": f"{files / 'bin'}:/usr/bin:/bin", "BASH_ENV": str(files / "rc"),
               "ENV": str(files / "rc"), "IFS": "/", "SHELLOPTS": "xtrace"}

    def one_shot(_: int) -> dict[str, Any]:
        return dict(c.post("/v1/exec", json={"ephemeral": True, "command": "true",
                                             "env": hostile}).json())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_shot, range(8)))
    assert all(r.get("exit_code") is not None for r in results), results
    sid = c.post("/v1/sessions", json={"env": hostile}).json()["id"]
    c.post(f"/v1/sessions/{sid}/exec", json={"command": "true", "env": hostile})
    c.post("/v1/exec", json={"workspace": ws, "command": "true", "env": hostile})
    assert markers(token) == []
    # The server's private umask is not the commands': their files are 0644 as usual.
    r = c.post("/v1/exec", json={"workspace": ws, "command": "touch m; stat -c %a m"}).json()
    assert r["output"] == "644\n", r
    # ...and the request's values are applied inside the sandbox, as asked.
    r = c.post("/v1/exec", json={"ephemeral": True, "env": {"LD_LIBRARY_PATH": "/x",
                                                            "MY_VAR": "v"},
                                 "command": "echo \"$MY_VAR $LD_LIBRARY_PATH\""}).json()
    assert r["output"] == "v /x\n", r
    healthy(cold_server, other)


def test_request_data_is_in_no_host_process_environ_or_argv(cold_server: ServerProcess) -> None:
    """While one-shot and session commands run, no process outside the sandboxes carries
    the request's env, command or cwd in its environment or argv."""
    token = secrets.token_hex(8)
    c = make_tenant(cold_server)
    sid = c.post("/v1/sessions", json={"env": {"S_" + token: token}}).json()["id"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one = pool.submit(c.post, "/v1/exec", json={
            "ephemeral": True, "command": f"sleep 2; echo {token}", "cwd": "/tmp",
            "env": {"E_" + token: token}})
        two = pool.submit(c.post, f"/v1/sessions/{sid}/exec", json={
            "command": f"sleep 2; echo {token}", "env": {"E_" + token: token}})
        time.sleep(1.0)
        seen = []
        assert cold_server.proc is not None
        for pid in descendants(cold_server.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                if len(status.split("NSpid:")[1].split("\n")[0].split()) > 1:
                    continue  # inside a sandbox's pid namespace: that is where it belongs
                blob = Path(f"/proc/{pid}/environ").read_bytes()
                blob += Path(f"/proc/{pid}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            seen.append(pid)
            assert token.encode() not in blob, (pid, blob[:300])
        assert seen, "no host-side launcher process was found to inspect"
        assert one.result().json()["output"] == token + "\n"
        assert two.result().json()["output"] == token + "\n"


# -- 2. no process a command can reach holds a server channel --------------------------

PIDFD_PROBE = r"""
import ctypes, os, json
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    if pid == os.getpid():
        continue
    pidfd = libc.syscall(434, pid, 0)           # pidfd_open
    if pidfd < 0:
        out[pid] = 'no-pidfd'
        continue
    got = []
    for fd in range(0, 16):
        r = libc.syscall(438, pidfd, fd, 0)     # pidfd_getfd
        if r >= 0:
            got.append(os.readlink('/proc/self/fd/%d' % r))
    out[pid] = got
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["session", "workspace", "ephemeral"])
def test_no_reachable_process_holds_a_server_channel(server: ServerProcess, tenant: Tenant,
                                                     new_tenant: NewTenant, kind: str) -> None:
    c = tenant.client
    body = {"command": "python3 - <<'EOF'\n" + PIDFD_PROBE + "\nEOF", "timeout_ms": 20000}
    if kind == "session":
        sid = c.post("/v1/sessions", json={}).json()["id"]
        c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30", "background": True})
        r = c.post(f"/v1/sessions/{sid}/exec", json=body)
    else:
        target = {"workspace": "pidfd"} if kind == "workspace" else {"ephemeral": True}
        r = c.post("/v1/exec", json={**body, **target})
    stolen = json.loads(r.json()["output"])
    for pid, fds in stolen.items():
        assert not [f for f in fds if "socket" in f], (pid, fds)  # the agent's channel
    healthy(server, new_tenant().client)


async def test_a_hostile_agent_ends_only_its_own_sandbox() -> None:
    """Play a compromised agent against the server's protocol reader: malformed, huge,
    flooding and forged messages each end that sandbox and never stall the loop."""
    import asyncio
    import socket as socketlib

    from chaser.runtime.agent_client import AgentSandbox

    attacks: list[list[bytes]] = [
        [b"not json"],
        [b"x" * 100_000],
        [json.dumps({"op": "exit", "id": 99, "pid": 1, "code": 0, "signal": None}).encode()],
        [json.dumps({"op": "started", "id": 5, "pid": 7}).encode()],
        [json.dumps({"op": "ready"}).encode()] * 2,
        [json.dumps({"op": "exit", "id": 1, "pid": 2**70, "code": 0}).encode()],
        [json.dumps({"op": "?" * 3000}).encode()],
    ]
    for packets in attacks:
        server_end, agent_end = socketlib.socketpair(socketlib.AF_UNIX, socketlib.SOCK_SEQPACKET)
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        sandbox = AgentSandbox("hostile", proc, server_end, None)
        agent_end.setblocking(False)
        for p in [json.dumps({"op": "ready"}).encode(), *packets]:
            agent_end.send(p)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.get_running_loop().create_task(ticker())
        await asyncio.wait_for(sandbox.wait_closed(), 5)
        t.cancel()
        assert sandbox.failure and "ended" in sandbox.failure, packets[:1]
        await sandbox.close()
        agent_end.close()

    # A flood of well-formed messages is read in bounded slices: the loop keeps turning.
    server_end, agent_end = socketlib.socketpair(socketlib.AF_UNIX, socketlib.SOCK_SEQPACKET)
    agent_end.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_SNDBUF, 4 * 1024 * 1024)
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    sandbox = AgentSandbox("flood", proc, server_end, None)
    agent_end.send(json.dumps({"op": "ready"}).encode())
    agent_end.setblocking(False)
    for _ in range(5000):
        try:
            agent_end.send(json.dumps({"op": "exit", "id": 0, "pid": 1}).encode())
        except BlockingIOError:
            break
    await asyncio.wait_for(sandbox.wait_closed(), 5)
    assert sandbox.failure
    await sandbox.close()
    agent_end.close()


# -- 3. every process of a command ends with it ----------------------------------------

def host_sleepers(marker: str, server: ServerProcess) -> list[str]:
    return [line for line in server.sandbox_processes() if marker in line]


@pytest.mark.parametrize("escape", [
    "setsid sleep {m} &", "( (sleep {m} &) & );", "nohup sleep {m} >/dev/null 2>&1 &",
    "sleep {m} & disown;",
])
def test_kills_and_timeouts_end_the_whole_tree(server: ServerProcess, tenant: Tenant,
                                               escape: str) -> None:
    c = tenant.client
    sid = c.post("/v1/sessions", json={}).json()["id"]
    marker = f"30{secrets.randbelow(10**6)}.5"
    cmd = escape.format(m=marker)
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": f"{cmd} sleep 301",
                                                 "shell": "bash", "timeout_ms": 1500}).json()
    assert r["status"] == "timed_out", r
    time.sleep(0.5)
    assert host_sleepers(marker, server) == []
    bg = c.post(f"/v1/sessions/{sid}/exec", json={"command": f"{cmd} sleep 302",
                                                  "shell": "bash", "background": True}).json()
    time.sleep(0.5)
    assert host_sleepers(marker, server), "the escape did not even start"
    c.post(f"/v1/sessions/{sid}/commands/{bg['command_id']}/kill", json={"signal": "KILL"})
    time.sleep(0.5)
    assert host_sleepers(marker, server) == []


# -- 4. state is private -----------------------------------------------------------------

def test_state_is_unreadable_by_other_host_users(fresh_server: ServerProcess) -> None:
    secret = secrets.token_hex(8)
    c = make_tenant(fresh_server)
    sid = c.post("/v1/sessions", json={"env": {"TOKEN": secret}}).json()["id"]
    c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo $TOKEN"})
    data = fresh_server.data_dir
    readable = []
    for path in data.rglob("*"):
        rel = path.relative_to(data).parts
        if rel[0] in ("runtime", "workspaces") or path.is_symlink():
            continue  # the image root (public by design) and tenants' own files
        mode = path.stat().st_mode
        if mode & 0o077 and not (path.is_dir() and mode & 0o777 == 0o711):
            readable.append((str(path), oct(mode)))
    assert readable == []
    for name in ("chaser.db", "chaser.db-wal", "chaser.db-shm", "server.lock"):
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "cat", str(data / name)], capture_output=True)
        assert probe.returncode != 0 and b"Permission denied" in probe.stderr, name


# -- 5. one server per data dir ---------------------------------------------------------

def test_a_second_server_on_the_data_dir_refuses_and_harms_nothing(
        fresh_server: ServerProcess) -> None:
    c = make_tenant(fresh_server)
    sid = c.post("/v1/sessions", json={}).json()["id"]
    second = ServerProcess(data_dir=fresh_server.data_dir)
    with pytest.raises(RuntimeError) as err:
        second.start(timeout=20)
    assert f"another Chaser server (pid {fresh_server.proc.pid})" in str(err.value)  # type: ignore[union-attr]
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo alive"}).json()
    assert r["output"] == "alive\n"


# -- 6. host uids never collide between servers -----------------------------------------

def workspace_uid(srv: ServerProcess, c: httpx.Client, ws: str) -> int:
    """The host uid a workspace's sandbox runs as: the owner of a file it just made."""
    name = "uid-probe-" + secrets.token_hex(4)
    assert c.post("/v1/exec", json={"workspace": ws, "command": f"touch {name}"}).json()[
        "exit_code"] == 0
    return next(srv.data_dir.glob(f"workspaces/*/files/{name}")).stat().st_uid


def test_two_servers_never_share_host_uids(tmp_root: Path) -> None:
    base = tmp_root / ("uids-" + secrets.token_hex(4))
    base.mkdir(mode=0o711)
    a = ServerProcess(data_dir=base / "a").start()
    b = ServerProcess(data_dir=base / "b").start()
    try:
        ca, cb = make_tenant(a), make_tenant(b)
        ua, ub = workspace_uid(a, ca, "w"), workspace_uid(b, cb, "w")  # id 1 in both
        assert ua != ub
        ca.post("/v1/exec", json={"workspace": "w", "command": "echo mine > f"})
        a.stop()
        # A copy of a's data dir beside it gets its own block; its files follow.
        subprocess.run(["cp", "-a", str(base / "a"), str(base / "copy")], check=True)
        a.start()
        copy = ServerProcess(data_dir=base / "copy").start()
        try:
            key = ca.headers["Authorization"].split()[1]  # the copy holds the same keys
            cc = copy.client(key)
            uc = workspace_uid(copy, cc, "w")
            assert len({workspace_uid(a, a.client(key), "w"), ub, uc}) == 3
            r = cc.post("/v1/exec", json={"workspace": "w", "command": "cat f; echo x >> f"})
            assert r.json()["exit_code"] == 0 and r.json()["output"] == "mine\n", r.text
        finally:
            copy.stop()
    finally:
        a.stop()
        b.stop()


# -- 7. no cwd oracle --------------------------------------------------------------------

def test_cwd_answers_the_same_for_every_missing_path(server: ServerProcess, tenant: Tenant) -> None:
    hidden = Path("/root") / ("chaser-secret-" + secrets.token_hex(4))
    hidden.mkdir(mode=0o700)
    try:
        answers = set()
        for cwd in (str(hidden), "/root", "/var/lib/dpkg", "/etc/ssh", str(server.data_dir),
                    "/no/such/dir", "/var/tmp/nope", "/usr/nope"):
            r = tenant.client.post("/v1/exec", json={"ephemeral": True, "command": "pwd",
                                                     "cwd": cwd})
            answers.add((r.status_code, r.text))
        assert len(answers) == 1, answers
        assert next(iter(answers))[0] == 409  # invalid_cwd: the sandbox's state
    finally:
        hidden.rmdir()


# -- 9. a fork bomb's leftovers never break the next call ---------------------------------

def test_fork_bomb_then_the_workspace_works(server: ServerProcess, tenant: Tenant) -> None:
    c = tenant.client
    ws = "bomb-" + secrets.token_hex(3)
    c.post("/v1/exec", json={"workspace": ws, "timeout_ms": 3000, "shell": "bash",
                             "command": "bomb(){ bomb | bomb & }; bomb; sleep 3"})
    deadline = time.monotonic() + 20  # the bomb's processes may still be exiting
    while True:
        r = c.post("/v1/exec", json={"workspace": ws, "command": "echo fine"})
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        assert r.json()["error"]["code"] == "pids_limit" and "process limit" in r.text
        time.sleep(0.5)
    assert r.status_code == 200 and r.json()["output"] == "fine\n", r.text


def test_a_sandbox_at_its_pids_limit_says_so(server: ServerProcess, tenant: Tenant) -> None:
    c = tenant.client
    sid = c.post("/v1/sessions", json={"limits": {"pids": 16}}).json()["id"]
    c.post(f"/v1/sessions/{sid}/exec", json={"background": True, "command":
                                              "while :; do sleep 100 & done 2>/dev/null"})
    time.sleep(1.0)
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo hi"})
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "pids_limit" and "process limit" in r.text


# -- found by the red team after the fixes above ------------------------------------------

def test_a_storm_of_kills_over_many_processes_never_stalls_the_server(
        server: ServerProcess, tenant: Tenant) -> None:
    """Kills used to scan every process of the sandbox on the event loop."""
    c = tenant.client
    sid = c.post("/v1/sessions", json={"limits": {"pids": 4000}}).json()["id"]
    url = f"/v1/sessions/{sid}/exec"
    r = c.post(url, json={"command": "for i in $(seq 1500); do sleep 1000 & done; echo up",
                          "timeout_ms": 60000})
    assert r.json()["output"] == "up\n", r.text
    cids = [c.post(url, json={"command": "sleep 1000", "background": True}).json()["command_id"]
            for _ in range(40)]
    slowest = 0.0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        kills = [pool.submit(c.post, f"/v1/sessions/{sid}/commands/{cid}/kill",
                             json={"signal": "KILL"}) for cid in cids]
        while not all(k.done() for k in kills):
            t = time.monotonic()
            httpx.get(server.url + "/healthz", timeout=30)
            slowest = max(slowest, time.monotonic() - t)
    assert slowest < 2.0, slowest  # it was 27 s; a loaded 2-core CI machine adds some
    deadline = time.monotonic() + 60
    while True:
        statuses = [c.get(f"/v1/sessions/{sid}/commands/{cid}").json()["status"]
                    for cid in cids]
        if "running" not in statuses or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert statuses == ["killed"] * len(cids), statuses
    c.delete(f"/v1/sessions/{sid}")


def cgroup_dirs(srv: ServerProcess) -> int:
    """The one-shot sandbox cgroups of this server (its instance: a hash of its data dir)."""
    instance = hashlib.sha256(str((srv.data_dir / "runtime").resolve()).encode()).hexdigest()[:12]
    return sum(1 for _ in Path("/sys/fs/cgroup").glob(f"**/chaser/{instance}/*/eph_*"))


def test_text_no_os_can_hold_is_refused_before_anything_starts(server: ServerProcess,
                                                               tenant: Tenant) -> None:
    """A lone surrogate in env or cwd used to fail after the sandbox's cgroup existed."""
    before = cgroup_dirs(server)
    raw = [b'{"ephemeral":true,"command":"true","env":{"A":"\\ud800"}}',
           b'{"ephemeral":true,"command":"true","cwd":"/\\ud800"}',
           b'{"ephemeral":true,"command":"echo \\udfff"}',
           b'{"ephemeral":true,"command":"cat","stdin":"\\ud800"}']
    for _ in range(10):
        for body in raw:
            r = tenant.client.post("/v1/exec", content=body,
                                   headers={"Content-Type": "application/json"})
            assert r.status_code == 422, r.text
    time.sleep(0.5)
    assert cgroup_dirs(server) <= before


def test_a_killed_shepherd_takes_deep_chains_along(server: ServerProcess, tenant: Tenant) -> None:
    marker = f"50{secrets.randbelow(10**6)}.5"
    c = tenant.client
    sid = c.post("/v1/sessions", json={}).json()["id"]
    r = c.post(f"/v1/sessions/{sid}/exec", json={"shell": "bash", "timeout_ms": 30000, "command": (
        f"chain(){{ if [ $1 -gt 0 ]; then chain $(($1-1)) & wait; else sleep {marker}; fi; }}; "
        "chain 300 & sleep 3; kill -9 $PPID; sleep 2")})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while host_sleepers(marker, server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host_sleepers(marker, server) == []
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "ps -e | wc -l"}).json()
    assert int(r["output"]) < 10, r  # only the agent, a shepherd and this command


# -- found by the second red team ----------------------------------------------------------

def test_another_tenants_running_one_shot_keeps_its_output(server: ServerProcess,
                                                            new_tenant: NewTenant) -> None:
    """One-shot logs are not a session's: the log bounds never drop a running one."""
    victim, attacker = new_tenant().client, new_tenant().client
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        mine = pool.submit(victim.post, "/v1/exec", json={
            "ephemeral": True, "command": "head -c 100000 /dev/zero | tr '\\0' V; sleep 8; "
                                          "echo END", "max_output_bytes": 200000})
        time.sleep(1)
        floods = [pool.submit(attacker.post, "/v1/exec", json={
            "ephemeral": True, "command": "head -c 120000000 /dev/zero; sleep 6",
            "max_output_bytes": 10, "limits": {"memory_mb": 64}}) for _ in range(10)]
        r = mine.result().json()
        for f in floods:
            f.result()
    assert r["output"] == "V" * 100000 + "END\n" and not r["output_truncated"], r["output"][-50:]


def test_concurrent_starts_never_resize_a_disk_in_use(server: ServerProcess,
                                                      tenant: Tenant) -> None:
    """Two sessions racing onto one new workspace with different disk sizes: one disk
    operation at a time, never a check or resize of a disk that is mounted or in use."""
    marker = kernel_log_marker("chaser-race-start")
    c = tenant.client
    for n in range(4):
        ws = f"race{n}-{secrets.token_hex(3)}"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            small = pool.submit(c.post, "/v1/sessions", json={"workspace": ws,
                                                              "limits": {"disk_mb": 64}})
            time.sleep(0.005 * n)
            big = pool.submit(c.post, "/v1/sessions", json={"workspace": ws,
                                                            "limits": {"disk_mb": 512}})
            codes = sorted([small.result().status_code, big.result().status_code])
        assert codes in ([201, 201], [201, 409]), codes
        r = c.post("/v1/exec", json={"workspace": ws, "command": "echo ok > f && cat f"})
        assert r.json().get("output") == "ok\n", r.text
    assert "bad block bitmap checksum" not in kernel_log_since(marker)


def test_a_large_valid_request_never_ends_its_session(server: ServerProcess,
                                                      tenant: Tenant) -> None:
    """3.8 MB of non-ASCII environment (within the 4 MiB body limit): escaped as \\uXXXX
    it overflowed the agent's socket and the session was ended, its background commands
    with it. It must get an answer of its own and leave the session running."""
    c = tenant.client
    sid = c.post("/v1/sessions", json={}).json()["id"]
    bg = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 600", "background": True})
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo ok",
                                                  "env": {"BIG": "\u00e9" * 1_900_000}})
    # Too large for one environment string (execve's 128 KiB): the command cannot run,
    # which is the command's failure, not the sandbox's.
    assert r.status_code in (200, 413), r.text
    if r.status_code == 200:
        assert r.json()["exit_code"] == 127 and "too long" in r.json()["output"], r.text
    assert c.get(f"/v1/sessions/{sid}").json()["status"] == "running"
    cmd = c.get(f"/v1/sessions/{sid}/commands/{bg.json()['command_id']}").json()
    assert cmd["status"] == "running", cmd
    after = c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo still"})
    assert after.json()["output"] == "still\n", after.text
