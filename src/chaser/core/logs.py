"""Kept output, bounded: per command (OutputLog), per session, per tenant and in total.

Every few seconds the janitor measures the logs on disk and, while a session, a tenant
or the whole server keeps more than it may, drops the logs of the oldest *ended*
commands first. A dropped log keeps its size (one empty segment at its end offset), so
offsets keep their meaning and `output_start == output_size` says the output is gone.
Running commands' logs go only when dropping every ended one was not enough: then the
running logs of the tenant over its bound (or of everyone, when the server is) keep
nothing of what they printed so far (what they print next is kept).
Logs of sessions that ended more than the retention ago are removed whole (service.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaser.config import Settings
from chaser.core.output import OutputLog
from chaser.store.base import Store

log = logging.getLogger("chaser.core")

JANITOR_EVERY_S = 5.0
EPHEMERAL_DIR = "_ephemeral"


@dataclass(frozen=True)
class KeptLog:
    """One command's log on disk."""

    session: str
    command: str
    bytes: int
    mtime: float


def scan(logs_dir: Path) -> list[KeptLog]:
    """Every command log under `logs_dir` with its size (blocking: call from a thread)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for session in os.scandir(logs_dir):
            # One-shot runs' logs live only while they run (deleted right after), each
            # bounded per command; they belong to no session and are never dropped here.
            if not session.is_dir(follow_symlinks=False) or session.name == EPHEMERAL_DIR:
                continue
            with contextlib.suppress(FileNotFoundError):
                for command in os.scandir(session.path):
                    size, mtime = 0, 0.0
                    with contextlib.suppress(FileNotFoundError):
                        for f in os.scandir(command.path):
                            st = f.stat(follow_symlinks=False)
                            size += st.st_size
                            mtime = max(mtime, st.st_mtime)
                    found.append(KeptLog(session.name, command.name, size, mtime))
    return found


def drop(directory: Path) -> None:
    """Remove a finished command's output but keep its size: one empty segment named at
    the end offset (what `OutputLog.load` reads as start == size)."""
    end = 0
    with contextlib.suppress(FileNotFoundError):
        for f in directory.glob("*.out"):
            end = max(end, int(f.stem) + f.stat().st_size)
        for f in directory.iterdir():
            f.unlink(missing_ok=True)
        (directory / f"{end:020d}.out").touch()
        (directory / f"{end:020d}.idx").touch()


def _drop_all(directories: list[Path]) -> None:
    for directory in directories:
        drop(directory)


def purge_session(logs_dir: Path, session_id: str) -> None:
    """Drop every log of a session at once (`DELETE /v1/sessions/{id}?purge=true`)."""
    with contextlib.suppress(FileNotFoundError):
        for command in (logs_dir / session_id).iterdir():
            drop(command)


class LogJanitor:
    """Holds kept output to the session, tenant and server bounds."""

    def __init__(self, settings: Settings, store: Store,
                 running: Callable[[], dict[str, tuple[str, OutputLog]]]) -> None:
        self.settings = settings
        self.store = store
        self.running = running  # command id -> (tenant, its live log)
        self.dropped_bytes = 0
        self.kept_bytes = 0  # sessions' output on disk at the last pass (for /metrics)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_EVERY_S)
            try:
                await self.enforce()
            except Exception:  # noqa: BLE001 - keep bounding next time; say why
                log.exception("output log janitor failed")

    async def enforce(self) -> int:
        """One pass; returns the bytes dropped."""
        logs = await asyncio.to_thread(scan, self.settings.logs_dir)
        tenants = await self.store.session_tenants(sorted({k.session for k in logs}))
        s = self.settings
        per_session: Counter[str] = Counter()
        per_tenant: Counter[str] = Counter()
        total = 0
        for k in logs:
            per_session[k.session] += k.bytes
            per_tenant[tenants.get(k.session, "")] += k.bytes
            total += k.bytes
        self.kept_bytes = total
        victims = []
        running = self.running()
        for k in sorted(logs, key=lambda k: k.mtime):  # oldest first
            tenant = tenants.get(k.session, "")
            over = (per_session[k.session] > s.max_session_log_bytes
                    or per_tenant[tenant] > s.max_tenant_log_bytes
                    or total > s.max_total_log_bytes)
            if not over:
                continue
            if k.command in running or k.bytes == 0:
                continue
            victims.append(k)
            per_session[k.session] -= k.bytes
            per_tenant[tenant] -= k.bytes
            total -= k.bytes
        if victims:
            await asyncio.to_thread(_drop_all, [s.logs_dir / k.session / k.command
                                                for k in victims])
            freed = sum(k.bytes for k in victims)
            self.dropped_bytes += freed
            log.info("dropped the output of %d ended commands (%d bytes) to stay within "
                     "the log bounds", len(victims), freed)
        else:
            freed = 0
        # Still over with only running logs left: those of whoever is over drop what they
        # kept so far (each is bounded per command, but many add up).
        for cid, (tenant, output) in running.items():
            if per_tenant[tenant] > s.max_tenant_log_bytes or total > s.max_total_log_bytes:
                shrunk = output.shrink()
                per_tenant[tenant] -= shrunk
                total -= shrunk
                freed += shrunk
        return freed
