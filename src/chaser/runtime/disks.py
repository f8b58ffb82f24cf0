"""Workspace disks: each workspace's files live in an ext4 image of its own.

Why an image per workspace: a quota must be held by the kernel (a sandbox that reaches
it gets ENOSPC, and the host's filesystem never notices), must cover blocks and inodes,
and must work on any host. ext4/xfs project quotas need the data dir's filesystem
mounted with `prjquota`, which a service cannot count on; a loop-mounted image of
`disk_mb` works anywhere with loop devices. The image is sparse (it takes only what is
written), made with `mkfs.ext4` in milliseconds, and its root belongs to the workspace's
uid. It grows when a session asks for more while no sandbox uses it (offline: online
ext4 resizing is refused on some kernels, this one among them); it never shrinks. Deleting a
workspace unmounts and removes the image: no file of the tenant's is ever touched by
root on a host path. A bonus: a sandbox's mountinfo shows the image's own paths, not
the data dir's.

Layout: `workspaces/<id>.img` mounted on `workspaces/<id>/`, holding `files`, `home`
and `tmp` (bound as /workspace, /home/user and /tmp).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger("chaser.runtime")

SUBDIRS = (("files", 0o755), ("home", 0o755), ("tmp", 0o1777))
MIB = 1024 * 1024


class DiskError(OSError):
    """A workspace's disk could not be made, grown or mounted."""


class DiskBusy(DiskError):
    """The disk must grow but a running sandbox still uses it."""


def image_of(workspace_dir: Path) -> Path:
    return workspace_dir.with_name(workspace_dir.name + ".img")


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
    if p.returncode not in ok:
        raise DiskError(f"{argv[0]} failed: {(p.stderr or p.stdout).strip()[:300]}")


def ensure(workspace_dir: Path, uid: int, size_mb: int | None, default_mb: int,
           in_use: bool = False) -> None:
    """Make (or grow) the workspace's image, mount it and lay out its directories.
    `size_mb` None keeps an existing disk's size and makes a new one of `default_mb`.
    `in_use`: a sandbox holds the disk (in its own mount namespace, where the host's
    umount cannot see it), so it must not grow now. Blocking: call it from a thread."""
    image = image_of(workspace_dir)
    workspace_dir.mkdir(mode=0o700, exist_ok=True)
    if not image.exists():
        if any(workspace_dir.iterdir()):
            # Made before disks had images: it keeps working, without a quota.
            log.warning("workspace %s predates disk quotas; it has none", workspace_dir.name)
            _layout(workspace_dir, uid)
            return
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, (size_mb or default_mb) * MIB)
        finally:
            os.close(fd)
        try:
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                 f"root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1", str(image))
        except DiskError:
            image.unlink()
            raise
    if size_mb is not None and image.stat().st_size < size_mb * MIB:
        if in_use:
            raise DiskBusy(f"the workspace's disk can grow to {size_mb} MiB only while no "
                           "session runs on it")
        _grow(image, workspace_dir, size_mb)
    if not os.path.ismount(workspace_dir):
        _run("mount", "-o", "loop,nodev,nosuid,noatime", str(image), str(workspace_dir))
    _layout(workspace_dir, uid)


def _grow(image: Path, workspace_dir: Path, size_mb: int) -> None:
    """Grow an image offline (unmounted, checked, resized)."""
    if os.path.ismount(workspace_dir):
        _run("umount", str(workspace_dir))
    before = image.stat().st_size
    os.truncate(image, size_mb * MIB)
    try:
        _run("e2fsck", "-f", "-p", str(image), ok=(0, 1))  # 1: it fixed something
        _run("resize2fs", str(image), f"{size_mb}M")
    except DiskError:
        os.truncate(image, before)  # as it was: a later, smaller grow can still work
        raise


def _device(mountpoint: Path) -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 1 and parts[1] == str(mountpoint):
                return parts[0]
    raise DiskError(f"{mountpoint} is not mounted")


def _layout(workspace_dir: Path, uid: int) -> None:
    """files/, home/ and tmp/, owned by the sandbox's uid. Nothing is followed: the
    sandbox never sees this level, and lstat checks keep it so."""
    os.chown(workspace_dir, uid, uid, follow_symlinks=False)
    os.chmod(workspace_dir, 0o700)  # only its own uid enters (mkfs made the root 0755)
    for name, mode in SUBDIRS:
        sub = workspace_dir / name
        if sub.is_symlink():
            sub.unlink()
        if not sub.exists():
            sub.mkdir(mode=mode)
            os.chown(sub, uid, uid, follow_symlinks=False)
            sub.chmod(mode)


def used_bytes(workspace_dir: Path) -> int | None:
    """Bytes in use on a mounted workspace disk (None when it is not mounted)."""
    if not os.path.ismount(workspace_dir):
        return None
    st = os.statvfs(workspace_dir)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def unmount(workspace_dir: Path) -> None:
    if os.path.ismount(workspace_dir):
        with contextlib.suppress(DiskError):
            _run("umount", "-l", str(workspace_dir))


def delete(workspace_dir: Path) -> bool:
    """Unmount and remove a workspace's disk. False when it has no image (older layout)."""
    image = image_of(workspace_dir)
    if not image.exists():
        return False
    unmount(workspace_dir)
    image.unlink()
    with contextlib.suppress(OSError):
        workspace_dir.rmdir()
    return True


def unmount_all(workspaces: Path) -> None:
    """At shutdown: every workspace disk this data dir has mounted."""
    if workspaces.is_dir():
        for entry in workspaces.iterdir():
            if entry.suffix != ".img" and entry.is_dir() and not entry.is_symlink():
                unmount(entry)


def disk_usage(top: Path, max_entries: int = 500_000) -> int:
    """Bytes allocated under `top`: a read-only walk that never follows a link (stops
    counting past `max_entries`, so a huge tree cannot stall the caller)."""
    total = seen = 0
    if top.is_symlink() or not top.is_dir():
        return 0
    for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
            seen += 1
            if seen >= max_entries:
                return total
    return total


def remove_empty(workspace_dir: Path) -> None:
    """rmdir never follows a link and refuses a non-empty directory: safe as root."""
    for sub in ("files", "home", "tmp", ""):
        with contextlib.suppress(OSError):
            os.rmdir(workspace_dir / sub)
