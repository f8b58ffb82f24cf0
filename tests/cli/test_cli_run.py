"""`chaser shell -c` and `chaser exec`, run as a user runs them: a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import ServerProcess, free_port
from tests.types import NewTenant, Tenant


def cli_env(url: str, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
    env["CHASER_API_URL"] = url
    env["CHASER_CONFIG"] = "/nonexistent/chaser-config.toml"  # ignore the user's file
    if key is not None:
        env["CHASER_API_KEY"] = key
    return env


def chaser_cli(url: str, key: str | None, *args: str, input: str | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaser", *args], env=cli_env(url, key), text=True,
        capture_output=True, timeout=timeout, input=input,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def assert_one_line_error(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


def test_shell_prints_42(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "python3 -c 'print(42)'")
    assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr


def test_shell_exit_code(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "echo before; exit 3")
    assert (r.returncode, r.stdout) == (3, "before\n")


def test_shell_killed_by_signal(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "kill -9 $$")
    assert r.returncode == 137, (r.stdout, r.stderr)


def test_shell_stderr_goes_to_stderr(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "echo out; echo err >&2")
    assert r.returncode == 0
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_shell_default_workspace_persists(server: ServerProcess, tenant: Tenant) -> None:
    assert chaser_cli(server.url, tenant.key, "shell", "-c", "echo kept > f").returncode == 0
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "cat f; pwd")
    assert r.stdout == "kept\n/workspace\n"
    sessions = tenant.client.get("/v1/sessions", params={"status": "running"}).json()
    assert [s["workspace"] for s in sessions["sessions"]] == ["default"]
    r = chaser_cli(server.url, tenant.key, "shell", "-w", "other", "-c", "cat f")
    assert r.returncode != 0


def test_shell_options_and_stdin(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "--cwd", "/tmp", "-e", "A=1", "-e", "B=two",
                   "-c", "pwd; echo $A $B; tr a-z A-Z", input="piped in\n")
    assert (r.returncode, r.stdout) == (0, "/tmp\n1 two\nPIPED IN\n"), r.stderr


def test_shell_ephemeral_and_session(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "--ephemeral", "-c", "ls /workspace | wc -l")
    assert (r.returncode, r.stdout.strip()) == (0, "0")
    running = tenant.client.get("/v1/sessions", params={"status": "running"}).json()
    assert [s for s in running["sessions"] if s["status"] == "running"] == []

    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    r = chaser_cli(server.url, tenant.key, "shell", "--session", sid, "-c", "echo in-session")
    assert (r.returncode, r.stdout) == (0, "in-session\n")
    cmds = tenant.client.get(f"/v1/sessions/{sid}/commands").json()["commands"]
    assert [c["command"] for c in cmds] == ["echo in-session"]


def test_shell_usage_errors(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "shell", "--ephemeral", "-w", "x", "-c", "true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = chaser_cli(server.url, tenant.key, "shell", "-c", "true", "-e", "=x")
    assert r.returncode == 2


def test_shell_ctrl_c_forwards_sigint(server: ServerProcess, tenant: Tenant) -> None:
    script = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaser", "shell", "-c", script],
        env=cli_env(server.url, tenant.key), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "got-int" in out, (out, err)
    assert proc.returncode == 7, (out, err)
    assert "Traceback" not in err


def test_exec_foreground(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "exec", "python3 -c 'print(42)'")
    assert (r.returncode, r.stdout) == (0, "42\n")
    r = chaser_cli(server.url, tenant.key, "exec", "-w", "exec-ws", "echo x; exit 5")
    assert (r.returncode, r.stdout) == (5, "x\n")
    r = chaser_cli(server.url, tenant.key, "exec", "--json", "--ephemeral", "echo hi >&2")
    body = json.loads(r.stdout)
    assert r.returncode == 0 and body["exit_code"] == 0 and body["output"] == "hi\n"
    r = chaser_cli(server.url, tenant.key, "exec", "-i", "wc -c", input="12345")
    assert r.stdout.strip() == "5"
    r = chaser_cli(server.url, tenant.key, "exec", "--timeout", "0.5", "sleep 10")
    assert r.returncode == 124


def test_exec_and_shell_c_agree(server: ServerProcess, new_tenant: NewTenant) -> None:
    tenant = new_tenant("agree")  # its own "default" workspace
    for first, second in ((["exec"], ["shell", "-c"]), (["shell", "-c"], ["exec"])):
        r = chaser_cli(server.url, tenant.key, *first, "echo $$ > /workspace/who")
        assert r.returncode == 0, r.stderr
        r = chaser_cli(server.url, tenant.key, *second, "cat /workspace/who")
        assert r.returncode == 0 and r.stdout.strip().isdigit(), (r.stdout, r.stderr)
    for cmd in (["exec"], ["shell", "-c"]):
        r = chaser_cli(server.url, tenant.key, *cmd, "tr a-z A-Z; echo oops >&2; exit 3",
                       input="piped\n")
        assert (r.returncode, r.stdout, r.stderr) == (3, "PIPED\n", "oops\n"), cmd
    rows = tenant.client.get("/v1/sessions").json()["sessions"]
    assert {s["workspace"] for s in rows if s["status"] == "running"} == {"default"}


def test_bad_key_is_one_line(server: ServerProcess) -> None:
    for args in (["shell", "-c", "true"], ["sessions", "list"], ["exec", "true"]):
        r = chaser_cli(server.url, "chs_wrong", *args)
        assert_one_line_error(r)
        assert "unauthorized" in r.stderr or "401" in r.stderr


def test_missing_key_says_what_to_do(server: ServerProcess) -> None:
    r = chaser_cli(server.url, None, "sessions", "list")
    assert_one_line_error(r)
    assert "CHASER_API_KEY" in r.stderr


def test_stopped_server_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = chaser_cli(url, "k", "shell", "-c", "true")
    assert_one_line_error(r)
    assert "cannot reach" in r.stderr and "chaser server" in r.stderr
    r = chaser_cli(url, "k", "version", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["server"] is None


def test_version(server: ServerProcess) -> None:
    r = chaser_cli(server.url, None, "version", "--json")
    info = json.loads(r.stdout)
    assert info["client"] == "0.1.0" and info["server"]
    version = httpx.get(server.url + "/healthz").json()["version"]
    assert info["server"] == version
    r = chaser_cli(server.url, None, "--version")
    assert r.stdout.strip() == "chaser, version 0.1.0"


def test_logs_follow(server: ServerProcess, tenant: Tenant) -> None:
    sid = chaser_cli(server.url, tenant.key, "sessions", "create").stdout.strip()
    r = chaser_cli(server.url, tenant.key, "exec", "-s", sid, "--background",
                   "for i in 1 2 3; do echo tick$i; echo warn$i >&2; sleep 0.3; done")
    cid = r.stdout.strip()
    assert r.returncode == 0 and cid.startswith("cmd_"), r.stderr
    t0 = time.monotonic()
    r = chaser_cli(server.url, tenant.key, "commands", "logs", "-f", "-s", sid, cid)
    assert r.returncode == 0
    assert r.stdout == "tick1\ntick2\ntick3\n"
    assert r.stderr == "warn1\nwarn2\nwarn3\n"
    assert time.monotonic() - t0 < 30
    full = chaser_cli(server.url, tenant.key, "commands", "logs", "-s", sid, cid).stdout
    assert sorted(full.splitlines()) == sorted((r.stdout + r.stderr).splitlines())
    r = chaser_cli(server.url, tenant.key, "commands", "logs", "--from", "6", "-s", sid, cid)
    assert r.stdout == full[6:]


def test_logs_follow_ctrl_c_stops_following_only(server: ServerProcess, tenant: Tenant) -> None:
    sid = chaser_cli(server.url, tenant.key, "sessions", "create").stdout.strip()
    cid = chaser_cli(server.url, tenant.key, "exec", "-s", sid, "--background",
                     "echo started; sleep 30").stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaser", "commands", "logs", "-f", "-s", sid, cid],
        env=cli_env(server.url, tenant.key), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from an interactive shell: a suite started in the background (`cmd &`)
        # hands its children SIGINT ignored, and Python then keeps ignoring Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    info = tenant.client.get(f"/v1/sessions/{sid}/commands/{cid}").json()
    assert info["status"] == "running"
