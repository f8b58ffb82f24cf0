"""`chaser schedules ...`: jobs on a cron expression or an interval."""

from __future__ import annotations

from typing import Any

import click

from chaser.client import Schedule

from ._app import AppContext, parse_env, pass_app, print_json, print_table, short
from .jobs import json_option, parse_duration_ms


@click.group(epilog="""\b
Examples:
  chaser schedules create --cron "0 3 * * *" --timezone Europe/Paris -w app "make backup"
  chaser schedules create --every 300 --ephemeral "curl -fsS http://example.test/ping"
  chaser schedules ls
  chaser schedules pause sch_123""")
def schedules() -> None:
    """Run jobs on a schedule."""


@schedules.command("create", epilog="""\b
Example:
  chaser schedules create --every 300 -w app "make check"
""")
@click.argument("command")
@click.option("--cron", metavar="EXPR", help="A cron expression (5 fields).")
@click.option("--timezone", "--tz", default="UTC", show_default=True, metavar="ZONE",
              help="IANA time zone the cron expression is read in.")
@click.option("--every", "interval_s", type=click.IntRange(1), metavar="SECONDS",
              help="Run every SECONDS instead of on a cron expression.")
@click.option("--name", default="", help="A name to recognise it by.")
@click.option("--overlap", type=click.Choice(["skip", "queue"]), default="skip",
              show_default=True, help="When the previous run is still going.")
@click.option("--workspace", "-w", metavar="NAME")
@click.option("--ephemeral", is_flag=True)
@click.option("--image", metavar="IMAGE")
@click.option("--retries", type=click.IntRange(0, 99), metavar="N")
@click.option("--timeout", metavar="DURATION")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V")
@click.option("--paused", is_flag=True, help="Create it paused.")
@json_option
@pass_app
def create(app: AppContext, command: str, cron: str | None, timezone: str,
           interval_s: int | None, name: str, overlap: str, workspace: str | None,
           ephemeral: bool, image: str | None, retries: int | None, timeout: str | None,
           env: tuple[str, ...], paused: bool, as_json: bool) -> None:
    """Run COMMAND as a sandbox.exec job on a schedule."""
    if (cron is None) == (interval_s is None):
        raise click.UsageError("give either --cron or --every")
    job: dict[str, Any] = {"kind": "sandbox.exec", "command": command}
    for key, value in (("workspace", workspace), ("ephemeral", True if ephemeral else None),
                       ("image", image), ("env", parse_env(env)),
                       ("timeout_ms", parse_duration_ms(timeout, "'--timeout'"))):
        if value is not None:
            job[key] = value
    if retries is not None:
        job["retry"] = {"max_attempts": retries + 1}
    s = app.client().schedules.create(job, cron=cron, timezone=timezone, interval_s=interval_s,
                                      name=name, overlap=overlap, paused=paused)
    print_json(s) if as_json else click.echo(f"{s.id} next run {s.next_run_at}")


def _when(s: Schedule) -> str:
    return f"{s.cron} ({s.timezone})" if s.cron else f"every {s.interval_s}s"


@schedules.command("ls", epilog="""\b
Example:
  chaser schedules ls --json""")
@json_option
@pass_app
def ls(app: AppContext, as_json: bool) -> None:
    """List schedules."""
    items = app.client().schedules.list()
    if as_json:
        print_json(items)
        return
    print_table(["id", "name", "when", "paused", "next run", "last job", "command"],
                [[s.id, s.name, _when(s), s.paused, s.next_run_at, s.last_job_id,
                  short(str(s.job.get("command") or "pipeline"), 40)] for s in items])


@schedules.command(epilog="""\b
Example:
  chaser schedules get sch_123""")
@click.argument("schedule_id")
@pass_app
def get(app: AppContext, schedule_id: str) -> None:
    """Show a schedule (JSON) with its next run times."""
    print_json(app.client().schedules.get(schedule_id))


@schedules.command(epilog="""\b
Example:
  chaser schedules pause sch_123""")
@click.argument("schedule_id")
@pass_app
def pause(app: AppContext, schedule_id: str) -> None:
    """Pause a schedule (no runs until resumed)."""
    s = app.client().schedules.pause(schedule_id)
    click.echo(f"{s.id} paused")


@schedules.command(epilog="""\b
Example:
  chaser schedules resume sch_123""")
@click.argument("schedule_id")
@pass_app
def resume(app: AppContext, schedule_id: str) -> None:
    """Resume a schedule; runs missed while paused are not made up."""
    s = app.client().schedules.resume(schedule_id)
    click.echo(f"{s.id} next run {s.next_run_at}")


@schedules.command(epilog="""\b
Example:
  chaser schedules rm sch_123""")
@click.argument("schedule_id")
@pass_app
def rm(app: AppContext, schedule_id: str) -> None:
    """Delete a schedule (the jobs it queued stay)."""
    s = app.client().schedules.delete(schedule_id)
    click.echo(f"{s.id} deleted")
