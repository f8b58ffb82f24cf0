"""Per-sandbox resource limits through cgroups, v2 or v1 (hybrid hosts included).

Each sandbox gets one cgroup (v2) or one cgroup per controller (v1), named after the
sandbox, under `chaser/<instance>/[<group>/]`. The sandbox's first process joins it
before it execs bubblewrap, so every process of the sandbox is born inside its limits.

Limits are hierarchical, so the kernel holds them for sets of sandboxes too: the
instance directory caps all of this server's sandboxes together (processes, memory:
what the host keeps for itself), and a group directory caps a set of sandboxes that
share limits (the core puts each tenant's sandboxes in one group).

Cgroups are made ahead: a few per recent shape (limits and group) wait, limits written,
under a stock name, and a launch renames one to its sandbox's name (a rename is a few
microseconds; making one is a thread hop and a dozen writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chaser.runtime.usage import ResourceUsage, cgroup_usage, sandbox_usage

log = logging.getLogger("chaser.runtime")

CONTROLLERS = ("memory", "pids", "cpu")
# v1 only: CPU time is counted by cpuacct, a hierarchy of its own on some hosts (on v2
# every cgroup's cpu.stat has it). Joined for accounting; it limits nothing.
ACCOUNTING = ("cpuacct",)
CFS_PERIOD_US = 100_000
# CPU weights: the default, and the lowest (warm sandboxes, while they wait to be used).
DEFAULT_SHARES, LOW_SHARES = 1024, 2  # v1 cpu.shares
DEFAULT_WEIGHT, LOW_WEIGHT = 100, 1  # v2 cpu.weight
STOCK_PER_SHAPE = 2  # cgroups made ahead for each recent shape
STOCK_SHAPES = 4  # shapes kept in stock; the least recently used gives way
STOCK_PREFIX = "stock_"


@dataclass(frozen=True)
class ResourceLimits:
    """Limits for one sandbox; None leaves that resource unlimited."""

    memory_bytes: int | None = None
    pids: int | None = None
    cpus: float | None = None


Shape = tuple[ResourceLimits, str | None, ResourceLimits | None]  # limits, group, its limits


@dataclass
class Cgroup:
    """One sandbox's cgroup directories (one per v1 controller, or a single v2 one)."""

    dirs: list[Path]
    version: str
    gc: ThreadPoolExecutor | None = None  # where removals run (see CgroupManager)
    # The controllers each of `dirs` is the cgroup of (v1: one hierarchy each, or a few
    # mounted together), for reading its counters without trying every directory.
    controllers: list[tuple[str, ...]] = field(default_factory=list)

    def rename(self, name: str) -> None:
        """Give the cgroup a new name under the same parent (in every hierarchy)."""
        renamed = []
        try:
            for d in self.dirs:
                new = d.with_name(name)
                os.rename(d, new)
                renamed.append(new)
        except OSError:
            for new, old in zip(renamed, self.dirs):
                with contextlib.suppress(OSError):
                    os.rename(new, old)
            raise
        self.dirs = renamed

    def set_cpu_weight(self, low: bool) -> None:
        """The lowest CPU weight (`low`), or the default one. The CPU is shared between
        cgroups by weight, so this, not a nice value, is what makes a sandbox yield."""
        for d in self.dirs:
            for name, value in (("cpu.shares", LOW_SHARES if low else DEFAULT_SHARES),
                                ("cpu.weight", LOW_WEIGHT if low else DEFAULT_WEIGHT)):
                if (d / name).exists():  # v1: only the cpu controller's directory has it
                    (d / name).write_text(str(value))

    def remove_later(self) -> Future[None]:
        """Remove it off the event loop, on the cleanup threads: a v1 removal can wait
        half a second for exiting processes, and must never hold up request work."""
        if self.gc is None:
            self.gc = ThreadPoolExecutor(max_workers=1)
        return self.gc.submit(self.remove)

    def kill_later(self) -> Future[None]:
        if self.gc is None:
            self.gc = ThreadPoolExecutor(max_workers=1)
        return self.gc.submit(self.kill_all)

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def usage(self, workspace_dir: Path | None = None,
              tmpfs_bytes: int | None = None) -> ResourceUsage:
        """The sandbox's use now (blocking: a few small reads); see `usage.sandbox_usage`."""
        where = {c: d for d, cs in zip(self.dirs, self.controllers) for c in cs}
        return sandbox_usage(where, self.version, workspace_dir, tmpfs_bytes)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(x) for x in f.read_text().split())
        return sorted(found)

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (what `cgroup.kill` does on v2)."""
        if self.version == "v2":
            kill_file = self.dirs[0] / "cgroup.kill"
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
                return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        """Kill what is left and delete the directories (a cgroup must be empty to go)."""
        self.kill_all()
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)


@dataclass
class CgroupManager:
    """Finds the host's cgroup layout once and makes cgroups under it."""

    version: str = "none"  # "v2", "v1" or "none"
    roots: dict[str, Path] = field(default_factory=dict)  # controller -> chaser parent dir
    enforced: tuple[str, ...] = ()
    _groups: dict[str, ResourceLimits] = field(default_factory=dict)  # limits written
    # Cgroups made ahead, by shape (limits, group, group limits); most recent shape last.
    _stock: OrderedDict[Shape, list[Cgroup]] = field(default_factory=OrderedDict)
    _stock_lock: threading.Lock = field(default_factory=threading.Lock)
    _restocking: set[Shape] = field(default_factory=set)
    _closed: bool = False
    # Removals wait on exiting processes: threads of their own, apart from the default
    # executor that request paths use.
    gc: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=4, thread_name_prefix="chaser-cgroup-gc"))

    @classmethod
    def detect(cls, instance: str, mounts: dict[str, Path] | None = None) -> CgroupManager:
        """Prefer v2 when it carries the controllers; fall back to v1 controllers.

        Cgroups live under `chaser/<instance>/`, one instance per data dir, so servers
        sharing a host never sweep each other's sandboxes.
        """
        parent_name = f"chaser/{instance}"
        mounts = _cgroup_mounts() if mounts is None else mounts
        v2 = mounts.get("cgroup2")
        if v2:
            available = set((v2 / "cgroup.controllers").read_text().split()) if (
                v2 / "cgroup.controllers").exists() else set()
            wanted = [c for c in CONTROLLERS if c in available]
            if wanted:
                parent = v2 / parent_name
                try:
                    _enable_v2(v2, wanted)
                    parent.parent.mkdir(exist_ok=True)
                    _enable_v2(parent.parent, wanted)
                    parent.mkdir(exist_ok=True)
                    _enable_v2(parent, wanted)
                    return cls("v2", {c: parent for c in wanted}, tuple(wanted))
                except OSError as e:
                    log.warning("cgroup v2 at %s unusable: %s", v2, e)
        roots: dict[str, Path] = {}
        for ctrl in CONTROLLERS + ACCOUNTING:
            mount = mounts.get(ctrl)
            if mount is None:
                continue
            parent = mount / parent_name
            try:
                parent.mkdir(parents=True, exist_ok=True)
                roots[ctrl] = parent
            except OSError as e:
                log.warning("cgroup v1 %s at %s unusable: %s", ctrl, mount, e)
        if any(c in roots for c in CONTROLLERS):
            return cls("v1", roots, tuple(c for c in roots if c in CONTROLLERS))
        return cls()

    def describe(self) -> dict[str, object]:
        return {"cgroup": self.version, **{c: c in self.enforced for c in CONTROLLERS}}

    def usage(self, group: str | None = None) -> ResourceUsage:
        """What a group's sandboxes use together, or (None) every sandbox of this
        instance: one cgroup's hierarchical counters, whatever the number of sandboxes."""
        if group is not None and (not group or "/" in group or group.startswith(".")):
            raise ValueError(f"not a group name: {group!r}")
        if group is not None and group not in self._groups:
            return ResourceUsage(time.time(), 0, 0, 0, 0)  # no sandbox of it yet
        return cgroup_usage({c: root / group if group else root
                             for c, root in self._accounted().items()}, self.version)

    def _accounted(self) -> dict[str, Path]:
        """Controller -> its directory for this instance (v2: all in one; its cpu.stat
        counts CPU time whether the cpu controller is enabled or not)."""
        if self.version == "v2":
            root = next(iter(self.roots.values()))
            return {c: root for c in (*CONTROLLERS, *ACCOUNTING)}
        return dict(self.roots)

    def limit_all(self, limits: ResourceLimits) -> None:
        """Cap every sandbox of this instance together (written on the instance dir)."""
        if self.version != "none":
            self._apply("", limits)

    def create(self, name: str, limits: ResourceLimits, group: str | None = None,
               group_limits: ResourceLimits | None = None) -> Cgroup | None:
        """Make the sandbox's cgroup (in `group`, made and capped by `group_limits` when
        given) and write its limits; None when cgroups are unusable."""
        if self.version == "none":
            return None
        rel = name
        if group is not None:
            self._group(group, group_limits or ResourceLimits())
            rel = f"{group}/{name}"
        dirs: list[Path] = []
        served: dict[Path, list[str]] = {}
        for ctrl, path in self._accounted().items():
            served.setdefault(path, []).append(ctrl)
        for path in served:
            d = path / rel
            d.mkdir(exist_ok=True)
            dirs.append(d)
        cg = Cgroup(dirs, self.version, self.gc, [tuple(cs) for cs in served.values()])
        try:
            self._apply(rel, limits)
        except OSError:
            cg.remove()
            raise
        return cg

    def take(self, name: str, limits: ResourceLimits, group: str | None = None,
             group_limits: ResourceLimits | None = None) -> Cgroup | None:
        """A cgroup made ahead for this shape, renamed to `name`; None when there is none
        in stock (then `create` it). Cheap enough for the event loop. Restocks behind."""
        if self.version == "none":
            return None
        shape = (limits, group, group_limits)
        with self._stock_lock:
            stock = self._stock.get(shape)
            cg = stock.pop() if stock else None
        self.restock_later(shape)
        if cg is None:
            return None
        try:
            cg.rename(name)
        except OSError:
            cg.remove_later()
            return None
        return cg

    def restock_later(self, shape: Shape) -> None:
        """Fill the stock of `shape` on the cleanup threads (behind any removal)."""
        with self._stock_lock:
            if shape in self._restocking or self._closed:
                return
            self._restocking.add(shape)
        self.gc.submit(self._restock, shape)

    def _restock(self, shape: Shape) -> None:
        limits, group, group_limits = shape
        try:
            while True:
                with self._stock_lock:
                    stock = self._stock.setdefault(shape, [])
                    self._stock.move_to_end(shape)
                    evicted = []
                    while len(self._stock) > STOCK_SHAPES:
                        evicted.extend(self._stock.popitem(last=False)[1])
                    full = len(stock) >= STOCK_PER_SHAPE or self._closed
                for old in evicted:
                    old.remove()
                if full:
                    return
                try:
                    cg = self.create(STOCK_PREFIX + secrets.token_hex(6), limits, group,
                                     group_limits)
                except OSError as e:
                    log.warning("cannot make a cgroup ahead: %s", e)
                    return
                if cg is None:
                    return
                with self._stock_lock:
                    if not self._closed:
                        self._stock.setdefault(shape, []).append(cg)
                        continue
                cg.remove()  # made while the server closed
                return
        finally:
            with self._stock_lock:
                self._restocking.discard(shape)

    def close(self) -> None:
        """Remove every cgroup of this instance, the instance's own directories too (the
        server is closing, its sandboxes are gone): a host that runs servers by the
        thousand, as a test suite does, must not keep their cgroups."""
        with self._stock_lock:
            self._closed = True
            self._stock.clear()
        deadline = time.monotonic() + 10
        while self._restocking and time.monotonic() < deadline:  # none starts now
            time.sleep(0.01)
        self.sweep()
        for root in dict.fromkeys(self.roots.values()):
            with contextlib.suppress(OSError):
                root.rmdir()

    def _group(self, group: str, limits: ResourceLimits) -> None:
        """Make a group's directories once, and (re)write its limits when they change."""
        if self._groups.get(group) == limits:
            return
        for path in dict.fromkeys(self.roots.values()):
            d = path / group
            d.mkdir(exist_ok=True)
            if self.version == "v2":
                _enable_v2(d, list(self.enforced))
        self._apply(group, limits)
        self._groups[group] = limits

    def _apply(self, name: str, limits: ResourceLimits) -> None:
        def put(ctrl: str, filename: str, value: str) -> None:
            root = self.roots.get(ctrl)
            if root is not None:
                (root / name / filename).write_text(value)

        if self.version == "v2":
            if limits.memory_bytes:
                put("memory", "memory.max", str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    put("memory", "memory.swap.max", "0")
            if limits.pids:
                put("pids", "pids.max", str(limits.pids))
            if limits.cpus:
                put("cpu", "cpu.max", f"{int(limits.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")
        else:
            if limits.memory_bytes:
                put("memory", "memory.limit_in_bytes", str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    put("memory", "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            if limits.pids:
                put("pids", "pids.max", str(limits.pids))
            if limits.cpus:
                put("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US))
                put("cpu", "cpu.cfs_quota_us", str(int(limits.cpus * CFS_PERIOD_US)))

    def sweep(self) -> int:
        """Remove cgroups an earlier run of this instance left (their processes are
        killed): sandboxes, and groups once their sandboxes are gone."""
        removed = 0
        for root in dict.fromkeys(self.roots.values()):
            for d in _subdirs(root):
                for sub in _subdirs(d):
                    Cgroup([sub], self.version).remove()
                    removed += 1
                Cgroup([d], self.version).remove()
                removed += 1
        return removed


def _subdirs(path: Path) -> list[Path]:
    """The directories in `path` (none once it is gone: removals on the cleanup threads
    may race a sweep)."""
    try:
        return [d for d in path.iterdir() if d.is_dir()]
    except FileNotFoundError:
        return []


def _cgroup_mounts() -> dict[str, Path]:
    """Map 'cgroup2' and each v1 controller name to its mount point."""
    found: dict[str, Path] = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            mnt, fstype, opts = Path(parts[1]), parts[2], parts[3].split(",")
            if fstype == "cgroup2":
                found.setdefault("cgroup2", mnt)
            elif fstype == "cgroup":
                for ctrl in CONTROLLERS + ACCOUNTING:
                    if ctrl in opts:
                        found.setdefault(ctrl, mnt)
    return found


def _enable_v2(path: Path, controllers: list[str]) -> None:
    current = set((path / "cgroup.subtree_control").read_text().split())
    missing = [c for c in controllers if c not in current]
    if missing:
        (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
