"""`chaser cp SRC DST`: files and directories between this machine and a sandbox, as
`docker cp CONTAINER:PATH` does (either side `WORKSPACE:PATH` or `SESSION_ID:PATH`)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from chaser.client import Client, Files

from ._app import AppContext, fail, pass_app

_REMOTE = re.compile(r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63}):(.*)$")
BAR_FROM_BYTES = 1024 * 1024  # smaller transfers finish before a bar would help


@dataclass(frozen=True)
class Remote:
    """`NAME:PATH`: a session (ids start `ses_`) or a workspace, and a path in it."""

    name: str
    path: str

    def files(self, client: Client) -> Files:
        if self.name.startswith("ses_"):
            return client.sessions.get(self.name).files
        return client.workspaces.files(self.name)


def parse(arg: str) -> Remote | Path:
    """A remote `NAME:PATH`, or a local path (write `./a:b` for a local name with ':')."""
    m = _REMOTE.match(arg)
    if m and not arg.startswith(("/", ".")):
        return Remote(m[1], m[2] or "/workspace")
    return Path(arg)


@contextlib.contextmanager
def progress_bar(total: int | None, what: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for a large transfer when stderr is a terminal."""
    if not sys.stderr.isatty() or (total is not None and total < BAR_FROM_BYTES):
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TransferSpeedColumn,
                               TimeRemainingColumn)

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@click.command("cp", epilog="""\b
Examples:
  chaser cp ./project my-ws:/workspace/project     # a directory into a workspace
  chaser cp my-ws:out/report.pdf .                 # a file out (relative to /workspace)
  chaser cp data.csv ses_123:/tmp/                 # into a running session
  chaser cp ses_123:/workspace/build ./build       # a directory out

As `docker cp`: NAME:PATH is a sandbox path (NAME a workspace, or a session id
starting ses_); anything else is local (write ./a:b for a local name holding ':').
Copying a directory onto an existing directory puts it inside; otherwise it takes
the destination's name. Files stream both ways (any size); directories move as one
tar stream. A progress bar shows on a terminal for large transfers.""")
@click.argument("src")
@click.argument("dst")
@pass_app
def cp(app: AppContext, src: str, dst: str) -> None:
    """Copy files or directories between this machine and a sandbox."""
    source, dest = parse(src), parse(dst)
    if isinstance(source, Remote) == isinstance(dest, Remote):
        raise click.UsageError("one of SRC and DST must be NAME:PATH (a sandbox) and the "
                               "other a local path")
    client = app.client()
    if isinstance(source, Remote):
        assert isinstance(dest, Path)
        _download(source.files(client), source.path, dest)
    else:
        assert isinstance(dest, Remote)
        _upload(source, dest.files(client), dest.path)


def _download(files: Files, path: str, dest: Path) -> None:
    info = files.stat(path)
    if info is None:
        fail(f"{path}: no such file or directory in the sandbox")
    name = posixpath.basename(posixpath.normpath(path)) or "root"
    target = dest / name if dest.is_dir() else dest
    if info.type == "directory":
        with progress_bar(None, f"↓ {name}/") as bar:
            files.download_dir(path, target, progress=bar)
        return
    if not target.parent.is_dir():
        fail(f"{target.parent}: no such local directory")
    with progress_bar(info.size, f"↓ {name}") as bar:
        files.download(path, target, progress=bar)


def _upload(source: Path, files: Files, path: str) -> None:
    if not source.exists():
        fail(f"{source}: no such local file or directory")
    info = files.stat(path)
    into = path.endswith("/") or (info is not None and info.type == "directory")
    target = posixpath.join(path, source.resolve().name) if into else path
    if source.is_dir():
        total = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
        with progress_bar(total, f"↑ {source.name}/") as bar:
            files.upload_dir(source, target, progress=bar)
        return
    with progress_bar(os.stat(source).st_size, f"↑ {source.name}") as bar:
        files.upload(source, target, progress=bar)
