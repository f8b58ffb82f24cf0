"""The data dir: its layout, its permissions and the lock that gives it to one server.

Two servers on one data dir would sweep each other's cgroups, kill each other's
sandboxes and share one SQLite file, so a server holds an exclusive lock on
`<data dir>/server.lock` (with its pid inside) for as long as it runs, and a second one
refuses to start. Every file the server creates is private: the umask is 077 before the
first file is made, and only the directories sandboxes must traverse are opened up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from chaser.config import Settings

LOCK_FILE = "server.lock"


class DataDirBusy(RuntimeError):
    """Another server holds the data dir."""


class DataDirLock:
    """An exclusive, process-lifetime lock on a data dir (released when the fd closes,
    so a crashed server never leaves a stale lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another Chaser server (pid {holder}) is using the data dir "
                f"{self.path.parent}; stop it, or give this one its own --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def private_umask() -> None:
    """Files and directories the server makes are its own (0600/0700) unless opened up."""
    os.umask(0o077)


def prepare_data_dir(settings: Settings) -> None:
    """Lay out the data dir. Sandboxes run as other uids and must be able to traverse to
    their own workspace, so directories on that path are 0711: enterable, not listable."""
    private_umask()
    for path, mode in ((settings.data_dir, 0o711), (settings.workspaces_dir, 0o711),
                       (settings.runtime_dir, 0o711), (settings.images_dir, 0o711),
                       (settings.logs_dir, 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
    for parent in settings.data_dir.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not enterable by other users (it needs o+x); sandboxes run "
                f"as unprivileged uids and must reach their workspace under {settings.data_dir}. "
                f"Run 'chmod o+x {parent}' or choose another --data-dir.")


def open_data_dir(settings: Settings) -> DataDirLock:
    """Take the data dir for this server, then lay it out (nothing is touched before the
    lock is held). Raises DataDirBusy, RuntimeError or OSError with one clear line."""
    private_umask()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    lock = DataDirLock(settings.data_dir).acquire()
    try:
        prepare_data_dir(settings)
    except BaseException:
        lock.release()
        raise
    return lock
