"""Each sandbox's own writable layer over a shared, read-only image root.

An image is unpacked once, its files owned by the image cache's uid. A sandbox on it
gets an overlay: the image as the lower layer, seen through an *idmapped mount* that
shows the cache's uid as the sandbox's own host uid (so inside, the image's files are
`user`'s, as root's files are root's in a container), and an upper layer on a tmpfs of
the sandbox's disk size. A command may change any file of the root; the change lands
in its own layer, copied up by the kernel, and vanishes with the sandbox. The image
on disk is never written, and no other sandbox sees the change.

Everything here runs as root on paths the server made (`<runtime dir>/roots/<name>`):
nothing from a request reaches it, and the image's content is only ever a lower
layer the kernel reads. Mounts are made before bubblewrap starts and removed when the
sandbox has ended; a crash leaves them for `sweep()` at the next start.

Kernels without idmapped mounts or overlayfs (before 5.19) get the image root
read-only, with private writable mounts for /tmp, /run and /var/tmp (`available`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger("chaser.runtime")

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and arm64 alike
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000
MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 0x2, 0x4
_UNSAFE_IN_OPTIONS = set(",:\\\n")  # overlay's option syntax: such a path cannot be given

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(source: str, target: Path, fstype: str, flags: int, options: str) -> None:
    _check(_libc.mount(source.encode(), str(target).encode(), fstype.encode(),
                       ctypes.c_ulong(flags), options.encode()), f"mount {fstype}")


def _umount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), MNT_DETACH) < 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


class UserNamespace:
    """A user namespace mapping one host uid onto another, held open by a file
    descriptor (its process is gone once the descriptor is taken)."""

    def __init__(self, inside: int, outside: int) -> None:
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        proc = subprocess.Popen([unshare, "--user", "--", "cat"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={"PATH": "/usr/bin:/bin"}, cwd="/")
        try:
            mine = os.readlink("/proc/self/ns/user")
            deadline = time.monotonic() + 5
            while os.readlink(f"/proc/{proc.pid}/ns/user") == mine:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise OSError("cannot make a user namespace for an image mount")
                time.sleep(0.0002)
            Path(f"/proc/{proc.pid}/uid_map").write_text(f"{inside} {outside} 1\n")
            Path(f"/proc/{proc.pid}/setgroups").write_text("deny\n")
            Path(f"/proc/{proc.pid}/gid_map").write_text(f"{inside} {outside} 1\n")
            self.fd = os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.kill()
            proc.wait()

    def close(self) -> None:
        os.close(self.fd)


def idmapped_clone(source: Path, target: Path, userns: UserNamespace) -> None:
    """Mount a copy of `source` at `target`, its owners seen through `userns`'s map."""
    fd = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(source).encode(),
                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "open_tree")
    try:
        # Read-only as well: the image is only ever a lower layer.
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, userns.fd)
        _check(_libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, ctypes.byref(attr),
                             ctypes.sizeof(attr)), "mount_setattr")
        _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, str(target).encode(),
                             MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
    finally:
        os.close(fd)


class Overlays:
    """The writable roots of sandboxes on images, under `directory`."""

    def __init__(self, directory: Path, image_uid: int) -> None:
        self.dir = directory
        self.image_uid = image_uid
        self.available = False
        self.why_not = ""

    def setup(self, probe_image: Path | None = None) -> None:
        """Make the directory, clear what a crash left, and find out whether this
        kernel can do it (a throwaway overlay over an empty root)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o711)
        self.sweep()
        if _UNSAFE_IN_OPTIONS & set(str(self.dir)):
            self.why_not = f"the data dir's path {self.dir} has a character overlay options cannot carry"
            return
        probe = self.dir / ".probe-image"
        probe.mkdir(exist_ok=True)
        os.chown(probe, self.image_uid, self.image_uid)
        try:
            root = self.mount("probe", probe, os.getuid() or 65534, 1 << 20)
            self.available = root.is_dir()
        except OSError as e:
            self.why_not = str(e)
        finally:
            self.unmount("probe")
            probe.rmdir()

    def sweep(self) -> None:
        """Unmount and remove every root a previous run left."""
        for entry in self.dir.iterdir():
            if entry.name.startswith(".probe"):
                continue
            self.unmount(entry.name)

    def mount(self, name: str, image_root: Path, uid: int, size_bytes: int) -> Path:
        """The writable root of sandbox `name` (host uid `uid`) over `image_root`."""
        top = self.dir / name
        top.mkdir(mode=0o700)
        try:
            # The upper layer is a tmpfs of its own: bounded, and gone with the sandbox.
            # Only the sandbox's uid may enter it (bubblewrap binds the root as that uid);
            # no other host user reads what a sandbox writes.
            _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={max(size_bytes, 1 << 20)},mode=0700,uid={uid},gid={uid}")
            for sub in ("lower", "upper", "work", "root"):
                (top / sub).mkdir()
                os.chmod(top / sub, 0o755 if sub in ("upper", "root") else 0o700)
            os.chown(top / "upper", uid, uid)
            userns = UserNamespace(self.image_uid, uid)
            try:
                idmapped_clone(image_root, top / "lower", userns)
            finally:
                userns.close()
            _mount("overlay", top / "root", "overlay", MS_NOSUID | MS_NODEV,
                   f"lowerdir={top / 'lower'},upperdir={top / 'upper'},workdir={top / 'work'}")
            # The overlay holds its own reference to the lower layer: the idmapped view
            # of the image leaves the host's mount table at once.
            _umount(top / "lower")
            return top / "root"
        except BaseException:
            self.unmount(name)
            raise

    def unmount(self, name: str) -> None:
        """Remove sandbox `name`'s root (lazily: its last process may still be exiting)."""
        top = self.dir / name
        for target in (top / "root", top / "lower", top):
            with contextlib.suppress(OSError):
                _umount(target)
        # Only the mount point, never a walk: if the tmpfs were somehow still there, its
        # files are a tenant's, and root does not walk them.
        with contextlib.suppress(OSError):
            top.rmdir()
