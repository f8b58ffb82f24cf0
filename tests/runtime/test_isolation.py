"""Sandbox isolation, tried for real through the HTTP API.

Every test here runs an escape attempt inside a sandbox (a session, an ephemeral
`POST /v1/exec` or a workspace `POST /v1/exec`) and asserts on what really happened,
often checked again from the host side (the test process runs beside the server).
Each would fail if the corresponding wall came down.

Probes are Python scripts fed to `python3 -` on stdin, so they need no quoting; they
print one JSON object as their last line.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant

pytestmark = pytest.mark.timeout(120)

MODES = ("session", "ephemeral", "workspace")

# Environment variables a sandbox may carry: the documented sane defaults and what a
# shell adds by itself. Anything else in a sandbox came from somewhere it should not.
SANDBOX_ENV_NAMES = {"PATH", "HOME", "LANG", "USER", "LOGNAME", "HOSTNAME", "SHELL", "PWD",
                     "OLDPWD", "SHLVL", "_", "TERM"}


def token() -> str:
    return "iso" + secrets.token_hex(6)


class Box:
    """One way into a sandbox: a session, ephemeral one-shot runs or a workspace."""

    def __init__(self, client: httpx.Client, mode: str, workspace: str | None = None,
                 session_body: dict[str, Any] | None = None) -> None:
        self.client = client
        self.mode = mode
        self.workspace = workspace or (token() if mode == "workspace" else None)
        self.session_body = session_body or {}
        self.session_id: str | None = None
        self.session_ids: set[str] = set()

    def _new_session(self) -> str:
        r = self.client.post("/v1/sessions", json=self.session_body)
        assert r.status_code == 201, r.text
        self.session_id = str(r.json()["id"])
        self.session_ids.add(self.session_id)
        return self.session_id

    def run(self, command: str, *, stdin: str | None = None, timeout_ms: int = 20000,
            **extra: Any) -> dict[str, Any]:
        """Run a foreground command; returns the exec response body."""
        body: dict[str, Any] = {"command": command, "timeout_ms": timeout_ms, **extra}
        if stdin is not None:
            body["stdin"] = stdin
        if self.mode == "session":
            sid = self.session_id or self._new_session()
            r = self.client.post(f"/v1/sessions/{sid}/exec", json=body)
        elif self.mode == "ephemeral":
            r = self.client.post("/v1/exec", json={**body, "ephemeral": True})
        else:
            r = self.client.post("/v1/exec", json={**body, "workspace": self.workspace})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        if out.get("session_id"):
            self.session_ids.add(out["session_id"])
        return out

    def probe(self, script: str, **kw: Any) -> dict[str, Any]:
        """Run a Python probe; return the JSON object on its last output line."""
        res = self.run("python3 -", stdin=script, **kw)
        lines = [ln for ln in res["output"].splitlines() if ln.startswith("{")]
        assert lines, f"probe printed no JSON: {res}"
        return json.loads(lines[-1])  # type: ignore[no-any-return]

    def close(self) -> None:
        for sid in self.session_ids:
            with contextlib.suppress(httpx.HTTPError):
                self.client.delete(f"/v1/sessions/{sid}")


@pytest.fixture(params=MODES)
def box(request: pytest.FixtureRequest, tenant: Tenant) -> Iterator[Box]:
    b = Box(tenant.client, request.param)
    yield b
    b.close()


@pytest.fixture
def session_box(tenant: Tenant) -> Iterator[Box]:
    b = Box(tenant.client, "session")
    yield b
    b.close()


def healthy(server: ServerProcess) -> bool:
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    r = httpx.get(server.url + "/healthz", timeout=10)
    return r.status_code == 200 and r.json().get("status") == "ok"


# --- processes ---------------------------------------------------------------------

PROCS_PROBE = r"""
import json, os, signal
host_pids = %(host_pids)r
victim = %(victim)r
procs = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            procs[int(p)] = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            pass
res = {"procs": procs, "signal": {}, "proc_dir": {}}
for pid, sig in [(p, 0) for p in host_pids] + [(victim, signal.SIGKILL)]:
    res["proc_dir"][pid] = os.path.exists(f"/proc/{pid}")
    try:
        os.kill(pid, sig)
        res["signal"][f"{pid}/{sig}"] = "delivered"
    except OSError as e:
        res["signal"][f"{pid}/{sig}"] = e.strerror
print(json.dumps(res))
"""


def test_sees_and_signals_no_host_process(server: ServerProcess, box: Box) -> None:
    assert server.proc is not None
    host_pids = [server.proc.pid, os.getpid(), os.getppid()]
    # A sacrificial host process takes the SIGKILL (only signal 0 goes to the others).
    victim = subprocess.Popen(["sleep", "60"])
    try:
        res = box.probe(PROCS_PROBE % {"host_pids": host_pids, "victim": victim.pid})
        assert victim.poll() is None, "a sandbox killed a host process"
    finally:
        victim.kill()
        victim.wait()
    procs = {int(k): v for k, v in res["procs"].items()}
    # Only the sandbox's own few processes: its init, maybe the agent, the probe itself.
    assert len(procs) <= 5, procs
    assert max(procs) < 100, procs
    for pid, cmd in procs.items():
        assert "chaser server" not in cmd and "pytest" not in cmd and "uvicorn" not in cmd, (pid, cmd)
    assert any("python3 -" in c for c in procs.values())
    for pid in host_pids + [victim.pid]:
        assert pid not in procs
        assert res["proc_dir"][str(pid)] is False
    assert set(res["signal"].values()) == {"No such process"}, res["signal"]
    # `ps` and the shell's `kill` agree.
    ps = box.run(f"kill -0 {server.proc.pid} 2>/dev/null; echo kill_rc=$?; ps -eo pid=,args=")
    assert ps["exit_code"] == 0, ps
    assert "kill_rc=0" not in ps["output"] and "kill_rc=" in ps["output"], ps["output"]
    lines = [ln for ln in ps["output"].splitlines() if ln.strip() and "kill_rc" not in ln]
    assert len(lines) <= 5, ps["output"]
    assert str(server.proc.pid) not in {ln.split()[0] for ln in lines}
    assert healthy(server)


def test_kill_everything_reaches_nothing_outside(server: ServerProcess, box: Box,
                                                 new_tenant: NewTenant) -> None:
    """`kill -9 -1` kills what the sandbox can see; the server and others live on."""
    other = Box(new_tenant("bystander").client, "session")
    try:
        assert other.run("echo before")["output"] == "before\n"
        res = box.run("sleep 30 & p=$!; kill -9 -1; sleep 0.2; kill -0 $p 2>/dev/null && echo STILL",
                      timeout_ms=5000)
        assert "STILL" not in res["output"], res  # the kill did happen inside
        assert healthy(server)
        assert other.run("echo after")["output"] == "after\n"
        # The attacker's own target keeps working too (a new session where it died).
        box.session_id = None
        assert box.run("echo again")["output"] == "again\n"
    finally:
        other.close()


PTRACE_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
res = {"attach": {}, "status": {}}
for pid in %(targets)r + sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    if pid == os.getpid():
        continue
    rc = libc.ptrace(PTRACE_ATTACH, pid, 0, 0)
    res["attach"][pid] = 0 if rc == 0 else os.strerror(ctypes.get_errno())
    if rc == 0:
        os.waitpid(pid, 0x40000000)  # __WALL: wait for the attach stop, then let it go
        with open(f"/proc/{pid}/status") as f:
            res["status"][pid] = {l.split(":")[0]: l.split(":", 1)[1].split()
                                  for l in f if l.startswith(("Uid", "Gid", "Cap", "NoNewPrivs"))}
        libc.ptrace(PTRACE_DETACH, pid, 0, 0)
print(json.dumps(res))
"""


def test_ptrace_reaches_nothing_privileged(server: ServerProcess, box: Box) -> None:
    assert server.proc is not None
    res = box.probe(PTRACE_PROBE % {"targets": [server.proc.pid, os.getpid()]})
    # Host processes do not even exist from inside.
    assert res["attach"][str(server.proc.pid)] == "No such process"
    assert res["attach"][str(os.getpid())] == "No such process"
    # Whatever inside can be traced is as unprivileged as the tracer: same uid, no caps.
    for pid, st in res["status"].items():
        assert st["Uid"] == ["1000"] * 4, (pid, st)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap][0], 16) == 0, (pid, cap, st)


def test_command_cannot_escape_its_timeout_by_freezing_the_agent(session_box: Box) -> None:
    sid = session_box._new_session()
    t0 = time.monotonic()
    try:
        r = session_box.client.post(
            f"/v1/sessions/{sid}/exec", timeout=8,
            json={"command": "kill -STOP $PPID; sleep 30", "timeout_ms": 1500})
    except httpx.ReadTimeout:
        pytest.fail(f"timeout_ms 1500 not enforced: no answer after {time.monotonic() - t0:.1f} s")
    assert r.status_code == 200, r.text
    assert r.json()["timed_out"] is True, r.json()


def test_sandbox_processes_are_unprivileged_on_the_host(server: ServerProcess,
                                                        session_box: Box) -> None:
    """From the host: a sandbox's processes run as a non-root uid without capabilities."""
    tok = token()
    cmd = f"python3 -c 'import time; time.sleep(20)' {tok}"
    sid = session_box._new_session()
    r = session_box.client.post(f"/v1/sessions/{sid}/exec",
                                json={"command": cmd, "background": True, "timeout_ms": 20000})
    assert r.status_code == 201, r.text
    found: dict[int, dict[str, list[str]]] = {}
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if tok.encode() in (p / "cmdline").read_bytes():
                    found[int(p.name)] = {ln.split(":")[0]: ln.split(":", 1)[1].split()
                                          for ln in (p / "status").read_text().splitlines()
                                          if ln.startswith(("Uid", "Gid", "Cap", "NoNewPrivs"))}
            except OSError:
                continue
        time.sleep(0.05)
    assert found, "the sandboxed process was not found on the host"
    for pid, st in found.items():
        uids = {int(u) for u in st["Uid"]}
        gids = {int(g) for g in st["Gid"]}
        assert 0 not in uids and 0 not in gids, (pid, st)
        assert min(uids) >= 1000, (pid, st)
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, (pid, st)
        assert st["NoNewPrivs"] == ["1"], (pid, st)


def test_two_sessions_cannot_see_each_other(new_tenant: NewTenant) -> None:
    """Neither another tenant's nor the same tenant's session shows /tmp or processes."""
    owner = new_tenant("owner")
    a = Box(owner.client, "session")
    same_tenant = Box(owner.client, "session")
    other_tenant = Box(new_tenant("other").client, "session")
    tok = token()
    try:
        sid = a._new_session()
        r = a.client.post(f"/v1/sessions/{sid}/exec", json={
            "command": f"python3 -c 'import time; time.sleep(30)' {tok}", "background": True,
            "timeout_ms": 30000})
        assert r.status_code == 201, r.text
        setup = a.run(f"echo {tok} > /tmp/{tok}; echo {tok} > /dev/shm/{tok}; "
                      f"echo {tok} > /home/user/{tok}; for p in /proc/[0-9]*; do "
                      "tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^python3 -c import time'")
        assert setup["output"].strip() == "1", setup  # A itself sees its process
        look = (f"ls -A /tmp /dev/shm /home/user /workspace; ps -eo pid=,args=; "
                f"cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; "
                f"cat /tmp/{tok} /dev/shm/{tok} /home/user/{tok} 2>&1")
        for b in (same_tenant, other_tenant):
            res = b.run(look)
            text = res["output"].replace(f"/tmp/{tok}", "").replace(f"/dev/shm/{tok}", "") \
                .replace(f"/home/user/{tok}", "")
            assert tok not in text, res["output"]
            assert res["output"].count("No such file") == 3, res["output"]
    finally:
        for b in (a, same_tenant, other_tenant):
            b.close()


# --- host secrets ------------------------------------------------------------------

SECRETS_PROBE = r"""
import json, os
res = {}
def attempt(path):
    try:
        if os.path.isdir(path):
            return {"dir": sorted(os.listdir(path))}
        with open(path, "rb") as f:
            return {"read": f.read(4096).decode(errors="replace")}
    except OSError as e:
        return {"error": e.strerror}
for p in %(paths)r:
    res[p] = attempt(p)
res["/etc"] = attempt("/etc")
res["/"] = attempt("/")
print(json.dumps(res))
"""

HOST_SECRET_PATHS = ["/root", "/root/.ssh", "/root/.bash_history", "/home", "/etc/shadow",
                     "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/machine-id",
                     "/var/lib", "/var/log", "/proc/1/root/etc/shadow", "/run", "/etc/ssl/private",
                     "/work", "/boot", "/srv", "/opt", "/mnt", "/media"]


def test_cannot_read_host_secrets(server: ServerProcess, box: Box) -> None:
    data = server.data_dir
    assert server.proc is not None
    paths = HOST_SECRET_PATHS + [
        str(data), str(data / "chaser.db"), str(data / "admin.key"), str(data / "workspaces"),
        str(data / "logs"), str(data.parent), f"/proc/{server.proc.pid}/environ",
        f"/proc/{server.proc.pid}/root/etc/shadow",
    ]
    res = box.probe(SECRETS_PROBE % {"paths": paths})
    readable = {p: r for p, r in res.items()
                if p not in ("/etc", "/", "/home") and ("read" in r or r.get("dir"))}
    # /root may exist as an empty mount point, but nothing may be listed or read.
    assert not readable, readable
    home = res["/home"].get("dir", [])
    assert set(home) <= {"user"}, home
    host_home = set(os.listdir("/home")) - {"user"} if os.path.isdir("/home") else set()
    assert not (set(home) & host_home)
    # The host's shadow file: absent inside, and its content nowhere in the answer.
    assert "error" in res["/etc/shadow"]
    if os.path.exists("/etc/shadow"):
        root_line = next((ln for ln in Path("/etc/shadow").read_text().splitlines()
                          if ln.startswith("root:")), None)
        if root_line:
            assert root_line not in json.dumps(res)
    # /etc holds only the image's harmless allowlist, never the host's whole /etc.
    etc = set(res["/etc"]["dir"])
    for name in ("shadow", "gshadow", "sudoers", "sudoers.d", "ssh", "machine-id",
                 "crontab", "security"):
        assert name not in etc, etc
    assert len(etc) < 60, etc
    # The root holds the sandbox's layout, not the host's.
    root = set(res["/"]["dir"])
    assert not root & {"root", "boot", "work", "srv", "opt", "mnt", "media", "data"}, " ".join(sorted(root))
    # Paths under the data dir are unreachable whatever the sandbox guesses.
    for p in paths[len(HOST_SECRET_PATHS):]:
        assert "error" in res[p], (p, res[p])


def test_server_environment_and_keys_not_visible(server: ServerProcess, box: Box,
                                                 tenant: Tenant) -> None:
    assert server.proc is not None and server.admin_key
    dump = box.run(
        "env; echo ===; for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; echo; "
        "tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null; echo ===; "
        "cat /proc/1/cmdline /proc/self/cmdline | tr '\\0' ' '")["output"]
    assert "==" in dump
    assert server.admin_key not in dump
    assert tenant.key not in dump
    assert "CHASER_" not in dump
    assert str(server.data_dir) not in dump
    # Variable names: only the sane defaults, none of the server's own environment.
    server_env = dict(
        kv.split("=", 1) for kv in
        Path(f"/proc/{server.proc.pid}/environ").read_bytes().decode(errors="replace").split("\0")
        if "=" in kv)
    names = {ln.split("=", 1)[0] for ln in dump.splitlines()
             if "=" in ln and ln.split("=", 1)[0].isidentifier()}
    strays = names - SANDBOX_ENV_NAMES
    assert not strays, strays
    assert not ({n for n in server_env if n.startswith("CHASER")} & names)


def test_server_working_directory_not_leaked(server: ServerProcess, box: Box) -> None:
    assert server.proc is not None
    cwd = os.readlink(f"/proc/{server.proc.pid}/cwd")
    if cwd in ("/", "/workspace"):
        pytest.skip("the server's cwd cannot be told from the sandbox's own")
    dump = box.run("for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null")
    assert f"PWD={cwd}\n" not in dump["output"]


def test_other_tenants_workspace_unreachable(server: ServerProcess, new_tenant: NewTenant) -> None:
    """Tenant A's files: B cannot reach them by name, by host path or by search."""
    a, b = new_tenant("alice"), new_tenant("bob")
    tok = token()
    name = "shared-" + tok  # the same workspace name for both tenants
    secret = "secret-" + secrets.token_hex(12)
    r = a.client.post("/v1/exec", json={"workspace": name, "command":
                                        f"echo {secret} > {tok}.txt; echo {secret} > /tmp/{tok}.tmp;"
                                        f" echo {secret} > ~/{tok}.home; ls"})
    assert r.status_code == 200 and f"{tok}.txt" in r.json()["output"], r.text
    a_session = r.json()["session_id"]
    host_files = glob.glob(str(server.data_dir / "workspaces" / "*" / "*" / f"{tok}*"))
    assert len(host_files) == 3, host_files
    guesses = host_files + [str(Path(p).parent) for p in host_files] + [
        f"/workspace/{tok}.txt", f"/tmp/{tok}.tmp", f"/home/user/{tok}.home",
        f"/proc/1/root/workspace/{tok}.txt", str(server.data_dir / "workspaces")]
    look = ("for f in " + " ".join(guesses) + "; do cat $f; ls -A $f; done 2>/dev/null; "
            f"find / \\( -path /proc -o -path /usr -o -path /sys \\) -prune -o -name '{tok}*' -print "
            "2>/dev/null; echo END")
    bobs = [Box(b.client, "workspace", workspace=name), Box(b.client, "session"),
            Box(b.client, "ephemeral")]
    try:
        for bx in bobs:
            res = bx.run(look)
            assert res["output"].endswith("END\n"), res
            assert secret not in res["output"], (bx.mode, res["output"])
            assert tok not in res["output"], (bx.mode, res["output"])
        # Nor through the API: A's session is 404 to B.
        assert b.client.post(f"/v1/sessions/{a_session}/exec",
                             json={"command": f"cat {tok}.txt"}).status_code == 404
        assert b.client.get(f"/v1/sessions/{a_session}").status_code == 404
        # A still sees its own file (the probe above really targeted something).
        r = a.client.post("/v1/exec", json={"workspace": name, "command": f"cat {tok}.txt"})
        assert r.json()["output"] == secret + "\n"
    finally:
        for bx in bobs:
            bx.close()
        with contextlib.suppress(httpx.HTTPError):
            a.client.delete(f"/v1/sessions/{a_session}")


def test_workspace_files_owned_by_unprivileged_host_uid(server: ServerProcess,
                                                        new_tenant: NewTenant) -> None:
    tok = token()
    uids = []
    made: list[tuple[Tenant, str]] = []
    try:
        for who in ("one", "two"):
            t = new_tenant(who)
            r = t.client.post("/v1/exec", json={"workspace": "own-" + tok, "command":
                                                f"echo x > {who}-{tok}; mkdir dir-{who}-{tok}; "
                                                f"touch ~/{who}-{tok}.h /tmp/{who}-{tok}.t"})
            assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
            made.append((t, r.json()["session_id"]))
            hits = glob.glob(str(server.data_dir / "workspaces" / "*" / "files" / f"{who}-{tok}"))
            assert len(hits) == 1, hits
            ws_dir = Path(hits[0]).parent.parent
            for p in [Path(hits[0]), Path(hits[0]).parent / f"dir-{who}-{tok}",
                      ws_dir / "home" / f"{who}-{tok}.h", ws_dir / "tmp" / f"{who}-{tok}.t"]:
                st = os.stat(p)
                assert st.st_uid != 0 and st.st_gid != 0, (p, st.st_uid, st.st_gid)
                assert st.st_uid >= 1000 and st.st_uid != os.getuid(), (p, st.st_uid)
                assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), p
            # The workspace's host directory admits only its own uid.
            wst = os.stat(ws_dir)
            assert wst.st_mode & 0o077 == 0, oct(wst.st_mode)
            uids.append(os.stat(hits[0]).st_uid)
        assert uids[0] != uids[1], "two tenants' workspaces share a host uid"
    finally:
        for t, sid in made:
            with contextlib.suppress(httpx.HTTPError):
                t.client.delete(f"/v1/sessions/{sid}")


# --- writes --------------------------------------------------------------------------

WRITE_PROBE = r"""
import json, os
tok = %(tok)r
res = {"ro": {}, "rw": {}, "sys": {}}
for d in ["/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/usr/bin", "/usr/lib", "/usr/local",
          "/usr/local/bin", "/.chaser", "/var", "/home", "/proc"]:
    try:
        with open(os.path.join(d, tok), "w") as f:
            f.write("x")
        res["ro"][d] = "written"
    except OSError as e:
        res["ro"][d] = e.strerror
    try:
        os.mkdir(os.path.join(d, tok + ".d"))
        res["ro"][d + " mkdir"] = "made"
    except OSError as e:
        res["ro"][d + " mkdir"] = e.strerror
for f, how in [("/etc/passwd", "a"), ("/etc/hosts", "w"), ("/usr/bin/env", "a"),
               ("/.chaser/agent.py", "a"), ("/.chaser/agent.pyc", "w"), ("/bin/sh", "a")]:
    try:
        with open(f, how) as fh:
            fh.write("pwned")
        res["ro"][f] = "written"
    except OSError as e:
        res["ro"][f] = e.strerror
for f, fn in [("/usr/bin/python3 chmod", lambda: os.chmod("/usr/bin/python3", 0o4777)),
              ("/etc/hosts unlink", lambda: os.unlink("/etc/hosts")),
              ("/usr/bin/env rename", lambda: os.rename("/usr/bin/env", "/tmp/env")),
              ("/ symlink", lambda: os.symlink("/tmp", "/" + tok + ".l"))]:
    try:
        fn()
        res["ro"][f] = "done"
    except OSError as e:
        res["ro"][f] = e.strerror
for d in ["/workspace", "/tmp", "/home/user", "/dev/shm", "/var/tmp"]:
    try:
        p = os.path.join(d, tok)
        with open(p, "w") as f:
            f.write(tok)
        res["rw"][d] = open(p).read() == tok
    except OSError as e:
        res["rw"][d] = e.strerror
for f in ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
          "/proc/sys/vm/drop_caches", "/proc/sys/kernel/modprobe", "/proc/sysrq-trigger",
          "/proc/sys/net/ipv4/ip_forward", "/sys/kernel/uevent_helper", "/sys/" + tok,
          "/sys/fs/cgroup/cgroup.procs", "/proc/self/uid_map", "/proc/self/setgroups"]:
    try:
        with open(f, "w") as fh:
            fh.write("|/tmp/" + tok)
        res["sys"][f] = "written"
    except OSError as e:
        res["sys"][f] = e.strerror
res["sys_exists"] = os.path.exists("/sys")
print(json.dumps(res))
"""


def test_writes_only_to_the_writable_layer(box: Box) -> None:
    tok = token()
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    res = box.probe(WRITE_PROBE % {"tok": tok})
    done = {k: v for k, v in res["ro"].items() if v in ("written", "made", "done")}
    assert not done, done
    bad_rw = {k: v for k, v in res["rw"].items() if v is not True}
    assert not bad_rw, bad_rw
    sys_written = {k: v for k, v in res["sys"].items() if v == "written"}
    assert not sys_written, sys_written
    # Nothing reached the host's filesystem or kernel settings.
    for d in ["/", "/usr", "/etc", "/usr/bin", "/usr/local", "/usr/local/bin", "/usr/lib"]:
        assert not os.path.exists(os.path.join(d, tok)), d
        assert not os.path.exists(os.path.join(d, tok + ".d")), d
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    assert os.path.exists("/usr/bin/env") and not os.stat("/usr/bin/python3").st_mode & stat.S_ISUID


# --- network -------------------------------------------------------------------------

NET_PROBE = r"""
import json, socket
res = {"tcp": {}}
for host, port in %(targets)r:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(2)
    try:
        s.connect((host, port))
        res["tcp"][f"{host}:{port}"] = "connected"
    except OSError as e:
        res["tcp"][f"{host}:{port}"] = e.strerror or str(e)
    finally:
        s.close()
u = socket.socket(socket.AF_UNIX)
try:
    u.connect(%(abstract)r)
    res["abstract"] = "connected"
except OSError as e:
    res["abstract"] = e.strerror
for name in ("example.com", "pypi.org", "localhost"):
    try:
        res["dns:" + name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80)})
    except OSError as e:
        res["dns:" + name] = "failed"
try:
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.settimeout(1)
    d.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
             ("8.8.8.8", 53))
    d.recvfrom(512)
    res["udp53"] = "answered"
except OSError as e:
    res["udp53"] = e.strerror or str(e)
res["ifaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
res["routes"] = open("/proc/net/route").read().splitlines()[1:]
print(json.dumps(res))
"""


def host_ip() -> str | None:
    """The host's primary non-loopback address (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = str(s.getsockname()[0])
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_no_network_by_default(server: ServerProcess, box: Box) -> None:
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    abstract = b"\0chaser-iso-" + token().encode()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(abstract)
    unix.listen(8)
    unix.setblocking(False)
    targets = [("127.0.0.1", port), ("127.0.0.1", server.port), ("8.8.8.8", 53),
               ("1.1.1.1", 443), ("10.0.0.1", 80)]
    ip = host_ip()
    if ip:
        targets.append((ip, port))
    try:
        res = box.probe(NET_PROBE % {"targets": targets, "abstract": abstract})
        connected = {k: v for k, v in res["tcp"].items() if v == "connected"}
        assert not connected, connected
        assert res["abstract"] != "connected"
        for name in ("example.com", "pypi.org"):
            assert res["dns:" + name] == "failed", res
        assert res["udp53"] != "answered"
        assert res["ifaces"] == ["lo"], res["ifaces"]
        assert res["routes"] == [], res["routes"]
        # Nothing arrived at the host's listeners.
        for sock in (listener, unix):
            with pytest.raises(BlockingIOError):
                sock.accept()
        # `ip link` agrees where the image has it.
        links = box.run("command -v ip >/dev/null || { echo NO_IP; exit 0; }; ip -o link")
        if "NO_IP" not in links["output"]:
            names = [ln.split(":")[1].strip() for ln in links["output"].splitlines() if ":" in ln]
            assert names == ["lo"], links["output"]
    finally:
        listener.close()
        unix.close()


def test_loopback_inside_is_private(box: Box) -> None:
    """The sandbox's loopback works and is its own: it can bind a port the host holds."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        res = box.probe(r"""
import json, socket
s = socket.socket(); s.bind(("127.0.0.1", %d)); s.listen(1)
c = socket.create_connection(("127.0.0.1", %d), timeout=2)
conn, _ = s.accept(); c.sendall(b"ping"); got = conn.recv(4)
print(json.dumps({"got": got.decode()}))
""" % (port, port))
        assert res["got"] == "ping"
        held.setblocking(False)
        with pytest.raises(BlockingIOError):
            held.accept()


# --- privileges ----------------------------------------------------------------------

PRIV_PROBE = r"""
import ctypes, json, os, stat, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
res = {"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()], "status": {}}
for line in open("/proc/self/status"):
    k, v = line.split(":", 1)
    if k.startswith("Cap") or k in ("NoNewPrivs", "Seccomp"):
        res["status"][k] = v.strip()
def err():
    return os.strerror(ctypes.get_errno())
def sh(cmd):
    p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=10)
    return [p.returncode, (p.stdout + p.stderr)[-300:]]
for name, fn in [("setuid0", lambda: os.setuid(0)), ("setgid0", lambda: os.setgid(0)),
                 ("setgroups", lambda: os.setgroups([0])), ("chroot", lambda: os.chroot("/tmp")),
                 ("mknod_block", lambda: os.mknod("/tmp/blk", 0o600 | stat.S_IFBLK, os.makedev(254, 0)))]:
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = e.strerror
for name, flag in [("unshare_user", 0x10000000), ("unshare_mount", 0x00020000),
                   ("unshare_net", 0x40000000), ("unshare_pid", 0x20000000)]:
    res[name] = "ok" if libc.unshare(flag) == 0 else err()
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
for name, args in [("mount_tmpfs", (b"none", b"/tmp", b"tmpfs", 0, None)),
                   ("mount_proc", (b"proc", b"/tmp", b"proc", 0, None)),
                   ("mount_sysfs", (b"sysfs", b"/tmp", b"sysfs", 0, None)),
                   ("mount_cgroup", (b"cgroup", b"/tmp", b"cgroup", 0, b"pids")),
                   ("remount_root_rw", (b"none", b"/", None, 32, None)),
                   ("bind_usr", (b"/tmp", b"/usr", None, 4096, None))]:
    rc = libc.mount(*args)
    res[name] = "ok" if rc == 0 else err()
res["sethostname"] = "ok" if libc.sethostname(b"pwned", 5) == 0 else err()
# Kernel modules: init_module(2) / finit_module(2) (x86_64 numbers) and the tools.
if os.uname().machine == "x86_64":
    res["init_module"] = "ok" if libc.syscall(175, None, 0, b"") == 0 else err()
    fd = os.open("/dev/null", os.O_RDONLY)
    res["finit_module"] = "ok" if libc.syscall(313, fd, b"", 0) == 0 else err()
res["modprobe"] = sh("modprobe dummy 2>&1 || insmod /tmp/x.ko 2>&1; echo rc=$?")
res["lib_modules_writable"] = os.access("/lib/modules", os.W_OK) or os.access("/usr/lib/modules", os.W_OK)
res["unshare_cmds"] = {c: sh(c + " id -u") for c in ("unshare -U", "unshare -r", "unshare -m", "unshare -n")}
res["mount_cmd"] = sh("mount -t tmpfs none /tmp && echo MOUNTED; mount --bind /tmp /usr && echo MOUNTED")
res["su_sudo"] = sh("su -c 'id -u' root </dev/null; sudo -n id -u </dev/null; "
                    "pkexec id -u </dev/null; true")
# Setuid/setgid binaries: start each one and look at what it became.
suid = []
for root in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local"):
    for dp, dns, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID) and st.st_mode & 0o111:
                suid.append(p)
res["setuid_binaries"] = suid
became = {}
for p in suid[:40]:
    try:
        proc = subprocess.Popen([p], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError as e:
        became[p] = e.strerror
        continue
    time.sleep(0.05)
    try:
        st = {l.split(":")[0]: l.split()[1:] for l in open(f"/proc/{proc.pid}/status")
              if l.startswith(("Uid", "Gid", "CapEff"))}
        became[p] = st
    except OSError:
        became[p] = "exited"
    proc.kill(); proc.wait()
res["setuid_became"] = became
# Devices.
devs, blocks = [], []
for dp, dns, fns in os.walk("/dev"):
    for fn in fns + dns:
        p = os.path.join(dp, fn)
        devs.append(p)
        try:
            if stat.S_ISBLK(os.stat(p).st_mode):
                blocks.append(p)
        except OSError:
            pass
res["dev"], res["blocks"] = sorted(devs), blocks
for f in ("/proc/kcore", "/proc/kmsg", "/dev/mem", "/dev/kmem", "/dev/port"):
    try:
        open(f, "rb").read(1)
        res["read " + f] = "ok"
    except OSError as e:
        res["read " + f] = e.strerror
print(json.dumps(res))
"""

def test_cannot_gain_privileges(box: Box) -> None:
    res = box.probe(PRIV_PROBE, timeout_ms=60000)
    assert 0 not in res["ids"], res["ids"]
    st = res["status"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st)
    assert st["NoNewPrivs"] == "1"
    for name in ("setuid0", "setgid0", "setgroups", "chroot", "unshare_user", "unshare_mount",
                 "unshare_net", "unshare_pid", "mknod_block", "mount_tmpfs", "mount_proc", "mount_sysfs",
                 "mount_cgroup", "remount_root_rw", "bind_usr", "sethostname", "init_module",
                 "finit_module"):
        assert res.get(name, "n/a") != "ok", (name, res.get(name))
    assert "rc=0" not in res["modprobe"][1], res["modprobe"]
    assert res["lib_modules_writable"] is False
    for cmd, (rc, out) in res["unshare_cmds"].items():
        assert rc != 0, (cmd, out)
    assert "MOUNTED" not in res["mount_cmd"][1], res["mount_cmd"]
    su_lines = [ln.strip() for ln in res["su_sudo"][1].splitlines()]
    assert "0" not in su_lines, res["su_sudo"]
    # Setuid binaries exist in the image (the host's /usr) but confer nothing.
    for path, became in res["setuid_became"].items():
        if isinstance(became, dict):
            assert "0" not in became["Uid"] and "0" not in became["Gid"], (path, became)
            assert int(became["CapEff"][0], 16) == 0, (path, became)
    # No host block devices or raw memory.
    assert res["blocks"] == [], res["blocks"]
    for name in ("vda", "vdb", "sda", "nvme0n1", "xvda", "mem", "kmem", "port", "kmsg", "loop0",
                 "dm-0", "fuse", "kvm", "net/tun"):
        assert f"/dev/{name}" not in res["dev"], res["dev"]
    for f in ("/proc/kcore", "/proc/kmsg", "/dev/mem", "/dev/kmem", "/dev/port"):
        assert res["read " + f] != "ok", f


def test_hostname_is_the_sandboxes_own(box: Box) -> None:
    res = box.run("hostname; cat /proc/sys/kernel/hostname")
    assert res["output"].split() == ["sandbox", "sandbox"], res
    assert socket.gethostname() == "sandbox" or socket.gethostname() not in res["output"]


# --- file descriptors ----------------------------------------------------------------

FD_PROBE = r"""
import json, os
res = {"links": {}, "data": {}}
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == os.getpid():
        continue
    try:
        fds = os.listdir(f"/proc/{p}/fd")
    except OSError:
        continue
    for fd in fds:
        path = f"/proc/{p}/fd/{fd}"
        try:
            target = os.readlink(path)
        except OSError:
            continue
        res["links"][path] = target
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/", "/.chaser/")):
            try:
                f = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                res["data"][path] = os.read(f, 4096).decode(errors="replace")
                os.close(f)
            except OSError as e:
                res["data"][path] = e.strerror
print(json.dumps(res))
"""


def test_sandbox_holds_no_server_file_descriptors(server: ServerProcess, box: Box) -> None:
    """No fd of the server (its database, logs, sockets) is open inside a sandbox."""
    res = box.probe(FD_PROBE)
    for path, target in res["links"].items():
        assert str(server.data_dir) not in target, (path, target)
        assert "chaser.db" not in target and "server-" not in target, (path, target)
    assert not res["data"], res["data"]


def test_own_server_secrets_do_not_reach_sandboxes(tmp_root: Path) -> None:
    """A server of its own, started the way an operator may start one, with two secrets:

    - no CHASER_API_KEY, so it writes its generated admin key to a 0600 file in the data dir;
    - an inheritable fd to a root-only file (as systemd, a shell or a supervisor may leave
      one). uvloop's spawn, for one, ignores close_fds, and an inherited fd is readable
      through /proc/<pid>/fd/<n>.
    Neither may reach any kind of sandbox.
    """
    secret = "inherited-" + secrets.token_hex(16)
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_root))
    tmp_path.chmod(0o711)  # sandboxes (unprivileged uids) must traverse to their workspaces
    secret_file = tmp_path / "host-secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    fd = os.open(secret_file, os.O_RDONLY)
    srv = ServerProcess(data_dir=tmp_path / "data", admin_key=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
    srv.log_path = tmp_path / "server.log"
    with open(srv.log_path, "ab") as log:
        srv.proc = subprocess.Popen(
            [sys.executable, "-m", "chaser", "server", "--host", "127.0.0.1",
             "--port", str(srv.port), "--data-dir", str(srv.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,))
    os.close(fd)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert srv.proc.poll() is None, srv.log()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(srv.url + "/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.05)
        key_file = srv.data_dir / "admin.key"
        assert key_file.is_file(), sorted(os.listdir(srv.data_dir))
        assert key_file.stat().st_mode & 0o077 == 0, oct(key_file.stat().st_mode)
        admin_key = key_file.read_text().strip()
        assert admin_key
        # The server really holds the inherited fd (else this test would prove nothing).
        held = []
        for n in os.listdir(f"/proc/{srv.proc.pid}/fd"):
            with contextlib.suppress(OSError):
                held.append(os.readlink(f"/proc/{srv.proc.pid}/fd/{n}"))
        assert str(secret_file) in held, held
        with srv.client(admin_key) as c:
            leaked: dict[str, Any] = {}
            for mode in MODES:
                b = Box(c, mode)
                try:
                    res = b.probe(FD_PROBE)
                    dump = b.run(
                        f"cat {key_file} {secret_file} </dev/null 2>/dev/null "
                        f"| head -c 100000; ls -la {srv.data_dir} 2>&1; env; "
                        "cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'",
                        timeout_ms=5000)["output"]
                finally:
                    b.close()
                leaked[mode] = {p: d for p, d in res["data"].items() if secret in d}
                leaked[mode].update({p: t for p, t in res["links"].items()
                                     if str(secret_file) in t})
                for what, value in (("admin key", admin_key), ("inherited secret", secret)):
                    if value in dump:
                        leaked[mode][what] = "found in the sandbox's output"
            assert not any(leaked.values()), leaked
    finally:
        srv.stop()
