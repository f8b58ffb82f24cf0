"""`chaser sessions|commands|keys`, `--json` and `--help`, run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import click
import pytest
from click.testing import CliRunner

from chaser.cli.main import cli

from tests.conftest import ServerProcess
from tests.types import Tenant


def chaser_cli(url: str, key: str, *args: str,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
    env.update(CHASER_API_URL=url, CHASER_API_KEY=key,
               CHASER_CONFIG="/nonexistent/chaser-config.toml")
    return subprocess.run([sys.executable, "-m", "chaser", *args], env=env, text=True,
                          capture_output=True, timeout=90, input=input,
                          stdin=subprocess.DEVNULL if input is None else None)


class Cli(Protocol):
    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]: ...


def cli_as(url: str, key: str) -> Cli:
    """`chaser ...` as one key."""

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return chaser_cli(url, key, *args, input=input)

    return run


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def test_sessions_round_trip(server: ServerProcess, tenant: Tenant) -> None:
    run = cli_as(server.url, tenant.key)
    sid = ok(run("sessions", "create", "-w", "cli-ws", "-e", "K=V")).strip()
    assert sid.startswith("ses_")
    listed = json.loads(ok(run("sessions", "list", "--json")))
    assert [s["id"] for s in listed] == [sid] and listed[0]["workspace"] == "cli-ws"
    table = ok(run("sessions", "list"))
    assert table.splitlines()[0].split()[:2] == ["ID", "WORKSPACE"] and sid in table
    got = json.loads(ok(run("sessions", "get", sid, "--json")))
    assert got["status"] == "running" and got["env"] == {"K": "V"}
    assert "id:" in ok(run("sessions", "get", sid))
    created = json.loads(ok(run("sessions", "create", "--json", "--idle-timeout", "60")))
    assert created["idle_timeout_s"] == 60
    deleted = json.loads(ok(run("sessions", "delete", sid, "--json")))
    assert deleted["status"] == "stopped"
    running = json.loads(ok(run("sessions", "list", "--status", "running", "--json")))
    assert [s["id"] for s in running] == [created["id"]]
    r = run("sessions", "get", "ses_nope")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_sessions_stats(server: ServerProcess, tenant: Tenant) -> None:
    run = cli_as(server.url, tenant.key)
    sid = ok(run("sessions", "create", "--memory-mb", "256")).strip()
    ok(run("exec", "-s", sid, "head -c 30000000 /dev/zero > /tmp/blob"))
    # Two samples 1.1 s apart (the server reads a sandbox at most once a second).
    table = ok(run("sessions", "stats")).splitlines()
    assert table[0].split()[:4] == ["ID", "STATUS", "CPU", "%"]
    [row] = [line for line in table if line.startswith(sid)]
    assert "/ 256.0MiB" in row and "MiB / 10.0GiB" in row, row  # memory, then its tmpfs
    assert row.split()[2].endswith("%"), row  # a CPU share, measured
    [one] = json.loads(ok(run("sessions", "stats", sid, "--json", "--interval", "0")))
    assert one["id"] == sid and one["cpu_percent"] is None  # one sample: no CPU share
    assert one["usage"]["disk_bytes"] >= 30_000_000 and one["limits"]["memory_mb"] == 256
    assert "disk:" in ok(run("sessions", "get", sid))
    ok(run("sessions", "delete", sid))
    [gone] = json.loads(ok(run("sessions", "stats", sid, "--json", "--interval", "0")))
    assert gone["status"] == "stopped" and gone["usage"] is None
    assert ok(run("sessions", "stats", "--interval", "0")).splitlines()[1:] == []


def test_commands_round_trip(server: ServerProcess, tenant: Tenant) -> None:
    run = cli_as(server.url, tenant.key)
    sid = ok(run("sessions", "create")).strip()
    started = json.loads(ok(run("exec", "-s", sid, "--background", "--json", "cat")))
    cid = started["command_id"]
    assert started["session_id"] == sid and started["pid"]
    ok(run("commands", "stdin", "-s", sid, cid, "-n", "hello"))
    ok(run("commands", "stdin", "-s", sid, cid, "-", "--eof", input="from-pipe\n"))
    deadline = time.monotonic() + 30
    while True:
        info = json.loads(ok(run("commands", "get", "-s", sid, cid, "--json")))
        if info["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (info["status"], info["exit_code"]) == ("exited", 0)
    assert info["output"] == "hello\nfrom-pipe\n"
    assert ok(run("commands", "logs", "-s", sid, cid)) == "hello\nfrom-pipe\n"
    r = run("commands", "stdin", "-s", sid, cid, "late")
    assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr

    sleeper = ok(run("exec", "-s", sid, "--background", "sleep 30")).strip()
    listed = json.loads(ok(run("commands", "list", "-s", sid, "--json")))
    assert [c["id"] for c in listed] == [sleeper, cid]
    assert sleeper in ok(run("commands", "list", "-s", sid))
    killed = json.loads(ok(run("commands", "kill", "-s", sid, sleeper, "--signal", "KILL",
                               "--json")))
    assert killed["id"] == sleeper
    r = run("commands", "logs", "-f", "-s", sid, sleeper)  # returns once it has died
    assert r.returncode == 137  # logs -f exits with the command's code: SIGKILL
    info = json.loads(ok(run("commands", "get", "-s", sid, sleeper, "--json")))
    assert (info["status"], info["signal"]) == ("killed", "KILL")
    assert "killed" in ok(run("commands", "get", "-s", sid, sleeper))
    r = run("commands", "kill", "-s", sid, sleeper, "--signal", "NOPE")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_keys_round_trip(server: ServerProcess) -> None:
    assert server.admin_key is not None
    run = cli_as(server.url, server.admin_key)
    secret = ok(run("keys", "create", "--name", "cli-test")).strip()
    assert secret
    created = json.loads(ok(run("keys", "create", "--name", "cli-json", "--json")))
    keys = json.loads(ok(run("keys", "list", "--json")))
    assert created["id"] in [k["id"] for k in keys]
    assert all(k.get("key") is None for k in keys)
    assert "cli-json" in ok(run("keys", "list"))
    assert json.loads(ok(chaser_cli(server.url, created["key"], "sessions", "list",
                                    "--json"))) == []
    revoked = json.loads(ok(run("keys", "revoke", created["id"], "--json")))
    assert revoked["revoked_at"]
    r = chaser_cli(server.url, created["key"], "sessions", "list")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    # The plain-text secret works too.
    assert ok(chaser_cli(server.url, secret, "sessions", "list", "--json")).strip() == "[]"


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found += _all_commands(cmd, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "chaser")
def test_help_everywhere_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"no examples in `chaser {' '.join(path)} --help`"


@pytest.mark.parametrize("path", [p for p in _all_commands(cli) if p],
                         ids=lambda p: " ".join(p))
def test_every_command_is_documented(path: tuple[str, ...]) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert f"chaser {' '.join(path)}" in docs
