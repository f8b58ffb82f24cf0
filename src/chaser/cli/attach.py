"""`chaser attach`: back onto a terminal left running (detached, or a lost connection)."""

from __future__ import annotations

import click

from chaser.client import Client

from ._app import AppContext, fail, pass_app
from .terminal import Target, run_terminal


def find_pty_session(client: Client, pty_id: str) -> str:
    """The session of terminal `pty_id` (`GET /v1/commands/{id}`), while it runs."""
    command = client.commands.by_id(pty_id)
    if command.status != "running":
        fail(f"terminal {pty_id} has ended ({command.status}, exit code "
             f"{command.exit_code}); its transcript: chaser commands logs {pty_id}")
    return command.session_id


@click.command(epilog="""\b
Examples:
  chaser attach cmd_123                  # its session is found by the id
  chaser attach cmd_123 -s ses_456
  chaser attach --view cmd_123           # watch read-only (another client types)

The id is the one `chaser shell` printed on detach (Ctrl-]); it is also the terminal's
command id (`chaser commands list`). What the terminal printed while nobody was
attached is replayed first (up to the server's scrollback). Ctrl-] detaches again.""")
@click.argument("pty_id")
@click.option("--session", "-s", "session_id", metavar="ID", envvar="CHASER_SESSION",
              help="The session the terminal runs in (found when omitted) "
                   "[env: CHASER_SESSION].")
@click.option("--view", is_flag=True, help="Attach read-only: watch, do not type.")
@pass_app
def attach(app: AppContext, pty_id: str, session_id: str | None, view: bool) -> None:
    """Reattach to a terminal that is still running."""
    if session_id is None:
        session_id = find_pty_session(app.client(), pty_id)
    raise SystemExit(run_terminal(app, Target(session_id, pty_id=pty_id, view=view)).code)
