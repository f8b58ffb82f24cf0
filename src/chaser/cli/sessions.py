"""`chaser sessions ...`: create, list, inspect and delete sandbox sessions."""

from __future__ import annotations

import click

from chaser.models import Limits, Session

from ._app import AppContext, parse_env, pass_app, print_fields, print_json, print_table
from .stats import human_bytes, stats

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(epilog="""\b
Examples:
  chaser sessions create -w my-project
  chaser sessions list --status running
  chaser sessions get ses_123 --json
  chaser sessions stats
  chaser sessions delete ses_123""")
def sessions() -> None:
    """Manage sandbox sessions."""


def show_session(s: Session) -> None:
    print_fields([
        ("id", s.id), ("workspace", s.workspace), ("image", s.image), ("status", s.status),
        ("created", s.created_at), ("ended", s.ended_at), ("end reason", s.end_reason),
        ("cwd", s.cwd), ("idle timeout", f"{s.idle_timeout_s}s"),
        ("last activity", s.last_activity_at),
        ("limits", ", ".join(f"{k}={v}" for k, v in s.limits.model_dump().items()
                             if v is not None) or None),
        ("env", " ".join(f"{k}={v}" for k, v in s.env.items()) or None),
        *_usage_fields(s),
    ])


def _usage_fields(s: Session) -> list[tuple[str, str | None]]:
    u = s.usage
    if u is None:
        return []
    return [("memory", f"{human_bytes(u.memory_bytes)} (peak "
                       f"{human_bytes(u.memory_peak_bytes)})"),
            ("cpu time", f"{u.cpu_ms / 1000:.2f}s" if u.cpu_ms is not None else None),
            ("processes", str(u.pids) if u.pids is not None else None),
            ("disk", f"{human_bytes(u.disk_bytes)} of {human_bytes(u.disk_limit_bytes)}")]


@sessions.command(epilog="""\b
Examples:
  chaser sessions create                      # private, empty /workspace
  chaser sessions create -w my-project -e NODE_ENV=test
  SESSION=$(chaser sessions create -w my-project)""")
@click.option("--workspace", "-w", metavar="NAME", help="Back the session by this workspace.")
@click.option("--image", metavar="IMAGE", help="Root filesystem image.")
@click.option("--cwd", metavar="DIR", help="Default working directory for commands.")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V",
              help="Environment variable for every command (repeatable).")
@click.option("--idle-timeout", type=click.IntRange(min=1), metavar="SECONDS",
              help="Stop the session after this long without activity (default 1800).")
@click.option("--memory-mb", type=int, help="Memory limit in MiB.")
@click.option("--pids", type=int, help="Maximum number of processes.")
@click.option("--cpus", type=float, help="CPU limit (cores).")
@json_option
@pass_app
def create(
    app: AppContext, workspace: str | None, image: str | None, cwd: str | None,
    env: tuple[str, ...], idle_timeout: int | None, memory_mb: int | None,
    pids: int | None, cpus: float | None, as_json: bool,
) -> None:
    """Start a session and print its id."""
    limits = None
    if memory_mb is not None or pids is not None or cpus is not None:
        limits = Limits.model_construct(memory_mb=memory_mb, pids=pids, cpus=cpus)
    session = app.client().sessions.create(
        workspace, image=image, env=parse_env(env), cwd=cwd, limits=limits,
        idle_timeout_s=idle_timeout,
    )
    if as_json:
        print_json(session.last_info)
    else:
        click.echo(session.id)


@sessions.command("list", epilog="""\b
Examples:
  chaser sessions ls                   # the running ones (as docker ps)
  chaser sessions ls --all             # stopped ones too
  chaser sessions list --status stopped --json | jq -r '.[].id'""")
@click.option("--status", type=click.Choice(["running", "stopped"]),
              help="Only sessions in this state (default: running).")
@click.option("--all", "-a", "all_", is_flag=True, help="Stopped sessions too.")
@json_option
@pass_app
def list_(app: AppContext, status: str | None, all_: bool, as_json: bool) -> None:
    """List sessions, newest first: the running ones unless --all or --status."""
    if status is None and not all_:
        status = "running"
    items = [s.last_info for s in app.client().sessions.list(status=status)]
    if status is not None:
        items = [s for s in items if s.status == status]
    if as_json:
        print_json(items)
        return
    print_table(["id", "workspace", "image", "status", "created"],
                [[s.id, s.workspace, s.image, s.status, s.created_at] for s in items])


@sessions.command(epilog="""\b
Example:
  chaser sessions get ses_123 --json""")
@click.argument("session_id", metavar="ID")
@json_option
@pass_app
def get(app: AppContext, session_id: str, as_json: bool) -> None:
    """Show one session."""
    info = app.client().sessions.get(session_id).last_info
    if as_json:
        print_json(info)
    else:
        show_session(info)


@sessions.command(epilog="""\b
Example:
  chaser sessions delete ses_123 ses_456""")
@click.argument("session_ids", metavar="ID...", nargs=-1, required=True)
@json_option
@pass_app
def delete(app: AppContext, session_ids: tuple[str, ...], as_json: bool) -> None:
    """Stop sessions and kill every process in them."""
    client = app.client()
    stopped = [client.sessions.delete(sid) for sid in session_ids]
    if as_json:
        print_json(stopped if len(stopped) > 1 else stopped[0])
    else:
        for s in stopped:
            click.echo(s.id)


sessions.add_command(list_, "ls")  # docker's and kubectl's habit
sessions.add_command(stats)
