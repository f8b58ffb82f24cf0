"""The bubblewrap runtime: each sandbox is a set of Linux namespaces built by bwrap.

How a sandbox starts (see docs/sandbox.md for the reasons):

    server --(fork)--> launch (launch.c; launcher.py): join the sandbox's cgroups (made
                       ahead) as root, become the sandbox's unprivileged host uid, drop caps
             --exec--> bwrap: new user/mount/pid/net/ipc/uts/cgroup namespaces,
                       read-only root (on a pulled image: the sandbox's own overlay
                       over it, mounted first: overlays.py), private /workspace,
                       /home/user, /tmp
             --exec--> the in-sandbox agent as PID 1 (sessions), or a fixed wrapper
                       that applies the request inside the sandbox (one-shot runs)

Without a C compiler the launcher is `sh` (joins the cgroups) and `setpriv` (the uid),
a few ms slower. Nothing from a request reaches the root-run launcher: its environment
is fixed and its argv holds only server-chosen values. A one-shot run's command, cwd and
environment travel in bwrap's option file (`--setenv`, read from a memfd), are applied
by bwrap after it dropped to the sandbox's uid, and the cwd is entered inside the
sandbox by bwrap as the sandbox's uid (never checked on the host).

Sandboxes die with the server (`--die-with-parent`), so a restart leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
from collections import Counter
from pathlib import Path

from chaser.errors import Conflict, SandboxFailed
from chaser.runtime import agent_build, disks, image_roots, images, seccomp
from chaser.runtime.agent_client import AgentSandbox
from chaser.runtime.base import ProcessIO, ProcessSpec, SandboxSpec
from chaser.runtime.cgroups import Cgroup, CgroupManager, ResourceLimits
from chaser.runtime.launcher import Launcher
from chaser.runtime.overlays import Overlays
from chaser.runtime.oneshot import OneShotProcess, command_env
from chaser.runtime.pool import PooledProcess, WarmPool
from chaser.runtime.uids import UidRange, reown_tree
from chaser.runtime.usage import ResourceUsage
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.runtime")

AGENT_PATH = Path(__file__).with_name("agent.py")
DEFAULT_DISK_MB = 10240  # a new workspace disk, or a tmpfs, when the spec names no size
AGENT_START_TIMEOUT = 10.0
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)  # Linux; not in every Python
# Deleting a workspace, inside its own sandbox as its uid: first make every directory
# its owner's to enter again (a tenant may have chmod 000'd one), then delete.
PURGE = ("chmod -R u+rwX /workspace /home/user /tmp 2>/dev/null; "
         "find /workspace /home/user /tmp -mindepth 1 -delete 2>/dev/null; true")
PURGE_TIMEOUT_S = 300
class BwrapRuntime:
    """Sandboxes from bubblewrap, limited by cgroups, run as unprivileged host uids."""

    def __init__(self, state_dir: Path, uids: UidRange, warm_pool: int = 2,
                 cap_all: ResourceLimits | None = None,
                 default_disk_mb: int = DEFAULT_DISK_MB) -> None:
        self.bwrap = shutil.which("bwrap")
        self.setpriv = shutil.which("setpriv")
        missing = [n for n, p in (("bwrap", self.bwrap), ("setpriv", self.setpriv)) if not p]
        if missing:
            raise RuntimeError(
                f"{' and '.join(missing)} not found: install bubblewrap and util-linux "
                "(the README's install command does)"
            )
        if os.geteuid() != 0:
            raise RuntimeError("the sandbox runtime needs root to set up uids and cgroups")
        instance = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
        self.cgroups = CgroupManager.detect(instance)
        swept = self.cgroups.sweep()
        if swept:
            log.info("removed %d cgroups left by an earlier run", swept)
        if cap_all is not None:
            # What every sandbox of this server may use together: the host keeps the rest.
            self.cgroups.limit_all(cap_all)
        # The static agent (C) runs on any image; without a compiler, the Python one.
        static_agent = agent_build.build_agent(state_dir / "agent")

        self.rootfs = images.build_default_root(state_dir / "rootfs-default", AGENT_PATH,
                                                static_agent)
        self.root_args = images.root_args(self.rootfs)
        self.seccomp = seccomp.filter_program()
        if self.seccomp is None:
            log.warning("no seccomp filter for %s: sandboxes get the full syscall surface",
                        platform.machine())
        self.launcher = Launcher(self.bwrap or "bwrap", self.setpriv or "setpriv",
                                 agent_build.build_launcher(state_dir / "launch"), self.seccomp)
        self.pool = WarmPool(self._start_warm, warm_pool)
        self.uids = uids
        # Sandboxes on pulled images: a writable layer each over the shared image.
        self.overlays = Overlays(state_dir / "roots", uids.base)
        self.overlays.setup()
        if self.overlays.available:
            log.info("sandboxes on images get a writable overlay over an idmapped image")
        else:
            log.warning("image roots will be read-only (no idmapped overlay: %s)",
                        self.overlays.why_not)
        self.default_disk_mb = default_disk_mb
        self._mounted: set[Path] = set()  # workspace disks this server mounted
        self._disk_users: Counter[Path] = Counter()  # running sandboxes on each disk
        self._tasks = TaskSet("runtime")  # disk releases as sandboxes end
        self._disk_locks: dict[Path, asyncio.Lock] = {}
        self._uids = itertools.count(secrets.randbelow(uids.ephemeral_span))

    def describe(self) -> dict[str, object]:
        return {"runtime": "bubblewrap", "seccomp": self.seccomp is not None,
                "launcher": self.launcher.describe(),
                "pool": dict(self.pool.stats), **self.cgroups.describe()}

    def forget_image(self, rootfs: Path) -> None:
        self.pool.forget(rootfs)

    def usage(self, group: str | None = None) -> ResourceUsage | None:
        if self.cgroups.version == "none":
            return None
        return self.cgroups.usage(group)

    def _hold_disk(self, workspace_dir: Path, sandbox: AgentSandbox) -> None:
        """Release the sandbox's count on the workspace's disk (taken at launch) when it
        ends; the last one out unmounts the disk (its loop device goes back)."""

        async def release() -> None:
            await sandbox.wait_closed()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sandbox.proc.wait(), 10)  # its mounts go with it
            self._disk_users[workspace_dir] -= 1
            await self._unmount_if_idle(workspace_dir)

        self._tasks.spawn(release())

    async def _unmount_if_idle(self, workspace_dir: Path) -> None:
        lock = self._disk_locks.setdefault(workspace_dir, asyncio.Lock())
        async with lock:
            if self._disk_users[workspace_dir] <= 0:
                del self._disk_users[workspace_dir]
                self._mounted.discard(workspace_dir)
                await asyncio.to_thread(disks.unmount, workspace_dir)

    def workspace_uid(self, workspace_id: int) -> int:
        return self.uids.workspace(workspace_id)

    def adopt_workspace(self, workspace_dir: Path, old_uid: int, new_uid: int) -> None:
        image = disks.image_of(workspace_dir)
        if image.exists():  # the files are inside its disk
            disks.ensure(workspace_dir, new_uid, None, self.default_disk_mb)
            self._mounted.add(workspace_dir)
        changed = reown_tree(workspace_dir, old_uid, new_uid)
        log.info("workspace %s: moved %d files from uid %d to %d", workspace_dir.name,
                 changed, old_uid, new_uid)

    async def purge_workspace(self, workspace_dir: Path, uid: int) -> None:
        """Delete a workspace's files as its own uid inside a sandbox (never as root on
        host paths, where a planted link could redirect it), then its empty directories."""
        lock = self._disk_locks.setdefault(workspace_dir, asyncio.Lock())
        for _ in range(100):  # the sandboxes just stopped may still be exiting
            if self._disk_users[workspace_dir] <= 0:
                break
            await asyncio.sleep(0.1)
        async with lock:
            if self._disk_users[workspace_dir] > 0:
                raise Conflict("a sandbox still uses the workspace's disk", "workspace_busy")
            self._mounted.discard(workspace_dir)
            if await asyncio.to_thread(disks.delete, workspace_dir):
                return  # its own disk: unmounted and removed, no file of it touched
        if workspace_dir.is_symlink() or not workspace_dir.is_dir():
            return
        spec = SandboxSpec(name="purge_" + secrets.token_hex(6), uid=uid,
                           workspace_dir=workspace_dir)
        proc, cgroup = await self._launch(spec, uid, ["--chdir", "/"], ["/bin/sh", "-c", PURGE],
                                          stdin=asyncio.subprocess.DEVNULL,
                                          stdout=asyncio.subprocess.DEVNULL,
                                          stderr=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.wait_for(proc.wait(), PURGE_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        finally:
            self._disk_users[workspace_dir] -= 1
            if cgroup is not None:
                await asyncio.wrap_future(cgroup.remove_later())
        await asyncio.to_thread(disks.remove_empty, workspace_dir)

    def workspace_quota_mb(self, workspace_dir: Path) -> int:
        image = disks.image_of(workspace_dir)
        return image.stat().st_size // disks.MIB if image.exists() else 0

    def workspace_disk_bytes(self, workspace_dir: Path) -> int:
        used = disks.used_bytes(workspace_dir)
        if used is not None:
            return used
        image = disks.image_of(workspace_dir)
        if image.exists():  # not mounted now: what the sparse image holds
            return image.stat().st_blocks * 512
        return disks.disk_usage(workspace_dir)

    def _uid(self, spec: SandboxSpec) -> int:
        """The sandbox's host uid: the spec's own, or a fresh one no live sandbox shares."""
        if spec.uid is not None:
            return spec.uid
        return self.uids.ephemeral(next(self._uids))

    async def start(self, spec: SandboxSpec, warm: bool = False) -> AgentSandbox:
        """Start a long-lived sandbox whose agent forks every later command; a `warm`
        one gets the lowest CPU weight until a request takes it (`_wake`)."""
        try:
            server_end, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            raise SandboxFailed(f"cannot start sandbox: {e.strerror}") from None
        for s in (server_end, agent_end):
            _large_send_buffer(s)
        argv = images.agent_argv(self.rootfs)
        uid = self._uid(spec)
        try:
            proc, cgroup = await self._launch(spec, uid, ["--as-pid-1", "--chdir", "/"], argv,
                                              stdin=agent_end.fileno(),
                                              stdout=asyncio.subprocess.DEVNULL,
                                              stderr=asyncio.subprocess.PIPE, warm=warm)
        except BaseException:
            server_end.close()
            raise
        finally:
            agent_end.close()
        sandbox = AgentSandbox(spec.name, proc, server_end, cgroup)
        sandbox.workspace_dir = spec.workspace_dir
        sandbox.tmpfs_bytes = (spec.disk_mb or self.default_disk_mb) * disks.MIB
        if spec.workspace_dir is not None:
            self._hold_disk(spec.workspace_dir, sandbox)
        try:
            await asyncio.wait_for(sandbox.ready(), AGENT_START_TIMEOUT)
        except (TimeoutError, SandboxFailed) as e:
            err = b""
            if proc.stderr is not None:
                with contextlib.suppress(Exception):
                    err = await asyncio.wait_for(proc.stderr.read(4096), 0.5)
            await sandbox.close()
            detail = err.decode(errors="replace").strip() or str(e) or "timed out"
            raise SandboxFailed(f"sandbox {spec.name} failed to start: {detail}") from None
        except BaseException:  # cancelled half-way: the sandbox is nobody's
            self._tasks.spawn(sandbox.close())
            raise
        return sandbox

    async def _start_warm(self, spec: SandboxSpec) -> AgentSandbox:
        """A warm sandbox for the pool, started at the lowest CPU weight: made while
        requests keep coming, it takes only the CPU they leave."""
        return await self.start(spec, warm=True)

    async def run_once(self, spec: SandboxSpec, proc: ProcessSpec,
                       io: ProcessIO) -> OneShotProcess | PooledProcess:
        """Run one command in a sandbox of its own that ends with it: a warm one from the
        pool when there is one, else a fresh one with the command as its only process."""
        warm = self.pool.take(spec)
        if warm is not None:
            _wake(warm)
            return await self.pool.run(warm, proc, io)
        stdin = io.stdin if io.stdin is not None else asyncio.subprocess.DEVNULL
        try:
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
        except OSError as e:
            for fd in (io.stdin, io.stdout, io.stderr):
                if fd is not None:
                    os.close(fd)
            raise SandboxFailed(f"cannot start sandbox: {e.strerror}") from None
        env = {**proc.env, **command_env(proc.argv[0], proc.argv[-1])}
        options = ["--json-status-fd", str(status_w), "--chdir", proc.cwd, "--clearenv"]
        for name, value in env.items():
            options += ["--setenv", name, value]
        try:
            child, cgroup = await self._launch(spec, self._uid(spec), options,
                                               images.oneshot_argv(self.rootfs),
                                               stdin=stdin, stdout=io.stdout, stderr=io.stderr,
                                               keep=[status_w])
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
            for fd in (io.stdin, io.stdout, io.stderr):
                if fd is not None:
                    os.close(fd)
        return OneShotProcess(child, cgroup, status_r)

    async def close(self) -> None:
        await self.pool.close()
        # The core closed every sandbox: their disk releases end promptly; past a
        # moment, what is left is unmounted below anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tasks.wait(), 10)
        await self._tasks.close()
        for workspace_dir in self._mounted:
            await asyncio.to_thread(disks.unmount, workspace_dir)
        await asyncio.to_thread(self.cgroups.close)

    async def _launch(self, spec: SandboxSpec, uid: int, extra: list[str], argv: list[str], *,
                      stdin: int, stdout: int, stderr: int,
                      keep: list[int] | None = None, warm: bool = False,
                      ) -> tuple[asyncio.subprocess.Process, Cgroup | None]:
        """Start bwrap for `spec` as host `uid` with `extra` options and the fixed `argv`
        inside (a `warm` one at the lowest CPU weight).

        `extra` may carry request data (it goes to bwrap through a memfd, never argv);
        `argv` must not: it is visible in the argv of the root-run launcher.
        """
        if spec.rootfs is not None and not self.static_agent.is_file():
            raise SandboxFailed("sandboxes on images other than 'default' need the static "
                                "agent, which this server could not build (install gcc and "
                                "libc6-dev: the README's install command does)")
        if spec.workspace_dir is not None:
            await self._take_disk(spec.workspace_dir, uid, spec.disk_mb)
        root = None
        try:
            if spec.rootfs is not None and self.overlays.available:
                size = (spec.disk_mb or self.default_disk_mb) * disks.MIB
                root = await asyncio.to_thread(self.overlays.mount, spec.name, spec.rootfs,
                                               uid, size)
            proc, cgroup = await self._launch_taken(spec, uid, root, extra, argv, stdin=stdin,
                                                    stdout=stdout, stderr=stderr, keep=keep,
                                                    warm=warm)
        except BaseException:
            if spec.workspace_dir is not None:
                self._disk_users[spec.workspace_dir] -= 1
            if root is not None:
                await asyncio.to_thread(self.overlays.unmount, spec.name)
            raise
        if root is not None:
            self._tasks.spawn(self._unmount_after(spec.name, proc))
        return proc, cgroup

    async def _unmount_after(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """A sandbox's writable root goes when its bubblewrap has exited (with it, every
        process of the sandbox)."""
        try:
            await proc.wait()
        finally:
            await asyncio.to_thread(self.overlays.unmount, name)

    async def _take_disk(self, workspace_dir: Path, uid: int, size_mb: int | None) -> None:
        """Prepare a workspace's disk and count one more sandbox on it. One launch at a
        time per disk: root must never resize or check a disk another launch is making,
        mounting or already using (that corrupts a live filesystem)."""
        lock = self._disk_locks.setdefault(workspace_dir, asyncio.Lock())
        async with lock:
            try:
                await asyncio.to_thread(disks.ensure, workspace_dir, uid, size_mb,
                                        self.default_disk_mb,
                                        self._disk_users[workspace_dir] > 0)
            except disks.DiskBusy as e:
                raise Conflict(str(e), "workspace_busy") from None
            except OSError as e:
                log.warning("workspace disk %s: %s", workspace_dir, e)
                raise SandboxFailed("the workspace's disk could not be prepared (the "
                                    "server's log says why)") from None
            self._disk_users[workspace_dir] += 1
            self._mounted.add(workspace_dir)

    async def _launch_taken(self, spec: SandboxSpec, uid: int, root: Path | None,
                            extra: list[str], argv: list[str], *, stdin: int, stdout: int,
                            stderr: int, keep: list[int] | None,
                            warm: bool) -> tuple[asyncio.subprocess.Process, Cgroup | None]:
        # bwrap reads its options from a memfd (--args), so host paths stay out of the
        # sandbox's /proc/1/cmdline and request data out of every argv; the seccomp
        # program comes through a memfd as well. Encoded first: nothing may fail after
        # the cgroup exists without removing it.
        options_blob = b"".join(a.encode() + b"\0"
                                for a in [*self._bwrap_args(spec, root), *extra])
        try:
            cgroup = self.cgroups.take(spec.name, spec.limits, spec.group, spec.group_limits)
            if cgroup is None:
                cgroup = await asyncio.to_thread(self.cgroups.create, spec.name, spec.limits,
                                                 spec.group, spec.group_limits)
            if cgroup is not None and warm:
                cgroup.set_cpu_weight(low=True)  # born yielding: the launcher joins it first
        except OSError as e:
            raise SandboxFailed(f"cannot set up the sandbox's cgroup: {e}") from e
        procs = [str(f) for f in cgroup.procs_files] if cgroup is not None else []
        try:
            proc = await self.launcher.spawn(uid, procs, options_blob, argv, stdin=stdin,
                                             stdout=stdout, stderr=stderr,
                                             pass_fds=list(keep or ()))
            return proc, cgroup
        except BaseException:
            if cgroup is not None:
                await asyncio.wrap_future(cgroup.remove_later())
            raise

    @property
    def static_agent(self) -> Path:
        """The static agent, bound into sandboxes on pulled images (built at start)."""
        return self.rootfs / ".chaser" / "agent"

    def _root_args(self, spec: SandboxSpec, root: Path | None) -> list[str]:
        """The default image's root; or an image's: its writable overlay (`root`), else
        the image read-only with private scratch mounts."""
        if spec.rootfs is None:
            return self.root_args
        if root is not None:
            return image_roots.root_args(root, self.static_agent, writable=True)
        size = str((spec.disk_mb or self.default_disk_mb) * disks.MIB)
        args = image_roots.root_args(spec.rootfs, self.static_agent)
        for path in image_roots.SCRATCH:
            args += ["--perms", "0755", "--size", size, "--tmpfs", path]
        return args

    def _bwrap_args(self, spec: SandboxSpec, root: Path | None = None) -> list[str]:
        args = ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                "--die-with-parent", "--new-session",
                "--uid", str(images.SANDBOX_UID), "--gid", str(images.SANDBOX_UID),
                "--hostname", images.SANDBOX_HOSTNAME,
                *self._root_args(spec, root),
                # /proc/sys read-only: sysctls of the sandbox's own namespaces too (the
                # host's values were never writable: the sandbox's uid does not own them).
                "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
                "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
        home = f"/home/{images.SANDBOX_USER}"
        if spec.workspace_dir is None:
            size = str((spec.disk_mb or self.default_disk_mb) * disks.MIB)
            for path, perms in (("/workspace", "0755"), (home, "0755"), ("/tmp", "1777")):
                args += ["--perms", perms, "--size", size, "--tmpfs", path]
        else:
            ws = spec.workspace_dir
            args += ["--bind", str(ws / "files"), "/workspace", "--bind", str(ws / "home"), home,
                     "--bind", str(ws / "tmp"), "/tmp"]
        return args


def _wake(sandbox: AgentSandbox) -> None:
    """A warm sandbox back to the default CPU weight, as a request takes it."""
    if sandbox.cgroup is not None:
        with contextlib.suppress(OSError):
            sandbox.cgroup.set_cpu_weight(low=False)


def _large_send_buffer(sock: socket.socket) -> None:
    """Room for the largest request in one packet (SEQPACKET messages must fit the send
    buffer). SO_SNDBUF is capped by net.core.wmem_max (about 208 KiB on stock kernels);
    the server is root, so it may force the size."""
    size = 4 * 1024 * 1024  # the kernel doubles it: 8 MiB, the agent's largest packet
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
