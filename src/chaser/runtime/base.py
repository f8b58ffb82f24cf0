"""The sandbox runtime's interface: what the core may ask of any sandbox backend.

The runtime knows nothing of HTTP, sessions or tenants. It makes sandboxes from a
`SandboxSpec`, starts processes in them with pipes the caller owns, signals them and
reports how they ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaser.runtime.cgroups import ResourceLimits
from chaser.runtime.usage import ResourceUsage


@dataclass(frozen=True)
class SandboxSpec:
    """How to build one sandbox.

    `image` names the root (shown, and part of what a warm sandbox is shaped by);
    `rootfs` is an unpacked OCI image's root, None for the built-in default image.
    `workspace_dir` is a host directory whose `files`, `home` and `tmp` subdirectories
    become `/workspace`, `/home/user` and `/tmp`; None gives private, empty tmpfs mounts
    that vanish with the sandbox. `uid` is the host uid the sandbox runs as; None lets
    the runtime pick one no other live sandbox uses (what sandboxes without a
    workspace want). Sandboxes of one `group` share `group_limits`, held by the kernel
    for all of them together.
    """

    name: str
    uid: int | None = None
    image: str = "default"
    rootfs: Path | None = None
    workspace_dir: Path | None = None
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    group: str | None = None
    group_limits: ResourceLimits | None = None
    disk_mb: int | None = None  # what it may write: workspace disk or tmpfs size


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: argv, a complete environment and a working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


@dataclass(frozen=True)
class ProcessIO:
    """File descriptors the caller made for the process (the runtime takes ownership).

    `stdin` None means /dev/null.
    """

    stdout: int
    stderr: int
    stdin: int | None = None


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: `code` when it exited, `signal` when a signal ended it.

    `setup_failed`: the sandbox could not be set up and the process never ran; its
    stderr holds the runtime's reason (a one-shot cwd that does not exist, say).
    """

    code: int | None
    signal: int | None
    setup_failed: bool = False


class Process(Protocol):
    """A started process; its output arrives on the caller's pipes."""

    pid: int | None

    async def wait(self) -> ExitStatus: ...

    def signal(self, signum: int) -> None:
        """Send `signum` to the process's whole process group."""


class TerminalProcess(Process, Protocol):
    """A process started on a new terminal of its sandbox (its controlling terminal,
    as stdin, stdout and stderr); the caller owns `master`, the terminal's other side."""

    master: int


class Sandbox(Protocol):
    """A running sandbox that processes join."""

    name: str
    failure: str | None  # set when the runtime ended it for misbehaving (why, in words)

    @property
    def alive(self) -> bool: ...

    def usage(self) -> ResourceUsage | None:
        """What it uses now, as the kernel counts it (blocking: a few small reads; call
        it from a thread); None once it has ended, or where nothing can be measured."""

    async def spawn(self, spec: ProcessSpec, io: ProcessIO) -> Process: ...

    async def spawn_tty(self, spec: ProcessSpec, cols: int, rows: int,
                        echo: bool = True) -> TerminalProcess:
        """Start `spec` on a new `cols` x `rows` terminal made inside the sandbox (its
        echo off from the start unless `echo`)."""

    async def close(self) -> None:
        """Kill everything in the sandbox and release what it held."""

    async def wait_closed(self) -> None:
        """Return when the sandbox has ended, for whatever reason."""


class Runtime(Protocol):
    """Makes sandboxes."""

    def describe(self) -> dict[str, object]: ...

    def workspace_uid(self, workspace_id: int) -> int:
        """The host uid a workspace's sandboxes run as (its files belong to it)."""

    def adopt_workspace(self, workspace_dir: Path, old_uid: int, new_uid: int) -> None:
        """Give a workspace's files to `new_uid` (blocking; call it from a thread)."""

    async def purge_workspace(self, workspace_dir: Path, uid: int) -> None:
        """Delete a workspace's files, as `uid`, and its directories."""

    def workspace_quota_mb(self, workspace_dir: Path) -> int:
        """The size of a workspace's disk (0 when it has none yet)."""

    def workspace_disk_bytes(self, workspace_dir: Path) -> int:
        """Bytes a workspace's files take (blocking; call it from a thread)."""

    async def start(self, spec: SandboxSpec) -> Sandbox: ...

    def usage(self, group: str | None = None) -> ResourceUsage | None:
        """What the sandboxes of `group` (a `SandboxSpec.group`), or (None) all of this
        runtime's, use together (blocking; call it from a thread); None where nothing
        can be measured."""

    def forget_image(self, rootfs: Path) -> None:
        """An image's root is being deleted: drop what was prepared on it (warm sandboxes)."""

    async def run_once(self, spec: SandboxSpec, proc: ProcessSpec, io: ProcessIO) -> Process:
        """Run one process in a fresh sandbox that ends with it (the ephemeral path)."""

    async def close(self) -> None: ...
