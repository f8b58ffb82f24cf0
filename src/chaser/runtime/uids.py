"""Host uid ranges: every data dir on a host gets a block of uids no other one uses.

Sandboxes run as unprivileged host uids, and per-uid kernel limits (inotify instances,
RLIMIT_NPROC, file ownership) are shared by everything running as one uid. Two servers
on one host, or a data dir copied next to its original, must therefore never hand out
the same uid. Blocks are allocated under a host-wide lock and recorded twice: in the
host registry (which block belongs to which data dir) and in the data dir (so a restart
keeps its block and its workspaces keep their files' owner). A block is released when
its data dir is gone: the next allocation prunes it.

Inside a block, the lower half are workspace uids (base + workspace id, stable, since
files on disk carry them); the upper half are fresh uids for sandboxes without a
workspace. The first uid (base + 0: no workspace has id 0) owns the image cache's files
and runs its unpacker; no sandbox ever runs as it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGISTRY = Path("/var/lib/chaser-host/uid-ranges.json")
FIRST_BASE = 1_000_000_000  # far above login users and the usual /etc/subuid ranges
BLOCK = 1 << 20
MAX_BLOCKS = (4_294_967_294 - FIRST_BASE) // BLOCK
RANGE_FILE = "uid-range.json"


@dataclass(frozen=True)
class UidRange:
    """One data dir's block of host uids."""

    base: int
    size: int = BLOCK

    @property
    def ephemeral_span(self) -> int:
        return self.size // 2

    def workspace(self, workspace_id: int) -> int:
        if not 0 < workspace_id < self.size // 2:
            raise ValueError(f"workspace id {workspace_id} is outside the uid block")
        return self.base + workspace_id

    def ephemeral(self, n: int) -> int:
        return self.base + self.size // 2 + n % self.ephemeral_span

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.base <= uid < self.base + self.size


def registry_path() -> Path:
    """The host-wide registry (`CHASER_UID_REGISTRY` moves it, e.g. onto shared /var)."""
    return Path(os.environ.get("CHASER_UID_REGISTRY") or DEFAULT_REGISTRY)


def allocate(data_dir: Path, registry: Path | None = None) -> UidRange:
    """This data dir's uid block: the one it recorded, unless another live data dir holds
    it (a copy), in which case a new block is allocated and recorded."""
    registry = registry or registry_path()
    registry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _live_entries(_load(registry))
        mine = _load(data_dir / RANGE_FILE)
        instance, base = mine.get("instance"), mine.get("base")
        here = str(data_dir)
        # Every block but this data dir's own registration is taken, the original's
        # included when this data dir is a copy carrying the original's instance id.
        taken = {int(str(e["base"])) for i, e in entries.items()
                 if not (i == instance and e.get("data_dir") == here)}
        holder = entries.get(str(instance)) if instance else None
        if (not isinstance(base, int) or base in taken
                or (holder is not None and holder.get("data_dir") != here)):
            instance, base = secrets.token_hex(8), _free_base(taken)
        entries[str(instance)] = {"base": base, "data_dir": here}
        _store(registry, entries)
        _store(data_dir / RANGE_FILE, {"instance": instance, "base": base})
    return UidRange(base)


def _free_base(taken: set[int]) -> int:
    for k in range(MAX_BLOCKS):
        base = FIRST_BASE + k * BLOCK
        if base not in taken:
            return base
    raise RuntimeError("no free host uid block is left for another Chaser data dir")


def _live_entries(entries: dict[str, object]) -> dict[str, dict[str, object]]:
    """Entries whose data dir still records them; the rest are released."""
    live: dict[str, dict[str, object]] = {}
    for instance, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("base"), int):
            continue
        recorded = _load(Path(str(entry.get("data_dir"))) / RANGE_FILE)
        if recorded.get("instance") == instance:
            live[instance] = entry
    return live


def _load(path: Path) -> dict[str, object]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def _store(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def reown_tree(top: Path, old_uid: int, new_uid: int) -> int:
    """Give `new_uid` every file under `top` that `old_uid` owns (a workspace moving to
    this data dir's block). Never follows a symlink (fd-relative walk, chown of the
    link itself), and leaves files anyone else owns alone. Returns files changed."""
    changed = 0
    if not top.is_dir() or top.is_symlink():
        return 0
    if top.lstat().st_uid == old_uid:
        os.chown(top, new_uid, new_uid, follow_symlinks=False)
        changed += 1
    for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if st.st_uid == old_uid:
                    os.chown(name, new_uid, new_uid if st.st_gid == old_uid else st.st_gid,
                             dir_fd=dir_fd, follow_symlinks=False)
                    changed += 1
    return changed
