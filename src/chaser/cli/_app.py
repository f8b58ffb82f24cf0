"""What every CLI command shares: the client, error handling and output formatting."""

from __future__ import annotations

import contextlib
import json
import os
import signal as signal_mod
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import click
from pydantic import BaseModel

from chaser.client import ChaserError, Client

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TIMED_OUT = 124  # as timeout(1) does


class AppContext:
    """Global options, and the one SDK client built from them on first use."""

    def __init__(self, api_url: str | None, api_key: str | None, config: str | None) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.config = config
        self._client: Client | None = None

    def client(self, *, timeout: float = 60.0) -> Client:
        if self._client is None:
            self._client = Client(self.api_url, self.api_key, config_file=self.config,
                                  timeout=timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one error line on stderr and exit."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


class ChaserGroup(click.Group):
    """A click group that turns every failure into one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChaserError as e:
            fail(str(e))
        except KeyboardInterrupt:
            click.echo("", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _silence_stdout()
            raise SystemExit(EXIT_ERROR) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as e:  # a bug in the CLI: say so in one line, unless debugging
            if os.environ.get("CHASER_DEBUG"):
                raise
            fail(f"unexpected {type(e).__name__}: {e} (set CHASER_DEBUG=1 for a traceback)")


def _silence_stdout() -> None:
    # Python flushes stdout at exit; after EPIPE that flush would print a second error.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# ---- output -------------------------------------------------------------------------


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def print_json(value: Any) -> None:
    """Print a model, a list of models or plain data as indented JSON."""
    click.echo(json.dumps(_plain(value), indent=2))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal; aligned plain columns when piped."""
    cells = [[_cell(v) for v in row] for row in rows]
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in columns:
            table.add_column(name.upper(), overflow="fold")
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    for row in [[c.upper() for c in columns], *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """`name: value` lines for a getter's human output."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key + ':':<{width + 1}} {_cell(value)}")


@contextlib.contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner on stderr while waiting, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


def short(text: str, width: int = 50) -> str:
    line = text.replace("\n", " ")
    return line if len(line) <= width else line[: width - 1] + "…"


# ---- option parsing and exit codes --------------------------------------------------


def parse_env(pairs: Sequence[str]) -> dict[str, str] | None:
    """`-e K=V` (or `-e K` to pass the local value of K) into a dict."""
    env: dict[str, str] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                raise click.BadParameter(f"{name} is not set locally; use {name}=VALUE",
                                         param_hint="'-e'")
            value = os.environ[name]
        if not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'-e'")
        env[name] = value
    return env or None


def exit_code_for(status: str, exit_code: int | None, signal: str | None) -> int:
    """A finished command's status as a local exit code (128+N for signal N)."""
    if status == "timed_out":
        return EXIT_TIMED_OUT
    if status == "killed" or (exit_code is None and signal):
        return 128 + signal_number(signal)
    if exit_code is None:
        return EXIT_ERROR
    return exit_code & 0xFF


def signal_number(name: str | None) -> int:
    if not name:
        return signal_mod.SIGKILL
    if name.isdigit():
        return int(name)
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        return signal_mod.SIGKILL
