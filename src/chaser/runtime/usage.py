"""What a sandbox (or a group of them) uses now, as the kernel counts it.

Every figure comes from the kernel's own accounting, read on the host: the cgroup's
files (memory, CPU time, processes) and the workspace disk's filesystem counters. None
of it is asked of the sandbox, so a sandbox cannot make it lie beyond what it really
uses, and none of it can be made to hang by the sandbox:

- The cgroup files live under the server's own `chaser/<instance>/` directories, made
  by root, never delegated (nothing is chowned to a sandbox's uid) and not mounted in
  any sandbox (no /sys there; a sandbox has no capability to mount one, and would see
  root-owned files it cannot write anyway). A read is one `read(2)` of a kernfs file:
  the kernel formats it from counters in memory, bounded in size.
- A workspace disk is measured through a descriptor on its mount point (a host path
  the sandbox never sees), opened without following links and checked to be the disk's
  own filesystem before `fstatvfs`: counters in memory, no walk of the tenant's files.

Memory is the working set as `docker stats` and Kubernetes show it: the cgroup's
charge less its inactive file cache (which the kernel drops before it would kill
anything). A sandbox without a workspace keeps its files in tmpfs mounts, whose pages
are charged to its cgroup: their size is its `disk_bytes` (the cgroup's shmem), and
they count in its memory too, exactly as against its memory limit.

Blocking (a few small reads): call from a thread.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

MAX_READ = 64 * 1024  # memory.stat is about 1-3 KiB; nothing read here comes near this


@dataclass(frozen=True)
class ResourceUsage:
    """A sandbox's, or a group's, use at `sampled_at` (Unix time); None: not measured
    on this host (no such controller, or the sandbox ended as it was read)."""

    sampled_at: float
    cpu_usec: int | None = None  # CPU time of all its processes, ended ones too
    memory_bytes: int | None = None  # working set: charge less inactive file cache
    memory_peak_bytes: int | None = None  # the highest charge (page cache included)
    pids: int | None = None
    disk_bytes: int | None = None
    disk_limit_bytes: int | None = None


def read_file(path: Path) -> str | None:
    """One bounded read of a cgroup file (None when it is not there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, MAX_READ).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _get(where: dict[str, Path], name: str) -> str | None:
    """The file `name` (`memory.stat`) of the directory its controller's is."""
    d = where.get(name.split(".", 1)[0])
    return read_file(d / name) if d is not None else None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if value >= 0 else None


def _field(text: str | None, key: str) -> int | None:
    """The value of `key` in `key value` lines (memory.stat, cpu.stat): looked up, not
    parsed whole (memory.stat has dozens of lines, read for each sandbox listed)."""
    if not text:
        return None
    line = key + " "
    if text.startswith(line):
        at = 0
    else:
        at = text.find("\n" + line) + 1
        if at == 0:
            return None
    start = at + len(line)
    return _int(text[start:start + 24])


def cgroup_usage(where: dict[str, Path], version: str) -> ResourceUsage:
    """Memory, CPU time and processes of one cgroup (and everything below it); `where`
    maps each controller (memory, pids, cpu, cpuacct) to the cgroup's directory in it."""
    return _cgroup(where, version)[0]


def _cgroup(where: dict[str, Path], version: str) -> tuple[ResourceUsage, int | None]:
    """The cgroup's use, and the bytes of tmpfs (shmem) charged to it."""
    now = time.time()
    if version == "v2":
        cpu = _field(_get(where, "cpu.stat"), "usage_usec")
        charge = _int(_get(where, "memory.current"))
        peak = _int(_get(where, "memory.peak"))  # kernels from 5.19
        stat = _get(where, "memory.stat")
        inactive, shmem = _field(stat, "inactive_file") or 0, _field(stat, "shmem")
    elif version == "v1":
        ns = _int(_get(where, "cpuacct.usage"))
        cpu = ns // 1000 if ns is not None else None
        charge = _int(_get(where, "memory.usage_in_bytes"))
        peak = _int(_get(where, "memory.max_usage_in_bytes"))
        stat = _get(where, "memory.stat")
        # total_*: this cgroup and those below it (a group's sandboxes).
        inactive = _field(stat, "total_inactive_file") or 0
        shmem = _field(stat, "total_shmem")
    else:
        return ResourceUsage(now), None
    memory = max(0, charge - inactive) if charge is not None else None
    return ResourceUsage(now, cpu_usec=cpu, memory_bytes=memory, memory_peak_bytes=peak,
                         pids=_int(_get(where, "pids.current"))), shmem


def disk_figures(mountpoint: Path) -> tuple[int, int] | None:
    """(bytes used, bytes in all) of the filesystem mounted on `mountpoint`; None when
    nothing is mounted there now (checked on the descriptor measured, so an unmount in
    between cannot make the data dir's own filesystem be measured instead)."""
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_dev == os.stat(mountpoint.parent, follow_symlinks=False).st_dev:
            return None
        st = os.fstatvfs(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def sandbox_usage(where: dict[str, Path], version: str, workspace_dir: Path | None,
                  tmpfs_bytes: int | None) -> ResourceUsage:
    """One sandbox's use: its cgroup, and its disk (the workspace's, mounted on
    `workspace_dir`, or the tmpfs mounts of `tmpfs_bytes` each that hold its files)."""
    cg, shmem = _cgroup(where, version)
    if workspace_dir is None:
        return replace(cg, disk_bytes=shmem, disk_limit_bytes=tmpfs_bytes)
    used, size = disk_figures(workspace_dir) or (None, None)
    return replace(cg, disk_bytes=used, disk_limit_bytes=size)
