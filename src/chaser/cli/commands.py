"""`chaser commands ...`: inspect and steer the commands of a session."""

from __future__ import annotations

import sys

import click

from chaser.client import CommandHandle, TimeoutError
from chaser.models import Command

from ._app import (
    AppContext,
    exit_code_for,
    fail,
    pass_app,
    print_fields,
    print_json,
    print_table,
    short,
)
from ._follow import follow

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
session_option = click.option(
    "--session", "-s", "session_id", metavar="ID", required=True, envvar="CHASER_SESSION",
    help="The session the command runs in [env: CHASER_SESSION].",
)
# Commands are addressable by id alone: the session is looked up when not given.
optional_session = click.option(
    "--session", "-s", "session_id", metavar="ID", envvar="CHASER_SESSION",
    help="The session the command runs in (found from the id when not given) "
         "[env: CHASER_SESSION].",
)


def command_handle(app: AppContext, session_id: str | None, command_id: str) -> CommandHandle:
    """A handle on the command: in the session given, or found by its id."""
    if session_id:
        return app.client().commands.handle(session_id, command_id)
    return app.client().commands.by_id(command_id)


@click.group(epilog="""\b
Examples:
  chaser commands list -s ses_123
  chaser commands logs -f cmd_456                 # the session is found from the id
  chaser commands stdin -s ses_123 cmd_456 --newline "q"
  chaser commands kill -s ses_123 cmd_456 --signal INT""")
def commands() -> None:
    """Inspect, follow, feed and signal commands in a session."""


def _result(c: Command) -> str:
    if c.status == "exited":
        return str(c.exit_code)
    if c.status == "killed":
        return f"SIG{c.signal}" if c.signal and not c.signal.isdigit() else f"signal {c.signal}"
    return "-"


@commands.command("list", epilog="""\b
Example:
  chaser commands list -s ses_123 --json | jq -r '.[] | select(.status=="running") | .id'""")
@session_option
@json_option
@pass_app
def list_(app: AppContext, session_id: str, as_json: bool) -> None:
    """List a session's commands, newest first."""
    items = app.client().commands.list(session_id)
    if as_json:
        print_json(items)
        return
    print_table(["id", "status", "exit", "pid", "started", "command"],
                [[c.id, c.status, _result(c), c.pid, c.started_at, short(c.command)]
                 for c in items])


@commands.command(epilog="""\b
Example:
  chaser commands get -s ses_123 cmd_456 --json | jq .exit_code""")
@optional_session
@click.argument("command_id", metavar="COMMAND_ID")
@json_option
@pass_app
def get(app: AppContext, session_id: str | None, command_id: str, as_json: bool) -> None:
    """Show a command's status (and, with --json, the first page of its output)."""
    handle = command_handle(app, session_id, command_id)
    info = app.client().commands.get(handle.session_id, command_id).last_info
    assert info is not None
    if as_json:
        print_json(info)
        return
    print_fields([
        ("id", info.id), ("session", info.session_id), ("command", info.command),
        ("cwd", info.cwd), ("pid", info.pid), ("background", info.background),
        ("status", info.status), ("exit code", info.exit_code), ("signal", info.signal),
        ("end reason", info.end_reason), ("started", info.started_at),
        ("ended", info.ended_at), ("output", f"{info.output_size} bytes"),
    ])


@commands.command(epilog="""\b
Examples:
  chaser commands logs -s ses_123 cmd_456             # output so far
  chaser commands logs -f -s ses_123 cmd_456          # follow until it exits
  chaser commands logs -f --from 1024 -s ses_123 cmd_456

With -f, stdout and stderr chunks go to stdout and stderr; Ctrl-C stops following
(the command keeps running). Without -f, the output so far is printed as one log.""")
@optional_session
@click.argument("command_id", metavar="COMMAND_ID")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Stream output until it exits.")
@click.option("--from", "from_offset", type=click.IntRange(min=0), default=0,
              metavar="OFFSET", help="Start at this byte offset of the output.")
@pass_app
def logs(
    app: AppContext, session_id: str | None, command_id: str, follow_: bool, from_offset: int
) -> None:
    """Print a command's output; with -f, follow it and exit with the command's code."""
    handle = command_handle(app, session_id, command_id)
    if follow_:
        end = follow(handle, from_offset=from_offset)
        raise SystemExit(exit_code_for(end.status, end.exit_code, end.signal))
    sys.stdout.write(handle.output(from_offset=from_offset))
    sys.stdout.flush()


@commands.command(epilog="""\b
Examples:
  chaser commands stdin -s ses_123 cmd_456 "hello"$'\\n'
  chaser commands stdin -s ses_123 cmd_456 -n "q"        # adds the newline
  cat input.txt | chaser commands stdin -s ses_123 cmd_456 - --eof
  chaser commands stdin -s ses_123 cmd_456 --eof         # just close stdin""")
@optional_session
@click.argument("command_id", metavar="COMMAND_ID")
@click.argument("text", required=False)
@click.option("-n", "--newline", is_flag=True, help="Append a newline to TEXT.")
@click.option("--eof", is_flag=True, help="Close stdin afterwards (the command sees EOF).")
@json_option
@pass_app
def stdin(
    app: AppContext, session_id: str | None, command_id: str, text: str | None, newline: bool,
    eof: bool, as_json: bool,
) -> None:
    """Send TEXT (or local stdin, byte for byte and streamed, with -) to a command's stdin."""
    if text is None and not eof:
        raise click.UsageError("give TEXT (or - to read local stdin) and/or --eof")
    handle = command_handle(app, session_id, command_id)
    if text == "-":
        result = handle.stream_stdin(sys.stdin.buffer, eof=eof)
    elif text is not None:
        result = handle.send_stdin(text + "\n" if newline else text, eof=eof)
    else:
        result = handle.close_stdin()
    if as_json:
        print_json(result)


@commands.command(epilog="""\b
Examples:
  chaser commands kill -s ses_123 cmd_456               # SIGTERM
  chaser commands kill -s ses_123 cmd_456 --signal KILL""")
@optional_session
@click.argument("command_id", metavar="COMMAND_ID")
@click.option("--signal", "sig", default="TERM", show_default=True, metavar="SIGNAL",
              help="Signal name (with or without SIG) or number.")
@json_option
@pass_app
def kill(app: AppContext, session_id: str | None, command_id: str, sig: str,
         as_json: bool) -> None:
    """Send a signal to a command's whole process group."""
    signal: str | int = int(sig) if sig.isdigit() else sig
    info = command_handle(app, session_id, command_id).kill(signal)
    if as_json:
        print_json(info)
    else:
        click.echo(f"{info.id} {info.status}")


@click.command(epilog="""\b
Examples:
  chaser wait cmd_456 && echo passed
  chaser wait --timeout 60 cmd_456

Exits with the command's own code (128+N if killed by signal N, 124 if it timed out);
2 and a message when --timeout passes first.""")
@optional_session
@click.argument("command_id", metavar="COMMAND_ID")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Give up after this long (the command keeps running).")
@json_option
@pass_app
def wait(app: AppContext, session_id: str | None, command_id: str, timeout: float | None,
         as_json: bool) -> None:
    """Wait for a command to end; exit with its exit code."""
    handle = command_handle(app, session_id, command_id)
    try:
        info = handle.wait(timeout=timeout)
    except TimeoutError:
        fail(f"command {command_id} is still running after {timeout} s", 2)
    if as_json:
        print_json(info)
    raise SystemExit(exit_code_for(info.status, info.exit_code, info.signal))
