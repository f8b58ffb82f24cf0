"""`POST /v1/exec` and foreground session exec, as the product document shows them."""

from __future__ import annotations

import subprocess
import time

import httpx

from tests.conftest import ServerProcess
from tests.types import Json, Tenant


def test_document_curl_ephemeral_prints_42(server: ServerProcess) -> None:
    out = subprocess.run(
        ["curl", "-sS", f"{server.url}/v1/exec", "-H", f"Authorization: Bearer {server.admin_key}",
         "-H", "Content-Type: application/json",
         "-d", '{"ephemeral": true, "command": "python3 -c \\"print(42)\\""}'],
        capture_output=True, text=True, timeout=30, check=True)
    import json
    body = json.loads(out.stdout)
    assert body["exit_code"] == 0
    assert body["output"] == "42\n"
    assert body["output_truncated"] is False


def test_workspace_persists_and_reuses_session(tenant: Tenant) -> None:
    c = tenant.client
    r1 = c.post("/v1/exec", json={"workspace": "my-project", "command": "echo hello > note.txt && pwd"})
    assert r1.status_code == 200, r1.text
    assert r1.json()["output"] == "/workspace\n"
    r2 = c.post("/v1/exec", json={"workspace": "my-project",
                                  "command": "cat note.txt; echo x > /tmp/t; echo y > ~/h"})
    assert r2.json()["output"] == "hello\n"
    assert r2.json()["session_id"] == r1.json()["session_id"]
    # The command is visible under its session like any other.
    sid, cid = r2.json()["session_id"], r2.json()["command_id"]
    got = c.get(f"/v1/sessions/{sid}/commands/{cid}").json()
    assert got["status"] == "exited" and got["output"] == "hello\n"


def test_ephemeral_leaves_nothing_behind(tenant: Tenant) -> None:
    c = tenant.client
    r = c.post("/v1/exec", json={"ephemeral": True, "command": "echo secret > /workspace/x; ls /workspace"})
    assert r.json()["output"] == "x\n"
    assert r.json()["session_id"] is None
    r = c.post("/v1/exec", json={"ephemeral": True, "command": "ls -A /workspace /tmp | wc -l"})
    assert r.json()["output"].strip() == "3"  # two headers and a blank line: both empty


def test_default_target_is_ephemeral(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={"command": "echo hi"})
    assert r.status_code == 200 and r.json()["output"] == "hi\n"


def test_output_interleaves_stdout_and_stderr(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={
        "command": "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three"})
    assert r.json()["output"] == "one\ntwo\nthree\n"


def test_exit_codes_like_a_shell(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    def run(cmd: str) -> Json:
        body: Json = c.post(f"/v1/sessions/{session_id}/exec", json={"command": cmd}).json()
        return body
    assert run("exit 3")["exit_code"] == 3
    nf = run("no-such-command-xyz")
    assert nf["exit_code"] == 127 and "not found" in nf["output"]
    assert run("printf '#!/bin/sh\\n' > /tmp/s; chmod -x /tmp/s; /tmp/s")["exit_code"] == 126
    killed = run("kill -KILL $$")
    assert killed["status"] == "killed" and killed["signal"] == "KILL" and killed["exit_code"] is None


def test_session_execs_share_processes_files_and_tmp(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    url = f"/v1/sessions/{session_id}/exec"
    c.post(url, json={"command": "echo shared > /tmp/s; sleep 30 >/dev/null 2>&1 &"})
    r = c.post(url, json={"command": "cat /tmp/s; pgrep -x sleep >/dev/null && echo running"})
    assert r.json()["output"] == "shared\nrunning\n"


def test_cwd_env_and_sane_environment(tenant: Tenant) -> None:
    c = tenant.client
    s = c.post("/v1/sessions", json={"env": {"A": "session"}, "cwd": "/tmp"}).json()
    r = c.post(f"/v1/sessions/{s['id']}/exec", json={
        "command": "pwd; echo $A $B; echo $HOME $LANG; echo $PATH", "env": {"B": "request"}})
    lines = r.json()["output"].splitlines()
    assert lines[0] == "/tmp"
    assert lines[1] == "session request"
    assert lines[2] == "/home/user C.UTF-8"
    assert "/usr/bin" in lines[3]
    r = c.post(f"/v1/sessions/{s['id']}/exec", json={"command": "ls", "cwd": "/no/such/dir"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_cwd"
    r = c.post("/v1/exec", json={"ephemeral": True, "command": "ls", "cwd": "/no/such/dir"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_cwd"


def test_bash_shell_and_stdin_text(tenant: Tenant) -> None:
    c = tenant.client
    r = c.post("/v1/exec", json={"command": "echo ${BASH_VERSION:+bash}; cat", "shell": "bash",
                                 "stdin": "from stdin\n"})
    assert r.json()["output"] == "bash\nfrom stdin\n"
    # Without stdin text a foreground command reads /dev/null and never hangs.
    r = c.post("/v1/exec", json={"command": "cat; echo done", "timeout_ms": 10000})
    assert r.json()["output"] == "done\n" and not r.json()["timed_out"]


def test_timeout_kills_the_whole_tree(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    url = f"/v1/sessions/{session_id}/exec"
    t = time.monotonic()
    r = c.post(url, json={"command": "sleep 300 & sleep 301 & echo started; wait", "timeout_ms": 500})
    assert time.monotonic() - t < 10
    body = r.json()
    assert body["timed_out"] is True and body["status"] == "timed_out"
    assert body["output"] == "started\n"
    time.sleep(0.2)
    ps = c.post(url, json={"command": "ps -eo args | grep -c '^sleep 30[01]' || true"}).json()
    assert ps["output"].strip() == "0"
    r = c.post("/v1/exec", json={"command": "sleep 300", "timeout_ms": 300})
    assert r.json()["timed_out"] is True


def test_huge_output_is_bounded(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={
        "command": "head -c 50000000 /dev/zero | tr '\\0' 'a'", "max_output_bytes": 1000})
    body = r.json()
    assert body["exit_code"] == 0
    assert body["output_truncated"] is True
    assert len(body["output"]) == 1000
    assert body["output_size"] == 50_000_000


def test_session_exec_response_speed_fields(tenant: Tenant, session_id: str) -> None:
    r = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={"command": "true"})
    body = r.json()
    assert set(body) >= {"exit_code", "output", "output_truncated", "command_id", "duration_ms"}
    assert body["session_id"] == session_id


def test_an_unreachable_registry_is_a_clear_502(tenant: Tenant) -> None:
    """This machine reaches no public registry (tests/images has the real pulls)."""
    r = tenant.client.post("/v1/exec", json={"ephemeral": True, "image": "node:20-bookworm",
                                             "command": "node -v"})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "image_pull_failed"
    assert "docker.io/library/node:20-bookworm" in r.json()["error"]["message"]
    r = tenant.client.post("/v1/sessions", json={"image": "Not A Reference"})
    assert r.status_code in (400, 422) and "invalid" in r.json()["error"]["code"]


def test_server_keeps_serving_after_abuse(server: ServerProcess, tenant: Tenant) -> None:
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert tenant.client.post("/v1/exec", json={"command": "echo ok"}).json()["output"] == "ok\n"


def test_instant_commands_back_to_back_keep_the_session(tenant: Tenant, session_id: str) -> None:
    """A command can end before the agent reads that it started (both arrive at once)."""
    c = tenant.client
    url = f"/v1/sessions/{session_id}/exec"
    for i in range(150):
        r = c.post(url, json={"command": "exit 3" if i % 2 else "true"})
        assert r.status_code == 200 and r.json()["exit_code"] == (3 if i % 2 else 0), r.text


def test_the_largest_command_runs_on_every_path(tenant: Tenant, session_id: str) -> None:
    """128 KiB less one byte: one argv string, the documented maximum."""
    command = "echo ok #" + "x" * (128 * 1024 - 1 - len("echo ok #"))
    for body, url in (({"ephemeral": True}, "/v1/exec"), ({}, f"/v1/sessions/{session_id}/exec")):
        r = tenant.client.post(url, json={**body, "command": command})
        assert r.status_code == 200 and r.json()["output"] == "ok\n", r.text[:300]
    r = tenant.client.post("/v1/exec", json={"ephemeral": True, "command": command + "x"})
    assert r.status_code == 422
