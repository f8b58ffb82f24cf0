"""Commands by id alone in the CLI: `chaser wait`, `logs -f` exit codes, `sessions ls`,
and the hint for an API URL ending in /v1."""

from __future__ import annotations

import json

from tests.cli.test_cli_run import chaser_cli
from tests.conftest import ServerProcess
from tests.types import Tenant


def test_wait_and_logs_exit_with_the_command(server: ServerProcess, tenant: Tenant) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        r = chaser_cli(server.url, tenant.key, *args)
        return r.returncode, r.stdout, r.stderr
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    cid = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
        "command": "sleep 0.5; echo done; exit 7", "background": True}).json()["command_id"]
    assert run("wait", cid)[0] == 7
    assert run("commands", "logs", "-f", cid)[:2] == (7, "done\n")
    assert run("commands", "logs", cid)[:2] == (0, "done\n")
    assert "session:" in run("commands", "get", cid)[1]
    slow = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
        "command": "sleep 30", "background": True}).json()["command_id"]
    code, _, err = run("wait", "--timeout", "0.3", slow)
    assert code == 2 and "still running" in err
    assert run("commands", "kill", slow, "--signal", "KILL")[0] == 0
    assert run("wait", slow)[0] == 137
    code, _, err = run("wait", "cmd_nope")
    assert code == 1 and err.startswith("error: ") and "not found" in err


def test_sessions_ls_shows_running_unless_all(server: ServerProcess, tenant: Tenant) -> None:
    c = tenant.client
    live = c.post("/v1/sessions", json={}).json()["id"]
    gone = c.post("/v1/sessions", json={}).json()["id"]
    c.delete(f"/v1/sessions/{gone}")
    listed = json.loads(chaser_cli(server.url, tenant.key, "sessions", "ls", "--json").stdout)
    assert [s["id"] for s in listed] == [live]
    every = json.loads(chaser_cli(server.url, tenant.key, "sessions", "ls", "--all",
                                  "--json").stdout)
    assert {s["id"] for s in every} == {live, gone}


def test_an_api_url_ending_in_v1_gets_a_hint(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url + "/v1", tenant.key, "sessions", "ls")
    assert r.returncode == 1 and "ends in /v1" in r.stderr and "Traceback" not in r.stderr
