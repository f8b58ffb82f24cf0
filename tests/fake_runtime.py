"""A fake sandbox runtime for the in-process test tier.

    !!! THIS RUNTIME ISOLATES NOTHING. !!!

Every "sandbox" is a temporary directory and every command a plain host subprocess,
run as whoever runs the tests (root included), with the host's whole filesystem,
network, users and resources. No namespaces, no cgroups, no uid drop, no seccomp, no
limits. It exists only for the logic tier (`tests/inprocess`): fast tests of routes,
the core's bookkeeping and the wire shapes, with no root and no bubblewrap. Never
serve requests with it; isolation is tested end to end against the real runtime.

What it keeps of the real runtime's contract (`chaser.runtime.base`):
- a sandbox's `/workspace`, `/home/user` and `/tmp` are the `files`, `home` and `tmp`
  directories of its dir: the spec's `workspace_dir` (so a workspace's files persist
  across its sessions) or a private temp dir removed with the sandbox. Those paths are
  mapped in `cwd` and in environment values (HOME); other absolute paths are the host's
  (the `default` image is the host's own /usr). Paths inside command text are NOT mapped.
- each process leads its own session, so signals reach its whole process group;
- a missing cwd fails as the agent (session spawn: 409 `invalid_cwd`) or bwrap (one-shot
  run: `setup_failed` with bwrap's words on stderr) makes it fail;
- only the `default` image exists; the runtime owns the `ProcessIO` fds it is given.
- the files API's operations (`/.chaser/agent files ...`) run the static agent built
  from this checkout; their absolute paths outside the three mounts are sent to a
  directory of the sandbox's own that does not exist, never to the host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import posixpath
import shutil
import signal
import struct
import tempfile
import termios
import time
from collections import Counter
from pathlib import Path

from chaser.errors import Conflict, SandboxFailed
from chaser.runtime import agent_build, disks
from chaser.runtime.base import ExitStatus, ProcessIO, ProcessSpec, SandboxSpec
from chaser.runtime.usage import ResourceUsage

MOUNTS = {"/workspace": "files", "/home/user": "home", "/tmp": "tmp"}
FAKE_UID_BASE = 2_000_000_000  # reported only: nothing is ever chowned
DEFAULT_DISK_MB = 10240
AGENT_FILES = ["/.chaser/agent", "files"]


class FakeProcess:
    """A host subprocess leading its own session (its pid is the host's)."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int = -1) -> None:
        self.proc = proc
        self.pid: int | None = proc.pid
        self.master = master  # a tty spawn's terminal, else -1
        self.then_close: FakeSandbox | None = None  # a one-shot run's sandbox ends with it
        self._signalled = False

    async def wait(self) -> ExitStatus:
        rc = await self.proc.wait()
        if self.then_close is None:
            return ExitStatus(None, -rc) if rc < 0 else ExitStatus(rc, None)
        await self.then_close.close()
        # As a cold one-shot run (bwrap) reports it: a command's own death by signal N is
        # exit 128+N; only our kill (a timeout, a disconnect) is a signal. (A warm-pool
        # run of the real runtime reports the signal instead.)
        if rc < 0 and not self._signalled:
            return ExitStatus(128 - rc, None)
        return ExitStatus(None, -rc) if rc < 0 else ExitStatus(rc, None)

    def signal(self, signum: int) -> None:
        self._signalled = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)


def _default_signals() -> None:
    """In every child, as the agent does before exec: signals back to their defaults (a
    suite started in the background inherits SIGINT and SIGQUIT ignored, and a command
    would then ignore its terminal's Ctrl-C)."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _take_terminal() -> None:
    """In a tty spawn's child (a new session's leader): stdin is its controlling terminal."""
    _default_signals()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class SetupFailed:
    """A one-shot run whose sandbox could not be set up: the command never ran."""

    pid: int | None = None

    async def wait(self) -> ExitStatus:
        return ExitStatus(1, None, setup_failed=True)

    def signal(self, signum: int) -> None:
        return None


class FakeSandbox:
    """A directory standing in for a sandbox, and the process groups started in it."""

    def __init__(self, name: str, root: Path, owned: bool) -> None:
        self.name = name
        self.root = root
        self.failure: str | None = None
        self._owned = owned  # a private temp dir, removed at close (a workspace's is kept)
        self._groups: set[int] = set()
        self._closed = asyncio.Event()
        self.agent: Path | None = None  # the static agent, for file operations

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def usage(self) -> ResourceUsage | None:
        """What the fake can see: its process groups still there and the bytes of its
        dir; no memory or CPU figures (it has no cgroup), as a host without one."""
        if not self.alive:
            return None
        groups = 0
        for pgid in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, 0)
                groups += 1
        return ResourceUsage(time.time(), pids=groups, disk_bytes=disks.disk_usage(self.root))

    def _file_op(self, argv: list[str]) -> list[str]:
        """A files API operation: the built agent, its path confined to the sandbox."""
        if self.agent is None or len(argv) < 4:
            raise SandboxFailed("no static agent to run file operations", "spawn_failed")
        path = argv[3]
        if path.startswith("/"):
            mapped = self.host_path(path)
            if mapped == Path(posixpath.normpath(path)):  # outside the mounts
                mapped = self.root / "not-in-this-fake" / path.lstrip("/")
            path = str(mapped)
        return [str(self.agent), *argv[1:3], path, *argv[4:]]

    def host_path(self, path: str) -> Path:
        """Where a sandbox path lives on the host (its own dirs for the mounted ones)."""
        norm = posixpath.normpath(path)
        for inside, sub in MOUNTS.items():
            if norm == inside or norm.startswith(inside + "/"):
                return self.root / sub / norm[len(inside):].lstrip("/")
        return Path(norm)

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        mapped = (str(self.host_path(v)) if any(v == m or v.startswith(m + "/") for m in MOUNTS)
                  else v for v in env.values())
        return dict(zip(env, mapped))

    async def spawn(self, spec: ProcessSpec, io: ProcessIO, tty: bool = False) -> FakeProcess:
        """Start `spec` as a host process in the mapped cwd (the fds become the child's)."""
        try:
            if not self.alive:
                raise SandboxFailed(f"sandbox {self.name} is not running")
            cwd = self.host_path(spec.cwd)
            if not cwd.is_dir():  # as the agent answers: 409 invalid_cwd
                raise Conflict("cwd does not exist in the sandbox or is not a directory",
                               "invalid_cwd")
            argv = self._file_op(spec.argv) if spec.argv[:2] == AGENT_FILES else spec.argv
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=io.stdin if io.stdin is not None else asyncio.subprocess.DEVNULL,
                    stdout=io.stdout, stderr=io.stderr, env=self._env(spec.env), cwd=cwd,
                    start_new_session=True, umask=0o022,
                    preexec_fn=_take_terminal if tty else _default_signals)
            except OSError as e:
                raise SandboxFailed(f"cannot start the command: {e}", "spawn_failed") from e
        finally:
            for fd in (io.stdin, io.stdout, io.stderr):
                if fd is not None:
                    os.close(fd)
        self._groups.add(proc.pid)
        return FakeProcess(proc)

    async def spawn_tty(self, spec: ProcessSpec, cols: int, rows: int,
                        echo: bool = True) -> FakeProcess:
        """Start `spec` on a new host terminal (a host pty: the fake isolates nothing)."""
        master, slave = os.openpty()
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if not echo:
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        try:
            proc = await self.spawn(spec, ProcessIO(stdout=os.dup(slave), stderr=os.dup(slave),
                                                    stdin=os.dup(slave)), tty=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        proc.master = master
        return proc

    async def close(self) -> None:
        """SIGKILL every process group started here (orphans of ended commands too)."""
        if not self.alive:
            return
        self._closed.set()
        for pgid in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._groups.clear()
        if self._owned:
            await asyncio.to_thread(shutil.rmtree, self.root, True)

    async def wait_closed(self) -> None:
        await self._closed.wait()


class FakeRuntime:
    """Makes `FakeSandbox`es under `root` (see the module docstring: no isolation)."""

    def __init__(self, root: Path, default_disk_mb: int = DEFAULT_DISK_MB) -> None:
        self.root = root
        self.default_disk_mb = default_disk_mb
        self.sandboxes: dict[str, FakeSandbox] = {}  # live ones, for tests to reach
        self._quota_mb: dict[Path, int] = {}
        self._users: Counter[Path] = Counter()  # live sandboxes on each workspace dir
        self._agent: Path | None = None

    def describe(self) -> dict[str, object]:
        return {"runtime": "fake", "cgroup": "none", "memory": False, "pids": False,
                "cpu": False}

    def workspace_uid(self, workspace_id: int) -> int:
        return FAKE_UID_BASE + workspace_id

    def adopt_workspace(self, workspace_dir: Path, old_uid: int, new_uid: int) -> None:
        return None  # nothing is chowned

    async def purge_workspace(self, workspace_dir: Path, uid: int) -> None:
        if self._users[workspace_dir] > 0:
            raise Conflict("a sandbox still uses the workspace's disk", "workspace_busy")
        self._quota_mb.pop(workspace_dir, None)
        await asyncio.to_thread(shutil.rmtree, workspace_dir, True)

    def workspace_quota_mb(self, workspace_dir: Path) -> int:
        return self._quota_mb.get(workspace_dir, 0)

    def workspace_disk_bytes(self, workspace_dir: Path) -> int:
        return disks.disk_usage(workspace_dir)

    def _take_workspace(self, workspace_dir: Path, size_mb: int | None) -> None:
        """Size the workspace's "disk" as `disks.ensure` does: made at the asked or
        default size, grown only while no sandbox runs on it, never shrunk."""
        current = self._quota_mb.get(workspace_dir, 0)
        if current and size_mb and size_mb > current and self._users[workspace_dir] > 0:
            raise Conflict(f"the workspace's disk can grow to {size_mb} MiB only while no "
                           "session runs on it", "workspace_busy")
        self._quota_mb[workspace_dir] = max(current, size_mb or current or self.default_disk_mb)
        self._users[workspace_dir] += 1

    def forget_image(self, rootfs: Path) -> None:
        return None  # no warm sandboxes here

    def usage(self, group: str | None = None) -> ResourceUsage | None:
        return None  # no cgroups: nothing measured together

    async def start(self, spec: SandboxSpec) -> FakeSandbox:
        if spec.workspace_dir is not None:
            self._take_workspace(spec.workspace_dir, spec.disk_mb)
            root, owned = spec.workspace_dir, False
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            root, owned = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=self.root)), True
        for sub in MOUNTS.values():
            (root / sub).mkdir(parents=True, exist_ok=True)
        sandbox = FakeSandbox(spec.name, root, owned)
        if self._agent is None:
            self._agent = await asyncio.to_thread(agent_build.build_agent, self.root / ".agent")
        sandbox.agent = self._agent
        self.sandboxes[spec.name] = sandbox
        asyncio.get_running_loop().create_task(self._forget(sandbox, spec.workspace_dir))
        return sandbox

    async def _forget(self, sandbox: FakeSandbox, workspace_dir: Path | None) -> None:
        await sandbox.wait_closed()
        self.sandboxes.pop(sandbox.name, None)
        if workspace_dir is not None:
            self._users[workspace_dir] -= 1

    async def run_once(self, spec: SandboxSpec, proc: ProcessSpec,
                       io: ProcessIO) -> FakeProcess | SetupFailed:
        """One process in a fresh sandbox that ends with it; a missing cwd fails as bwrap
        does (`setup_failed`, bwrap's words on stderr)."""
        sandbox = await self.start(spec)
        if not sandbox.host_path(proc.cwd).is_dir():
            os.write(io.stderr, f"bwrap: Can't chdir to {proc.cwd}: No such file or "
                                "directory\n".encode())
            for fd in (io.stdin, io.stdout, io.stderr):
                if fd is not None:
                    os.close(fd)
            await sandbox.close()
            return SetupFailed()
        try:
            process = await sandbox.spawn(proc, io)
        except BaseException:
            await sandbox.close()
            raise
        process.then_close = sandbox
        return process

    async def close(self) -> None:
        await asyncio.gather(*(sb.close() for sb in list(self.sandboxes.values())))
