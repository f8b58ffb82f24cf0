"""The `chaser` command line: a thin layer over the SDK (`chaser.client`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import click

from chaser.client import ChaserError, Client, __version__

from ._app import AppContext, ChaserGroup, fail, print_json, print_table
from .attach import attach
from .commands import commands, wait
from .cp import cp
from .keys import keys
from .run import exec_command, shell
from .sessions import sessions
from .stats import human_bytes
from .workspaces import workspaces
from .images import images
from .jobs import jobs
from .schedules import schedules

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=ChaserGroup, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  chaser server                                # run the service (foreground)
  chaser shell -c "python3 -c 'print(42)'"     # run a command, stream its output
  chaser exec -w my-project "npm test"         # one-shot exec, like POST /v1/exec
  chaser sessions list
  chaser commands logs -f -s ses_123 cmd_456

\b
Configuration (highest first): --api-url/--api-key, CHASER_API_URL/CHASER_API_KEY,
the config file (--config, CHASER_CONFIG or ~/.config/chaser/config.toml with
api_url = "..." and api_key = "..."), then http://127.0.0.1:8080.""")
@click.option("--api-url", metavar="URL", help="Server URL [env: CHASER_API_URL].")
@click.option("--api-key", metavar="KEY", help="API key [env: CHASER_API_KEY].")
@click.option("--config", "config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Config file [env: CHASER_CONFIG].")
@click.version_option(__version__, "-V", "--version", prog_name="chaser")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None, api_key: str | None,
        config: str | None) -> None:
    """Chaser: run commands in Linux sandboxes over HTTP."""
    app = AppContext(api_url, api_key, config)
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command(epilog="""\b
Examples:
  chaser server
  chaser server --host 0.0.0.0 --port 9000 --data-dir /srv/chaser
  CHASER_API_KEY=secret chaser server      # accept this admin key

Without CHASER_API_KEY and with no stored key, the first start creates an admin key
and writes it to a 0600 file in the data dir (the log says where).""")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory [default: /var/lib/chaser as root, else the XDG data "
                   "dir].")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Any setting of docs/configuration.md (as CHASER_NAME), e.g. "
                   "--set max_sandboxes=64; wins over the variable.")
@click.option("--registry-mirror", "mirrors", multiple=True, metavar="URL",
              help="A mirror tried first for Docker Hub images (repeatable) "
                   "[env: CHASER_REGISTRY_MIRRORS].")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST:PORT",
              help="A registry reached over plain HTTP (repeatable; loopback ones always "
                   "are) [env: CHASER_INSECURE_REGISTRIES].")
@click.option("--registry-auth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Registry credentials, as Docker's config.json "
                                   "[env: CHASER_REGISTRY_AUTH_FILE].")
def server(host: str, port: int, data_dir: Path | None, sets: tuple[str, ...],
           mirrors: tuple[str, ...], insecure: tuple[str, ...], registry_auth: Path | None) -> None:
    """Run the Chaser server in the foreground."""
    try:
        from chaser.server.run import serve
    except ImportError as e:
        fail(f"the server is not installed here ({e}); install it with "
             "pip install 'chaser[server]' (scripts/install.sh does)")
    serve(host=host, port=port, data_dir=data_dir, sets=sets,
          registry_mirrors=list(mirrors) or None, insecure_registries=list(insecure) or None,
          registry_auth_file=registry_auth)


@cli.command(epilog="""\b
Examples:
  chaser backup /srv/backups/chaser-$(date +%F)
  chaser backup --data-dir /srv/chaser --with-logs /mnt/backup/chaser

Safe while the server runs: the database is copied with SQLite's online backup. To
restore: stop the server, put the copy in place of the data dir, start it.""")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The data dir [default: as for 'chaser server'].")
@click.option("--with-logs", is_flag=True, help="Copy command output logs too.")
def backup(dest: Path, data_dir: Path | None, with_logs: bool) -> None:
    """Copy a data dir (database, keys, workspace disks) while the server runs."""
    from chaser.config import default_data_dir
    from chaser.server.backup import backup as run_backup

    try:
        copied = run_backup(data_dir or default_data_dir(), dest, with_logs)
    except (OSError, sqlite3.Error, subprocess.CalledProcessError) as e:
        fail(f"backup failed: {e}")
    click.echo(f"backed up {len(copied)} items to {dest}")


@cli.command(epilog="""\b
Examples:
  chaser version
  chaser version --json""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def version(app: AppContext, as_json: bool) -> None:
    """Show the client version and, if reachable, the server's."""
    info: dict[str, str | None] = {"client": __version__, "server": None, "api_url": None}
    problem = None
    try:
        with Client(app.api_url, app.api_key, config_file=app.config, timeout=3.0,
                    retries=0) as client:
            info["api_url"] = client.api_url
            info["server"] = str(client.health().get("version"))
    except ChaserError as e:
        problem = str(e)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"chaser {__version__}")
    if info["server"]:
        click.echo(f"server {info['server']} at {info['api_url']}")
    else:
        click.echo(f"server: not reachable ({problem})")


@cli.command(epilog="""\b
Examples:
  chaser usage
  chaser usage --json | jq .usage""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def usage(app: AppContext, as_json: bool) -> None:
    """Show what this key's tenant holds against its limits (admins: every tenant)."""
    report = app.client().usage()
    if as_json:
        print_json(report)
        return
    rows = [(report.tenant, report.usage, report.limits.model_dump(), report.measured)]
    rows += [(t.tenant, t.usage, t.limits.model_dump(), t.measured)
             for t in report.tenants or [] if t.tenant != report.tenant]
    print_table(["tenant", "sandboxes", "sessions", "commands", "memory (MiB)", "mem in use",
                 "pids"],
                [[name, *(f"{use.get(k, 0)}/{lim[LIMIT]}" for k, LIMIT in
                          (("sandboxes", "max_sandboxes"), ("sessions", "max_sessions"),
                           ("commands", "max_commands"), ("memory_mb", "max_memory_mb"))),
                  human_bytes(m.memory_bytes if m else None),
                  f"{m.pids}/{lim['max_pids']}" if m and m.pids is not None else "-"]
                 for name, use, lim, m in rows])


cli.add_command(shell)
cli.add_command(attach)
cli.add_command(exec_command)
cli.add_command(sessions)
cli.add_command(commands)
cli.add_command(keys)
cli.add_command(workspaces)
cli.add_command(images)
cli.add_command(jobs)
cli.add_command(schedules)
cli.add_command(cp)
cli.add_command(wait)


def main() -> None:
    """Console entry point (`chaser`, `python -m chaser`)."""
    cli.main(prog_name="chaser")
