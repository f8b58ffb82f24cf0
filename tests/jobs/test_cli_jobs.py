"""`chaser jobs ...` and `chaser schedules ...` run as a user runs them, against a real
server; the product document's line first, exactly as printed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.cli.test_cli_run import chaser_cli
from tests.conftest import ServerProcess
from tests.types import Tenant

PACKAGE = json.dumps({"name": "p", "version": "1.0.0", "scripts": {"test": "echo tests pass"}})
LOCK = json.dumps({"name": "p", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
                   "packages": {"": {"name": "p", "version": "1.0.0"}}})
DOC_LINE = 'chaser jobs exec --workspace my-project "npm ci && npm test" --wait --json'


def test_the_documented_line_as_printed(server: ServerProcess, tenant: Tenant) -> None:
    setup = f"printf '%s' {shlex.quote(PACKAGE)} > package.json; " \
            f"printf '%s' {shlex.quote(LOCK)} > package-lock.json"
    r = tenant.client.post("/v1/exec", json={"workspace": "my-project", "command": setup})
    assert r.json()["exit_code"] == 0, r.text
    args = shlex.split(DOC_LINE)[1:]
    done = chaser_cli(server.url, tenant.key, *args, timeout=180)
    assert done.returncode == 0, (done.stdout, done.stderr)
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["kind"] == "sandbox.exec"
    assert job["workspace"] == "my-project" and job["attempts"][0]["exit_code"] == 0
    logs = tenant.client.get(f"/v1/jobs/{job['id']}/logs").json()
    assert "tests pass" in logs["entries"][0]["output"]


def test_failure_exits_with_the_command_code(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "jobs", "exec", "--workspace", "w", "--retries",
                   "1", "--timeout", "30s", "echo out; exit 9", "--wait", "--json")
    assert r.returncode == 9, (r.stdout, r.stderr)
    job = json.loads(r.stdout)
    assert job["status"] == "failed" and len(job["attempts"]) == 2
    assert job["request"]["timeout_ms"] == 30_000


def test_live_output_and_progress(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "jobs", "exec", "--ephemeral",
                   "echo hello; echo oops >&2; exit 4", "--wait")
    assert r.returncode == 4
    assert r.stdout == "hello\n"
    assert "oops" in r.stderr and "attempt 1" in r.stderr and "failed" in r.stderr


def test_pipeline_file_ls_get_logs_retry(server: ServerProcess, tenant: Tenant,
                                         tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text("workspace: cli-pipe\nsteps:\n  - {name: one, command: echo first}\n"
                    "  - {name: two, command: 'echo second; exit 2'}\n")
    r = chaser_cli(server.url, tenant.key, "jobs", "run-pipeline", str(spec), "--wait",
                   "--json")
    assert r.returncode == 2, r.stderr
    job = json.loads(r.stdout)
    assert [s["status"] for s in job["steps"]] == ["succeeded", "failed"]
    listed = chaser_cli(server.url, tenant.key, "jobs", "ls", "--kind", "pipeline.run")
    assert job["id"] in listed.stdout
    shown = chaser_cli(server.url, tenant.key, "jobs", "get", job["id"])
    assert "failed" in shown.stdout and "two" in shown.stdout
    logs = chaser_cli(server.url, tenant.key, "jobs", "logs", job["id"])
    assert logs.stdout == "first\nsecond\n" and "==> step two" in logs.stderr
    follow = chaser_cli(server.url, tenant.key, "jobs", "logs", "-f", job["id"])
    assert follow.stdout == "first\nsecond\n" and follow.returncode == 2
    again = chaser_cli(server.url, tenant.key, "jobs", "retry", job["id"])
    assert again.returncode == 0 and "queued" in again.stdout
    cancel = chaser_cli(server.url, tenant.key, "jobs", "cancel", job["id"])
    assert cancel.returncode == 0


def test_schedules_commands(server: ServerProcess, tenant: Tenant) -> None:
    r = chaser_cli(server.url, tenant.key, "schedules", "create", "--cron", "0 3 * * *",
                   "--timezone", "Europe/Paris", "--ephemeral", "echo nightly", "--json")
    assert r.returncode == 0, r.stderr
    sched = json.loads(r.stdout)
    assert sched["cron"] == "0 3 * * *" and len(sched["next_run_times"]) == 5
    assert sched["id"] in chaser_cli(server.url, tenant.key, "schedules", "ls").stdout
    assert chaser_cli(server.url, tenant.key, "schedules", "pause", sched["id"]).returncode == 0
    assert tenant.client.get(f"/v1/schedules/{sched['id']}").json()["paused"] is True
    assert chaser_cli(server.url, tenant.key, "schedules", "resume", sched["id"]).returncode == 0
    assert chaser_cli(server.url, tenant.key, "schedules", "rm", sched["id"]).returncode == 0
    assert tenant.client.get(f"/v1/schedules/{sched['id']}").status_code == 404
    bad = chaser_cli(server.url, tenant.key, "schedules", "create", "--cron", "nope", "true")
    assert bad.returncode == 1 and "invalid cron" in bad.stderr
