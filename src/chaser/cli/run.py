"""`chaser shell -c` and `chaser exec`: running commands from the terminal."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from chaser.client import ChaserError, Client, ConflictError, SessionHandle
from chaser.models import MAX_STDIN_BYTES, Shell

from ._app import (
    EXIT_INTERRUPTED,
    AppContext,
    exit_code_for,
    parse_env,
    pass_app,
    print_json,
    spinner,
)
from ._follow import follow, forward_stdin

DEFAULT_WORKSPACE = "default"
F = TypeVar("F", bound=Callable[..., Any])


def workspace_session(client: Client, workspace: str, image: str | None) -> SessionHandle:
    """The running session of `workspace` (and `image`, if given), started if none is."""

    def find() -> SessionHandle | None:
        for s in client.sessions.list(status="running"):
            if s.status == "running" and s.workspace == workspace \
                    and (image is None or s.image == image):
                return s
        return None

    found = find()
    if found is not None:
        return found
    try:
        return client.sessions.create(workspace=workspace, image=image)
    except ConflictError:  # started concurrently by someone else: use theirs
        found = find()
        if found is None:
            raise
        return found


def _one_target(workspace: str | None, session: str | None, ephemeral: bool) -> None:
    if sum([workspace is not None, session is not None, ephemeral]) > 1:
        raise click.UsageError("give at most one of --workspace, --session and --ephemeral")


target_options = [
    click.option("--workspace", "-w", metavar="NAME",
                 help=f"Run in this workspace's session (default: {DEFAULT_WORKSPACE!r})."),
    click.option("--session", "-s", "session_id", metavar="ID", envvar="CHASER_SESSION",
                 help="Run in this existing session [env: CHASER_SESSION]."),
    click.option("--ephemeral", is_flag=True,
                 help="Run in a fresh sandbox that is destroyed afterwards."),
    click.option("--image", metavar="IMAGE", help="Root filesystem image for a new sandbox."),
    click.option("--cwd", metavar="DIR", help="Working directory (default /workspace)."),
    click.option("-e", "--env", "env", multiple=True, metavar="K=V",
                 help="Set an environment variable (repeatable; -e K passes the local K)."),
    click.option("--timeout", type=click.FloatRange(min=0.001), metavar="SECONDS",
                 help="Kill the command after this long."),
    click.option("--bash", "use_bash", is_flag=True, help="Run with bash instead of sh."),
]


def with_target_options(f: F) -> F:
    for option in reversed(target_options):
        f = option(f)
    return f


def _read_stdin() -> bytes:
    """Local stdin, exactly (bytes), up to what one request carries."""
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise click.UsageError(f"-i sends at most {MAX_STDIN_BYTES} bytes of stdin; pipe "
                               "more into `chaser shell -c`, which streams it")
    return data


def _shell(use_bash: bool) -> Shell | None:
    return "bash" if use_bash else None


def _timeout_ms(timeout: float | None) -> int | None:
    return None if timeout is None else max(1, int(timeout * 1000))


@click.command(epilog="""\b
Examples:
  chaser shell                              # an interactive shell (Ctrl-] detaches)
  chaser shell --agent                      # the terminal agents get (docs/pty.md)
  chaser shell -c "python3 -c 'print(42)'"
  chaser shell -w my-project -c "npm test"
  chaser shell --ephemeral --image node:20-bookworm -c "node -v"
  echo hello | chaser shell -c "tr a-z A-Z"

Without --workspace/--session/--ephemeral it runs in the session of the workspace
named "default" (started on first use), so files persist between runs.

Without -c: a login shell on a real terminal in the sandbox, your terminal in raw mode
(restored on exit), window size changes forwarded. The exit code is the remote shell's.
Ctrl-] detaches and leaves it running: `chaser attach ID` goes back to it.

With -c: output streams live (stdout to stdout, stderr to stderr); the exit code is the
command's own (128+N if killed by signal N, 124 on --timeout). Ctrl-C sends SIGINT to
the remote command; a second Ctrl-C kills it and exits. Piped stdin is forwarded.""")
@click.option("-c", "command", metavar="CMD",
              help="Run this command (no terminal) instead of an interactive shell.")
@click.option("--agent", is_flag=True,
              help="Interactive: agent mode (no colours, no pager, plain prompt).")
@with_target_options
@pass_app
def shell(
    app: AppContext, command: str | None, agent: bool, workspace: str | None,
    session_id: str | None, ephemeral: bool, image: str | None, cwd: str | None,
    env: tuple[str, ...], timeout: float | None, use_bash: bool,
) -> None:
    """Open a shell in a sandbox, or run a command there with its output live."""
    _one_target(workspace, session_id, ephemeral)
    if command is None:
        if env or timeout is not None:
            raise click.UsageError("-e and --timeout go with -c (a command), not with an "
                                   "interactive shell")
        raise SystemExit(_interactive(app, agent, workspace, session_id, ephemeral, image,
                                      cwd, _shell(use_bash)))
    if agent:
        raise click.UsageError("--agent is for interactive shells (without -c)")
    _run_in_target(app.client(), command=command, workspace=workspace, session_id=session_id,
                   ephemeral=ephemeral, image=image, cwd=cwd, env=parse_env(env),
                   timeout=timeout, shell_name=_shell(use_bash), stdin_from_tty=False)


def _run_in_target(
    client: Client, *, command: str, workspace: str | None, session_id: str | None,
    ephemeral: bool, image: str | None, cwd: str | None, env: dict[str, str] | None,
    timeout: float | None, shell_name: Shell | None, stdin_from_tty: bool,
) -> NoReturn:
    """`shell -c` and `exec`: start the command in its target session, forward stdin,
    follow its output live, exit with its code (an ephemeral session is deleted)."""
    with spinner("Starting sandbox…"):
        if session_id is not None:
            session = client.sessions.get(session_id)
        elif ephemeral:
            session = client.sessions.create(image=image)
        else:
            session = workspace_session(client, workspace or DEFAULT_WORKSPACE, image)
    try:
        code = _run_and_follow(session, command, cwd, env, _timeout_ms(timeout), shell_name,
                               stdin_from_tty)
    finally:
        if ephemeral:
            with contextlib.suppress(ChaserError):
                session.delete()
    raise SystemExit(code)


def _interactive(
    app: AppContext, agent: bool, workspace: str | None, session_id: str | None,
    ephemeral: bool, image: str | None, cwd: str | None, shell_name: Shell | None,
) -> int:
    from .terminal import Target, run_terminal

    client = app.client()
    with spinner("Starting sandbox…"):
        if session_id is not None:
            session = client.sessions.get(session_id)
        elif ephemeral:
            session = client.sessions.create(image=image)
        else:
            session = workspace_session(client, workspace or DEFAULT_WORKSPACE, image)
    target = Target(session.id, "agent" if agent else "human", shell=shell_name, cwd=cwd)
    outcome = None
    try:
        outcome = run_terminal(app, target)
    finally:
        if ephemeral and outcome is not None and outcome.kind != "exit":
            click.echo(f"chaser: the ephemeral session {session.id} is kept for the "
                       f"terminal; delete it with: chaser sessions delete {session.id}",
                       err=True)
        elif ephemeral:
            with contextlib.suppress(ChaserError):
                session.delete()
    return outcome.code


def _run_and_follow(
    session: SessionHandle, command: str, cwd: str | None, env: dict[str, str] | None,
    timeout_ms: int | None, shell_name: Shell | None, stdin_from_tty: bool = False,
) -> int:
    handle = session.exec(command, background=True, cwd=cwd, env=env,
                          timeout_ms=timeout_ms, shell=shell_name)
    forward_stdin(handle, from_tty=stdin_from_tty)
    try:
        exit_event = follow(handle, forward_interrupt=True)
    except KeyboardInterrupt:
        with contextlib.suppress(ChaserError):
            handle.kill("KILL")
        return EXIT_INTERRUPTED
    return exit_code_for(exit_event.status, exit_event.exit_code, exit_event.signal)


@click.command("exec", epilog="""\b
Examples:
  chaser exec "python3 -c 'print(42)'"          # the "default" workspace's session
  chaser exec --ephemeral "uname -a"            # a throw-away sandbox
  chaser exec -w my-project "npm test"
  chaser exec -w my-project --json "ls /workspace" | jq .output
  tar -cz . | chaser exec -w build "tar xz && make"
  chaser exec -s $SESSION --background "npm run dev"   # prints the command id

`chaser exec CMD` and `chaser shell -c CMD` agree: the same default target (the session
of the workspace named "default"), piped stdin forwarded as bytes (streamed, any
length), stdout to stdout and stderr to stderr as the command writes them, and the exit
code of the command (128+N if killed by signal N, 124 on --timeout). --json instead
prints the API's result object once the command ends (stdout and stderr interleaved in
`output`, as the server keeps them; piped stdin up to 2 MiB).""")
@click.argument("command", nargs=-1, required=True)
@with_target_options
@click.option("-i", "--stdin", "read_stdin", is_flag=True,
              help="Send local stdin even when it is a terminal (read to the end: Ctrl-D).")
@click.option("--background", is_flag=True,
              help="Start in the background and print the command id.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def exec_command(
    app: AppContext, command: tuple[str, ...], workspace: str | None,
    session_id: str | None, ephemeral: bool, image: str | None, cwd: str | None,
    env: tuple[str, ...], timeout: float | None, use_bash: bool, read_stdin: bool,
    background: bool, as_json: bool,
) -> None:
    """Run one command in a sandbox, as `chaser shell -c` does."""
    _one_target(workspace, session_id, ephemeral)
    text = " ".join(command)
    env_vars = parse_env(env)
    shell_name = _shell(use_bash)
    client = app.client()
    if background:
        if ephemeral:
            raise click.UsageError("--background needs a session that outlives the command "
                                   "(--session or --workspace), not --ephemeral")
        session = client.sessions.get(session_id) if session_id is not None \
            else workspace_session(client, workspace or DEFAULT_WORKSPACE, image)
        handle = session.exec(text, background=True, cwd=cwd, env=env_vars,
                              stdin=_read_stdin() if read_stdin else None,
                              timeout_ms=_timeout_ms(timeout), shell=shell_name)
        if as_json:
            print_json({"command_id": handle.id, "session_id": session.id, "pid": handle.pid})
        else:
            click.echo(handle.id)
            if sys.stderr.isatty():
                click.echo(f"follow it with: chaser commands logs -f {handle.id}", err=True)
        return
    if not as_json:
        _run_in_target(client, command=text, workspace=workspace, session_id=session_id,
                       ephemeral=ephemeral, image=image, cwd=cwd, env=env_vars,
                       timeout=timeout, shell_name=shell_name, stdin_from_tty=read_stdin)
    stdin = _read_stdin() if read_stdin or not _stdin_is_tty() else None
    with spinner("Running…"):
        if session_id is not None:
            result = client.sessions.get(session_id).exec(
                text, cwd=cwd, env=env_vars, stdin=stdin, timeout_ms=_timeout_ms(timeout),
                shell=shell_name)
        else:
            result = client.exec(
                text, workspace=None if ephemeral else workspace or DEFAULT_WORKSPACE,
                ephemeral=True if ephemeral else None,
                image=image, cwd=cwd, env=env_vars, timeout_ms=_timeout_ms(timeout),
                stdin=stdin, shell=shell_name)
    print_json(result)
    raise SystemExit(exit_code_for(result.status, result.exit_code, result.signal))


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return True
