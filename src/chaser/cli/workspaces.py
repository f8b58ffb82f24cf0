"""`chaser workspaces ...`: list and delete persistent workspaces."""

from __future__ import annotations

import click

from ._app import AppContext, pass_app, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(epilog="""\b
Examples:
  chaser workspaces ls
  chaser workspaces rm my-project
  chaser workspaces rm my-project --force      # stops the session running on it""")
def workspaces() -> None:
    """List and delete persistent workspaces."""


@workspaces.command("ls", epilog="""\b
Example:
  chaser workspaces ls --json | jq -r '.[].name'""")
@json_option
@pass_app
def ls(app: AppContext, as_json: bool) -> None:
    """List this key's workspaces: disk used, last use, running session."""
    items = app.client().workspaces.list()
    if as_json:
        print_json(items)
        return
    print_table(["name", "disk (MB)", "created", "last used", "session"],
                [[w.name, round(w.disk_bytes / 1e6, 1), w.created_at, w.last_used_at,
                  w.session_id] for w in items])


@workspaces.command("rm", epilog="""\b
Example:
  chaser workspaces rm old-project""")
@click.argument("name")
@click.option("--force", is_flag=True, help="Stop a session running on it first.")
@json_option
@pass_app
def rm(app: AppContext, name: str, force: bool, as_json: bool) -> None:
    """Delete a workspace and all its files."""
    ws = app.client().workspaces.delete(name, force=force)
    if as_json:
        print_json(ws)
    else:
        click.echo(f"{ws.name} deleted ({round(ws.disk_bytes / 1e6, 1)} MB freed)")
