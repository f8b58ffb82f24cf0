"""Unpack an image's layers into a root filesystem: run as an unprivileged helper.

The server runs this file as its own process (`python -I -S unpack.py`), as the image
cache's unprivileged host uid, with a fixed environment; it imports nothing of Chaser.
It gets an open directory (the new root, empty) and the layer blobs as inherited file
descriptors, and its plan as JSON on stdin; it answers one JSON line on stdout.

Layer tars are hostile input. Two walls keep them inside the root:
- Every path is taken apart and walked one component at a time from the root's
  descriptor with O_NOFOLLOW: no `..`, no absolute path, and no write *through* a
  symbolic link, whatever the link says (a layer that plants `x -> /etc` and then writes
  `x/passwd` is refused). Links are created, never followed. Hard links must name a file
  of the image. Device nodes are refused; setuid and setgid bits are dropped.
- The process runs as a uid that owns nothing on the host but the new root, so even a
  mistake here could not write a host file.
Limits bound what a layer may make: bytes, entries and path depth (a tar bomb stops with
a clear error). Layers apply in order; OCI whiteouts (`.wh.NAME`) delete what lower
layers made and opaque markers (`.wh..wh..opq`) empty a directory of them.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import stat
import sys
import tarfile
from typing import IO, Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_DEPTH = 128
MAX_PATH = 4096
CHUNK = 1 << 20
MEMORY_LIMIT = 1 << 30
BLOCK = 4096
MAX_OPEN_DIRS = 64  # a few hundred descriptors may be all a server has
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The layer does something no image may do (the message says what)."""


class Unpacker:
    """Applies layers to the root open at `root_fd`, within the plan's limits."""

    def __init__(self, root_fd: int, max_bytes: int, max_entries: int) -> None:
        self.root = root_fd
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self.entries = 0
        self.dir_modes: dict[tuple[str, ...], int] = {}
        self._fds: dict[tuple[str, ...], int] = {}
        self._made: set[tuple[str, ...]] = set()  # what the current layer created

    # -- paths --------------------------------------------------------------------------

    @staticmethod
    def split(name: str, what: str = "path") -> tuple[str, ...]:
        if name.startswith("/"):
            raise Refused(f"absolute {what} {name[:200]!r}")
        if len(name) > MAX_PATH or "\0" in name:
            raise Refused(f"{what} longer than {MAX_PATH} bytes or with a NUL byte")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise Refused(f"{what} {name[:200]!r} climbs out with '..'")
        if len(parts) > MAX_DEPTH:
            raise Refused(f"{what} nested deeper than {MAX_DEPTH} directories")
        return parts

    def dir_fd(self, parts: tuple[str, ...], create: bool = True) -> int:
        """The directory `parts` names, opened without following any link on the way
        (missing directories are made, as tar does)."""
        if not parts:
            return self.root
        cached = self._fds.get(parts)
        if cached is not None:
            return cached
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except (NotADirectoryError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            kind = "a symbolic link" if _is_link(parent, name) else "not a directory"
            raise Refused(f"writes through {'/'.join(parts)!r}, which is {kind}") from None
        self._fds[parts] = fd
        return fd

    def trim(self) -> None:
        """Between entries (no descriptor in use): keep the cache of directories small."""
        if len(self._fds) >= MAX_OPEN_DIRS:
            self.forget_under(())

    def forget_under(self, top: tuple[str, ...]) -> None:
        """Close the cached directories at or below `top` (about to be removed: the names
        would then mean other directories). Their parents stay open."""
        for parts in [p for p in self._fds if p[:len(top)] == top]:
            os.close(self._fds.pop(parts))

    def remove(self, parent_parts: tuple[str, ...], name: str) -> None:
        """Remove what `name` is in the directory `parent_parts`, a whole tree for a
        directory (links are removed, not followed)."""
        parent = self.dir_fd(parent_parts)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.forget_under(parent_parts + (name,))
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    # -- layers -------------------------------------------------------------------------

    def apply(self, stream: IO[bytes]) -> None:
        self._made = set()
        try:
            archive = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as e:
            raise Refused(f"not a tar archive ({e})") from None
        with archive:
            try:
                for member in archive:
                    self.entries += 1
                    if self.entries > self.max_entries:
                        raise Refused(f"more than {self.max_entries} files in the image "
                                      "(a tar bomb?)")
                    self.trim()
                    self.member(archive, member)
            except (tarfile.TarError, EOFError, OSError) as e:
                if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise Refused(f"broken or truncated layer ({e})") from None

    def member(self, archive: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self.split(m.name)
        if not parts:
            return  # the root itself: its mode is ours to set
        parent_parts, name = parts[:-1], parts[-1]
        parent = self.dir_fd(parent_parts)
        if name == OPAQUE:
            for child in os.listdir(parent):
                if parent_parts + (child,) not in self._made:
                    self.remove(parent_parts, child)
            return
        if name.startswith(WHITEOUT):
            target = name[len(WHITEOUT):]
            if target in ("", ".", ".."):
                raise Refused(f"whiteout {m.name[:200]!r} names no file")
            self.remove(parent_parts, target)
            return
        self._made.add(parts)
        self.count(BLOCK)  # every entry takes an inode and a block, whatever it is
        mode = m.mode & 0o1777  # no setuid or setgid: nothing here may gain privilege
        if m.isdir():
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    self.remove(parent_parts, name)
                    os.mkdir(name, 0o755, dir_fd=parent)
            except FileNotFoundError:
                os.mkdir(name, 0o755, dir_fd=parent)
            self.dir_modes[parts] = mode
            return
        self.remove(parent_parts, name)
        if m.issym():
            self.count(len(m.linkname))
            os.symlink(m.linkname, name, dir_fd=parent)
        elif m.islnk():
            linked = self.split(m.linkname, "hard link target")
            if not linked:
                raise Refused(f"hard link {m.name[:200]!r} to the root directory")
            try:
                source = self.dir_fd(linked[:-1], create=False)
                st = os.stat(linked[-1], dir_fd=source, follow_symlinks=False)
            except FileNotFoundError:
                raise Refused(f"hard link {m.name[:200]!r} to {m.linkname[:200]!r}, which the "
                              "image does not have") from None
            if stat.S_ISDIR(st.st_mode):
                raise Refused(f"hard link {m.name[:200]!r} to a directory")
            os.link(linked[-1], name, src_dir_fd=source, dst_dir_fd=parent,
                    follow_symlinks=False)
        elif m.isreg():
            self.regular(archive, m, parent, name, mode)
        elif m.isfifo():
            os.mkfifo(name, mode, dir_fd=parent)
        elif m.ischr() or m.isblk():
            raise Refused(f"device node {m.name[:200]!r} (images may not carry devices)")
        else:
            raise Refused(f"{m.name[:200]!r} is of an unknown tar entry type {m.type!r}")
        self.xattrs(m, parent, name)

    def count(self, size: int) -> None:
        """What the root takes on disk so far (sizes rounded up to blocks), checked
        against the limit: empty files, directories and links cost disk too."""
        self.bytes += -(-size // BLOCK) * BLOCK
        if self.bytes > self.max_bytes:
            raise Refused(f"unpacks to more than {self.max_bytes // (1 << 20)} MiB (this "
                          "server's limit on an image)")

    def regular(self, archive: tarfile.TarFile, m: tarfile.TarInfo, parent: int, name: str,
                mode: int) -> None:
        self.count(m.size)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            source = archive.extractfile(m)
            if source is not None:
                while chunk := source.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    @staticmethod
    def xattrs(m: tarfile.TarInfo, parent: int, name: str) -> None:
        """User xattrs where the filesystem takes them; others need privilege (dropped)."""
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr.user."):
                try:
                    # setxattr takes no dir_fd: the parent's /proc link stands in for it
                    os.setxattr(f"/proc/self/fd/{parent}/{name}", key[len("SCHILY.xattr."):],
                                value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except (OSError, TypeError):
                    pass

    # -- finishing ----------------------------------------------------------------------

    def prepare(self, plan: dict[str, Any]) -> None:
        """Mount points and the sandbox's own /etc files, then the directories' modes."""
        self.forget_under(())
        for path in plan.get("mountpoints", []):
            self.make_dir(self.split(path))
        for path in plan.get("mount_files", []):
            parts = self.split(path)
            self.make_dir(parts[:-1])
            parent = self.dir_fd(parts[:-1])
            self.remove(parts[:-1], parts[-1])
            os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o755, dir_fd=parent))
        etc = self.make_dir(("etc",))
        for name, text in plan.get("etc", {}).items():
            self.write(("etc",), name, text)
        for name, entry in plan.get("accounts", {}).items():
            kept = [line for line in self.read(etc, name).splitlines()
                    if line.strip() and not _same_account(line, entry["name"], entry["id"])]
            self.write(("etc",), name, "\n".join([*kept, entry["line"]]) + "\n")
        for parts, mode in sorted(self.dir_modes.items(), key=lambda kv: -len(kv[0])):
            self.trim()  # one descriptor per directory of the image would run out
            try:
                fd = self.dir_fd(parts, create=False)
            except (FileNotFoundError, Refused):
                continue  # whited out later, or replaced by a link
            os.fchmod(fd, mode)
        os.fchmod(self.root, 0o755)

    def make_dir(self, parts: tuple[str, ...]) -> int:
        """The directory `parts`, each component replacing anything else there (a link,
        a file): `home -> var/home` becomes a directory for the home mount."""
        if not parts:
            return self.root
        self.make_dir(parts[:-1])
        parent = self.dir_fd(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.remove(parts[:-1], parts[-1])
        except FileNotFoundError:
            pass
        self.dir_modes.pop(parts, None)
        fd = self.dir_fd(parts)
        os.fchmod(fd, 0o1777 if parts == ("tmp",) else 0o755)
        return fd

    def read(self, parent: int, name: str) -> str:
        try:  # non-blocking: a FIFO planted at /etc/passwd must not hang the unpack
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=parent)
        except OSError:
            return ""
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return ""
            return f.read(1 << 20).decode(errors="replace")

    def write(self, parent_parts: tuple[str, ...], name: str, text: str) -> None:
        self.remove(parent_parts, name)
        parent = self.dir_fd(parent_parts)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _same_account(line: str, name: str, ident: int) -> bool:
    """Whether an /etc/passwd or /etc/group line has the sandbox user's name or id."""
    fields = line.split(":")
    return fields[0] == name or (len(fields) > 2 and fields[2] == str(ident))


def main() -> int:
    os.umask(0o022)  # the modes the tar gives, not the server's private 077
    plan = json.loads(sys.stdin.read(1 << 20))
    # Hostile archives may try memory (a pax header of a gigabyte) or one endless file:
    # this process holds itself to what an unpacker needs.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (plan["max_bytes"] + 1, plan["max_bytes"] + 1))
    unpacker = Unpacker(plan["root_fd"], plan["max_bytes"], plan["max_entries"])
    current = ""
    try:
        for layer in plan["layers"]:
            current = layer["digest"]
            with os.fdopen(layer["fd"], "rb", buffering=CHUNK) as stream:
                unpacker.apply(stream)
        current = ""
        unpacker.prepare(plan)
    except Refused as e:
        where = f"layer {current[:19]}: " if current else ""
        print(json.dumps({"error": where + str(e), "code": "image_rejected"}))
        return 1
    except OSError as e:
        code = "storage_full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "unpack_failed"
        where = f"layer {current[:19]}: " if current else ""
        print(json.dumps({"error": f"{where}{e.strerror or e}", "code": code}))
        return 1
    print(json.dumps({"ok": True, "bytes": unpacker.bytes, "entries": unpacker.entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
