"""`chaser images ...`: pull, list, inspect, remove, prune and import images."""

from __future__ import annotations

import contextlib
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from chaser.models import Image

from ._app import AppContext, pass_app, print_fields, print_json, print_table, spinner

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _mb(n: int) -> float:
    return round(n / 1e6, 1)


@click.group(epilog="""\b
Examples:
  chaser images pull node:20-bookworm
  chaser images ls
  chaser images rm node:20-bookworm
  chaser images prune --older-than 7d
  chaser images import ./app.tar --name registry.local/app:1""")
def images() -> None:
    """Manage the server's image cache (shared by every tenant)."""


class _Bars:
    """A rich progress bar per layer on stderr (a terminal), or one line per phase."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tty = sys.stderr.isatty()
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(), transient=False,
                                     console=_stderr_console())
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "resolved":
            self._say(f"{self.name}: {data['digest']}, {len(data['layers'])} layers, "
                      f"{_mb(data['size'])} MB")
            for layer in data["layers"]:
                if self.progress is not None:
                    self.tasks[layer["digest"]] = self.progress.add_task(
                        layer["digest"][7:19], total=layer["size"])
        elif event == "progress" and self.progress is not None:
            task = self.tasks.get(data["layer"])
            if task is not None:
                self.progress.update(task, completed=data["received"])
        elif event == "unpacking":
            self._say(f"{self.name}: unpacking")

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            click.echo(text, err=True)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@images.command("pull", epilog="""\b
Examples:
  chaser images pull python:3.12-slim
  chaser images pull ghcr.io/org/app:1.4 --json""")
@click.argument("name")
@json_option
@pass_app
def pull(app: AppContext, name: str, as_json: bool) -> None:
    """Pull an image into the cache (a tag is looked up anew), with a bar per layer."""
    with _Bars(name) as bars:
        image = app.client(timeout=3600).images.pull(name, progress=bars)
    if as_json:
        print_json(image)
    else:
        click.echo(f"{image.reference or name}: {image.digest} ({_mb(image.size)} MB)")


@images.command("ls", epilog="""\b
Example:
  chaser images ls --json | jq -r '.images[].reference'""")
@json_option
@pass_app
def ls(app: AppContext, as_json: bool) -> None:
    """List cached images, most recently used first, and the cache's size."""
    listing = app.client().images.list()
    if as_json:
        print_json(listing)
        return
    print_table(["reference", "digest", "size (MB)", "last used", "in use"],
                [[i.reference, i.digest[7:19], _mb(i.size), i.last_used_at, i.in_use]
                 for i in listing.images])
    click.echo(f"cache: {_mb(listing.cache_bytes)} MB of {_mb(listing.cache_limit_bytes)} MB",
               err=True)


@images.command("inspect", epilog="""\b
Examples:
  chaser images inspect node:20-bookworm
  chaser images inspect sha256:0123... --json""")
@click.argument("name")
@json_option
@pass_app
def inspect(app: AppContext, name: str, as_json: bool) -> None:
    """Show one cached image: references, digest, size and config."""
    image = app.client().images.get(name)
    if as_json:
        print_json(image)
        return
    _show(image)


def _show(image: Image) -> None:
    print_fields([("reference", image.reference), ("references", ", ".join(image.references)),
                  ("digest", image.digest), ("size (MB)", _mb(image.size)),
                  ("layers", image.layers), ("pulled", image.pulled_at),
                  ("last used", image.last_used_at), ("in use", image.in_use),
                  ("working dir", image.config.working_dir), ("user", image.config.user),
                  ("env", " ".join(f"{k}={v}" for k, v in image.config.env.items()))])


@images.command("rm", epilog="""\b
Example:
  chaser images rm node:20-bookworm sha256:0123...""")
@click.argument("names", nargs=-1, required=True)
@json_option
@pass_app
def rm(app: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Untag references or delete images by digest (admin keys; not while in use)."""
    client = app.client()
    removed = [client.images.delete(name) for name in names]
    if as_json:
        print_json(removed)
        return
    for name, image in zip(names, removed, strict=True):
        click.echo(f"{name}: deleted ({image.digest[7:19]})")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    unit = text[-1:] if text[-1:] in _UNITS else "s"
    number = text[:-1] if text[-1:] in _UNITS else text
    if not number.isdigit():
        raise click.BadParameter(f"{text!r}: expected a number with s, m, h, d or w (e.g. 7d)")
    return int(number) * _UNITS[unit]


@images.command("prune", epilog="""\b
Examples:
  chaser images prune                      # untagged images
  chaser images prune --all                # every image no sandbox runs on
  chaser images prune --older-than 7d --max-size 20000""")
@click.option("--all", "everything", is_flag=True, help="Every unused image.")
@click.option("--older-than", metavar="AGE", help="Unused images not used for AGE (30m, 7d).")
@click.option("--max-size", type=click.IntRange(0), metavar="MB",
              help="Then the least recently used until the cache fits MB.")
@json_option
@pass_app
def prune(app: AppContext, everything: bool, older_than: str | None, max_size: int | None,
          as_json: bool) -> None:
    """Delete unused images (admin keys)."""
    result = app.client().images.prune(all=everything, older_than_s=_seconds(older_than),
                                       max_total_mb=max_size)
    if as_json:
        print_json(result)
        return
    for image in result.deleted:
        click.echo(f"deleted {image.reference or image.digest}")
    click.echo(f"{_mb(result.freed_bytes)} MB freed; cache {_mb(result.cache_bytes)} MB")


@images.command("import", epilog="""\b
Examples:
  docker save app:1 -o app.tar && chaser images import app.tar
  chaser images import oci-archive.tar --name registry.local/app:2""")
@click.argument("file", type=click.Path(exists=True))
@click.option("--name", metavar="REF", help="Tag it so (default: the archive's own tag).")
@json_option
@pass_app
def import_(app: AppContext, file: str, name: str | None, as_json: bool) -> None:
    """Load an image from a `docker save` tarball, an OCI archive, or an OCI layout
    directory (sent as an archive): no registry needed (admin keys)."""
    with spinner(f"importing {file}"), _as_archive(Path(file)) as archive:
        image = app.client(timeout=3600).images.import_archive(archive, name=name)
    if as_json:
        print_json(image)
    else:
        click.echo(f"{image.reference or image.digest}: {image.digest} ({_mb(image.size)} MB)")


@contextlib.contextmanager
def _as_archive(path: Path) -> Iterator[Path]:
    """An OCI layout directory as an OCI archive (a tar of it); a file as it is."""
    if not path.is_dir():
        yield path
        return
    if not (path / "oci-layout").is_file():
        raise click.BadParameter(f"{path} is a directory but not an OCI layout (no oci-layout)")
    with tempfile.TemporaryDirectory(prefix="chaser-import-") as tmp:
        archive = Path(tmp) / "layout.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(path.iterdir()):
                tar.add(entry, arcname=entry.name)
        yield archive
