"""`chaser backup`: a consistent copy of a data dir, taken while the server runs.

The database is copied with SQLite's online backup API (a consistent snapshot even
while the server writes). Workspace disks are copied sparse, each one frozen
(`fsfreeze`) for the moment of its copy when it is mounted: its dirty pages are written
out first and writers wait, so the copy is exactly the disk at one instant.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

KEEP = ("admin.key", "uid-range.json")


@contextlib.contextmanager
def _frozen(mountpoint: Path) -> Iterator[None]:
    """Hold a mounted workspace disk still (flushed, writes waiting) while it is copied."""
    if not os.path.ismount(mountpoint):
        yield
        return
    froze = subprocess.run(["fsfreeze", "--freeze", str(mountpoint)],
                           capture_output=True).returncode == 0
    if not froze:  # at least what was written so far reaches the image
        subprocess.run(["sync", "-f", str(mountpoint)], capture_output=True)
    try:
        yield
    finally:
        if froze:
            subprocess.run(["fsfreeze", "--unfreeze", str(mountpoint)], capture_output=True)


def backup(data_dir: Path, dest: Path, with_logs: bool = False) -> list[str]:
    """Copy `data_dir` into `dest` (which must not exist); returns what was copied."""
    if not (data_dir / "chaser.db").is_file():
        raise FileNotFoundError(f"{data_dir} holds no Chaser database")
    dest.mkdir(mode=0o700, parents=True)
    copied = []
    src = sqlite3.connect(f"file:{data_dir / 'chaser.db'}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(dest / "chaser.db")
        with out:
            src.backup(out)
        out.close()
    finally:
        src.close()
    copied.append("chaser.db")
    for name in KEEP:
        if (data_dir / name).is_file():
            shutil.copy2(data_dir / name, dest / name)
            copied.append(name)
    workspaces = data_dir / "workspaces"
    if workspaces.is_dir():
        (dest / "workspaces").mkdir(mode=0o711)
        for entry in sorted(workspaces.iterdir()):
            if entry.suffix == ".img" or (entry.is_dir() and not (
                    workspaces / (entry.name + ".img")).exists()):
                with _frozen(workspaces / entry.name.removesuffix(".img")):
                    # cp keeps holes (sparse images stay small) and owners (-a)
                    subprocess.run(["cp", "-a", "--sparse=always", str(entry),
                                    str(dest / "workspaces" / entry.name)], check=True)
                copied.append(f"workspaces/{entry.name}")
    if with_logs and (data_dir / "logs").is_dir():
        subprocess.run(["cp", "-a", str(data_dir / "logs"), str(dest / "logs")], check=True)
        copied.append("logs")
    return copied
