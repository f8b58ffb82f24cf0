"""`chaser sessions stats`: what running sessions use now, as `docker stats --no-stream`."""

from __future__ import annotations

import time
from datetime import datetime

import click

from chaser.client import Client
from chaser.models import Session, SessionUsage

from ._app import AppContext, pass_app, print_json, print_table

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5KiB' (docker's style); None -> '-'."""
    if n is None:
        return "-"
    value, unit = float(n), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.0f}{UNITS[unit]}" if unit == 0 else f"{value:.1f}{UNITS[unit]}"


def cpu_percent(before: SessionUsage | None, after: SessionUsage | None) -> float | None:
    """The CPU share between two samples, in % of one core (docker's and top's unit)."""
    if before is None or after is None or before.cpu_ms is None or after.cpu_ms is None:
        return None
    span_ms = (datetime.fromisoformat(after.sampled_at)
               - datetime.fromisoformat(before.sampled_at)).total_seconds() * 1000
    if span_ms <= 0:
        return None
    return max(0.0, (after.cpu_ms - before.cpu_ms) * 100 / span_ms)


def _sample(client: Client, ids: tuple[str, ...]) -> dict[str, Session]:
    if ids:
        return {i: client.sessions.get(i).last_info for i in ids}
    return {h.id: h.last_info for h in client.sessions.list(status="running", usage=True)}


def _row(s: Session, cpu: float | None) -> list[str]:
    u = s.usage
    if u is None:
        return [s.id, s.status, "-", "-", "-", "-", "-", "-"]
    mem_limit = s.limits.memory_mb * 1024 * 1024 if s.limits.memory_mb else None
    mem_pct = (f"{u.memory_bytes * 100 / mem_limit:.1f}%"
               if u.memory_bytes is not None and mem_limit else "-")
    return [s.id, s.status, f"{cpu:.1f}%" if cpu is not None else "-",
            f"{u.cpu_ms / 1000:.1f}s" if u.cpu_ms is not None else "-",
            f"{human_bytes(u.memory_bytes)} / {human_bytes(mem_limit)}", mem_pct,
            str(u.pids) if u.pids is not None else "-",
            f"{human_bytes(u.disk_bytes)} / {human_bytes(u.disk_limit_bytes)}"]


@click.command(epilog="""\b
Examples:
  chaser sessions stats                  # every running session
  chaser sessions stats ses_123 --json
  chaser sessions stats --interval 0     # one sample: no CPU %""")
@click.argument("session_ids", metavar="[ID]...", nargs=-1)
@click.option("--interval", type=click.FloatRange(min=0, max=60), default=1.1,
              show_default=True, metavar="SECONDS",
              help="Time between the two samples CPU % is measured over (the server "
                   "reads a sandbox at most once a second: keep it above 1).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def stats(app: AppContext, session_ids: tuple[str, ...], interval: float,
          as_json: bool) -> None:
    """Show what sessions use now: CPU, memory, processes, disk (running ones by default).

    CPU % is of one core, measured between two samples `--interval` apart (the server
    reads a sandbox at most once a second); CPU TIME is the total since it started.
    """
    client = app.client()
    before = _sample(client, session_ids) if interval > 0 else {}
    if interval > 0:
        time.sleep(interval)
    after = _sample(client, session_ids)
    cpu = {i: cpu_percent(before[i].usage if i in before else None, s.usage)
           for i, s in after.items()}
    if as_json:
        print_json([{"id": i, "status": s.status, "cpu_percent": cpu[i], "usage": s.usage,
                     "limits": s.limits} for i, s in after.items()])
        return
    print_table(["id", "status", "cpu %", "cpu time", "mem usage / limit", "mem %", "pids",
                 "disk / limit"], [_row(s, cpu[i]) for i, s in after.items()])
