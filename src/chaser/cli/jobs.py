"""`chaser jobs ...`: queue, follow and manage jobs (a thin layer over `client.jobs`)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from chaser.client import Client, Job

from ._app import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TIMED_OUT,
    AppContext,
    fail,
    parse_env,
    pass_app,
    print_fields,
    print_json,
    print_table,
    short,
    stdout_is_tty,
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration_ms(value: str | None, flag: str) -> int | None:
    """`90`, `90s`, `1.5m`, `2h`, `500ms` -> milliseconds (a bare number is seconds)."""
    if value is None:
        return None
    m = DURATION_RE.match(value)
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration such as 30s, 10m, 1h or 500ms",
                                 param_hint=flag)
    scale = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}[m.group(2)]
    return max(1, int(float(m.group(1)) * scale))


def job_exit_code(job: Job) -> int:
    """0 when the job succeeded; the command's exit code when it has one; 124 for a
    timeout or deadline, 130 when cancelled, 1 otherwise."""
    if job.status == "succeeded":
        return 0
    if job.status == "cancelled":
        return EXIT_INTERRUPTED
    if job.exit_code:
        return job.exit_code & 0xFF or EXIT_ERROR
    if job.end_reason in ("timeout", "deadline"):
        return EXIT_TIMED_OUT
    return EXIT_ERROR


def _labels(pairs: tuple[str, ...]) -> dict[str, str] | None:
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--label'")
        out[key] = value
    return out or None


submit_options = [
    click.option("--workspace", "-w", metavar="NAME", help="Run in this workspace."),
    click.option("--ephemeral", is_flag=True, help="Run in a fresh private sandbox (default "
                 "without --workspace)."),
    click.option("--image", metavar="IMAGE", help="Root filesystem image."),
    click.option("--retries", type=click.IntRange(0, 99), metavar="N",
                 help="Try again up to N times after a failure (max_attempts = N+1)."),
    click.option("--timeout", metavar="DURATION", help="Per attempt: 30s, 10m, 1h, 500ms."),
    click.option("--deadline", metavar="DURATION", help="Overall, from submission: no "
                 "attempt starts or runs past it."),
    click.option("--queue", "-q", metavar="NAME", help="Queue (default: default)."),
    click.option("--priority", type=click.IntRange(-1000, 1000), help="Higher runs first."),
    click.option("--idempotency-key", metavar="KEY", help="Submitting the same key again "
                 "returns the first job."),
    click.option("--run-at", metavar="TIME", help="Start no earlier than this ISO 8601 time."),
    click.option("--label", "-l", "labels", multiple=True, metavar="K=V",
                 help="Label (repeatable)."),
    click.option("--webhook", metavar="URL", help="Called when the job is finished (hosts "
                 "the server allowlists)."),
    click.option("--wait", is_flag=True, help="Wait for the job to finish; exit with its code."),
    json_option,
]


def with_submit_options(f: Any) -> Any:
    for option in reversed(submit_options):
        f = option(f)
    return f


def _fields(workspace: str | None, ephemeral: bool, image: str | None, retries: int | None,
            timeout: str | None, deadline: str | None, queue: str | None,
            priority: int | None, idempotency_key: str | None, run_at: str | None,
            labels: tuple[str, ...], webhook: str | None) -> dict[str, Any]:
    if workspace and ephemeral:
        raise click.UsageError("give either --workspace or --ephemeral, not both")
    return {"workspace": workspace, "ephemeral": True if ephemeral else None, "image": image,
            "max_attempts": retries + 1 if retries is not None else None,
            "timeout_ms": parse_duration_ms(timeout, "'--timeout'"),
            "deadline_ms": parse_duration_ms(deadline, "'--deadline'"), "queue": queue,
            "priority": priority, "idempotency_key": idempotency_key, "run_at": run_at,
            "labels": _labels(labels), "webhook": webhook}


@click.group(epilog="""\b
Examples:
  chaser jobs exec --workspace my-project "npm ci && npm test" --wait --json
  chaser jobs exec --ephemeral --retries 2 --timeout 10m "make check"
  chaser jobs run-pipeline ci.yaml --wait
  chaser jobs ls --status failed
  chaser jobs logs -f job_123""")
def jobs() -> None:
    """Queued, retriable command execution: sandbox.exec and pipeline.run jobs."""


@jobs.command("exec", epilog="""\b
Examples:
  chaser jobs exec --workspace my-project "npm ci && npm test" --wait --json
  chaser jobs exec -w app --retries 3 --timeout 5m -l team=web "npm test" --wait

Without --wait, the job is queued and its id printed. With --wait the command's output
is shown as it runs with a progress line on stderr; with --wait --json the finished
job is printed as JSON. Either way the exit code is 0 when the job succeeded and the
command's own code when it failed (124 timeout, 130 cancelled, 1 otherwise).""")
@click.argument("command")
@with_submit_options
@click.option("--cwd", metavar="DIR", help="Working directory (default /workspace).")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Environment variable.")
@click.option("--bash", "use_bash", is_flag=True, help="Run with bash instead of sh.")
@pass_app
def exec_job(app: AppContext, /, command: str, wait: bool, as_json: bool, cwd: str | None,
             env: tuple[str, ...], use_bash: bool, **opts: Any) -> None:
    """Queue COMMAND as a sandbox.exec job."""
    fields = _fields(**opts)
    client = app.client()
    job = client.jobs.exec(command, cwd=cwd, env=parse_env(env),
                           shell="bash" if use_bash else None, **fields)
    _after_submit(client, job, wait, as_json)


@jobs.command("run-pipeline", epilog="""\b
Example:
  chaser jobs run-pipeline ci.yaml --workspace my-project --wait
\b
The file holds a pipeline.run request in YAML (or JSON):
  workspace: my-project
  retry: {max_attempts: 2}
  resume_from_failed_step: true
  steps:
    - {name: install, command: npm ci}
    - {name: test, command: npm test, retry: {max_attempts: 2}}
    - {name: lint, command: npm run lint, continue_on_error: true}
Options given on the command line win over the file's.""")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_submit_options
@pass_app
def run_pipeline(app: AppContext, /, file: Path, wait: bool, as_json: bool, **opts: Any) -> None:
    """Queue the pipeline described in FILE."""
    import yaml

    try:
        spec = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        fail(f"{file}: not valid YAML: {e}")
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list):
        fail(f"{file}: expected a mapping with a list of steps")
    spec.pop("kind", None)
    given = {k: v for k, v in _fields(**opts).items() if v is not None}
    if "workspace" in given:
        spec.pop("ephemeral", None)
    if "max_attempts" in given:
        spec["retry"] = {**(spec.get("retry") or {}), "max_attempts": given.pop("max_attempts")}
    client = app.client()
    job = client.jobs.pipeline(**{**spec, **given})
    _after_submit(client, job, wait, as_json)


def _after_submit(client: Client, job: Job, wait: bool, as_json: bool) -> None:
    if not wait:
        if as_json:
            print_json(job)
        else:
            click.echo(job.id)
        return
    if as_json:
        done = client.jobs.wait(job.id)
        print_json(done)
    else:
        done = _follow_live(client, job)
    raise SystemExit(job_exit_code(done))


def _follow_live(client: Client, job: Job) -> Job:
    """Output as it comes (stdout, stderr), a progress line on stderr, then the result."""
    started = time.monotonic()
    tty = sys.stderr.isatty()
    attempt, step = 0, ""

    def progress(text: str) -> None:
        elapsed = time.monotonic() - started
        line = f"[{job.id}] attempt {attempt}{' · ' + step if step else ''} · {elapsed:.1f}s {text}"
        click.echo(("\r\033[2K" if tty else "") + line, err=True, nl=not tty)

    for ev in client.jobs.stream(job.id, attempt=1):
        if ev.event == "attempt":
            attempt = int(ev.data.get("number") or attempt)
            status = ev.data.get("status")
            progress("running" if status == "running" else f"{status} "
                     f"(exit {ev.data.get('exit_code')}, {ev.data.get('end_reason')})")
            if tty and status != "running":
                click.echo("", err=True)
        elif ev.event == "step":
            step = str(ev.data.get("name") or "")
            progress(str(ev.data.get("status")))
            if tty and ev.data.get("status") != "running":
                click.echo("", err=True)
        elif ev.event == "output":
            stream = sys.stderr if ev.data.get("stream") == "stderr" else sys.stdout
            if tty:
                click.echo("\r\033[2K", err=True, nl=False)
            stream.write(str(ev.data.get("data", "")))
            stream.flush()
    done = client.jobs.get(job.id)
    click.echo(f"[{job.id}] {done.status}" + (f" (exit {done.exit_code})" if
               done.exit_code is not None else "") + f" after {len(done.attempts)} "
               f"attempt(s), {time.monotonic() - started:.1f}s", err=True)
    return done


@jobs.command("ls", epilog="""\b
Example:
  chaser jobs ls --status failed -l branch=main""")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed",
                                             "cancelled"]))
@click.option("--kind", type=click.Choice(["sandbox.exec", "pipeline.run"]))
@click.option("--queue", "-q", metavar="NAME")
@click.option("--workspace", "-w", metavar="NAME")
@click.option("--label", "-l", "labels", multiple=True, metavar="K=V")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", metavar="CURSOR", help="next_cursor of the previous page.")
@json_option
@pass_app
def ls(app: AppContext, status: str | None, kind: str | None, queue: str | None,
       workspace: str | None, labels: tuple[str, ...], limit: int, cursor: str | None,
       as_json: bool) -> None:
    """List jobs, newest first."""
    page = app.client().jobs.list(status=status, kind=kind, queue=queue, workspace=workspace,
                                  labels=_labels(labels), limit=limit, cursor=cursor)
    if as_json:
        print_json(page)
        return
    print_table(["id", "kind", "status", "attempts", "exit", "queue", "created", "what"],
                [[j.id, j.kind, j.status, len(j.attempts), j.exit_code, j.queue, j.created_at,
                  short(str(j.request.get("command") or f"{len(j.request.get('steps') or [])} steps"),
                        40)] for j in page.jobs])
    if page.next_cursor and stdout_is_tty():
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@jobs.command(epilog="""\b
Example:
  chaser jobs get job_123 --json | jq .attempts""")
@click.argument("job_id")
@json_option
@pass_app
def get(app: AppContext, job_id: str, as_json: bool) -> None:
    """Show a job with its attempts (and steps)."""
    job = app.client().jobs.get(job_id)
    if as_json:
        print_json(job)
        return
    print_fields([("id", job.id), ("kind", job.kind), ("status", job.status),
                  ("exit code", job.exit_code), ("end reason", job.end_reason),
                  ("queue", job.queue), ("workspace", job.workspace),
                  ("created", job.created_at), ("next attempt", job.next_attempt_at)])
    print_table(["attempt", "status", "exit", "reason", "node", "started", "ms"],
                [[a.number, a.status, a.exit_code, a.end_reason, a.node, a.started_at,
                  a.duration_ms] for a in job.attempts])
    if job.steps:
        print_table(["step", "name", "status", "exit", "tries", "ms"],
                    [[s.index + 1, s.name, s.status, s.exit_code, s.tries, s.duration_ms]
                     for s in job.steps])


@jobs.command(epilog="""\b
Example:
  chaser jobs logs -f job_123""")
@click.argument("job_id")
@click.option("--attempt", "-a", type=click.IntRange(1), help="Default: the latest.")
@click.option("--follow", "-f", is_flag=True, help="Follow the output until the job ends.")
@pass_app
def logs(app: AppContext, job_id: str, attempt: int | None, follow: bool) -> None:
    """Print a job's output (one attempt), or follow it live with -f."""
    client = app.client()
    if follow:
        for ev in client.jobs.stream(job_id, attempt=attempt):
            if ev.event == "output":
                out = sys.stderr if ev.data.get("stream") == "stderr" else sys.stdout
                out.write(str(ev.data.get("data", "")))
                out.flush()
            elif ev.event == "step" and ev.data.get("status") == "running":
                click.echo(f"==> step {ev.data.get('name')}", err=True)
        raise SystemExit(job_exit_code(client.jobs.get(job_id)))
    for entry in client.jobs.logs(job_id, attempt).entries:
        if entry.step is not None:
            click.echo(f"==> step {entry.name}", err=True)
        sys.stdout.write(entry.output)
    sys.stdout.flush()


@jobs.command(epilog="""\b
Example:
  chaser jobs cancel job_123""")
@click.argument("job_id")
@json_option
@pass_app
def cancel(app: AppContext, job_id: str, as_json: bool) -> None:
    """Cancel a job: queued, it never starts; running, its attempt is killed."""
    job = app.client().jobs.cancel(job_id)
    print_json(job) if as_json else click.echo(f"{job.id} {job.status}")


@jobs.command(epilog="""\b
Example:
  chaser jobs retry --resume job_123""")
@click.argument("job_id")
@click.option("--resume", is_flag=True, default=None,
              help="A pipeline resumes at its failed step.")
@json_option
@pass_app
def retry(app: AppContext, job_id: str, resume: bool | None, as_json: bool) -> None:
    """Queue a finished job for another round of attempts."""
    job = app.client().jobs.retry(job_id, resume_from_failed_step=resume)
    print_json(job) if as_json else click.echo(f"{job.id} {job.status}")
