"""Starting a sandbox's bubblewrap from the host: the one step that runs as root.

    server --(fork)--> launch (launch.c): join the sandbox's cgroups as root, become
                       the sandbox's unprivileged host uid, drop every capability
             --exec--> bwrap, its options read from a memfd (`--args`)

Without the compiled launcher (no C compiler) the same is `sh` joining the cgroups and
`setpriv` switching the uid, a few ms slower. Nothing from a request reaches the
root-run part: its environment is fixed and its argv holds only values the server chose
(a uid, cgroup paths, bwrap's path and fd numbers). Request data travels in bwrap's
option memfd and is applied by bwrap after it dropped to the sandbox's uid.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

from chaser.errors import SandboxFailed

# The only environment any host-side launcher process ever gets.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class Launcher:
    """Spawns bwrap as a sandbox's uid, inside its cgroups."""

    def __init__(self, bwrap: str, setpriv: str, launch: Path | None,
                 seccomp: bytes | None) -> None:
        self.bwrap = bwrap
        self.setpriv = setpriv
        self.launch = launch  # the compiled launcher, or None: sh and setpriv
        self.seccomp = seccomp  # the filter bwrap installs, or None

    def describe(self) -> str:
        return "launch" if self.launch else "sh+setpriv"

    async def spawn(self, uid: int, procs: list[str], options: bytes, argv: list[str], *,
                    stdin: int, stdout: int, stderr: int,
                    pass_fds: list[int]) -> asyncio.subprocess.Process:
        """bwrap with `options` (NUL-separated) running the fixed `argv`, as host `uid`,
        in the cgroups whose `cgroup.procs` files are `procs`."""
        opened: list[int] = []
        blob = options
        try:
            if self.seccomp is not None:
                blob = (b"--seccomp\0" + str(_memfd_with(self.seccomp, opened)).encode() +
                        b"\0" + blob)
            args_fd = _memfd_with(blob, opened)
        except OSError as e:  # out of file descriptors, or of memory
            for fd in opened:
                os.close(fd)
            raise SandboxFailed(f"cannot start sandbox: {e.strerror}") from None
        cmd = self._argv(uid, procs) + [self.bwrap, "--args", str(args_fd), "--", *argv]
        try:
            return await asyncio.create_subprocess_exec(
                *cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=LAUNCH_ENV, cwd="/",
                start_new_session=True, pass_fds=pass_fds + opened)
        except OSError as e:
            raise SandboxFailed(f"cannot start sandbox: {e}") from e
        finally:
            for fd in opened:
                os.close(fd)

    def _argv(self, uid: int, procs: list[str]) -> list[str]:
        """The root-run part's argv, up to bwrap's: join `procs`, become `uid` for good."""
        if self.launch is not None:
            return [str(self.launch), str(uid), *procs, "--"]
        cmd = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all", "--"]
        if procs:
            # && : a sandbox that cannot join every cgroup must not start unlimited.
            joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in procs)
            cmd = ["/bin/sh", "-c", f"{joins} && exec \"$@\"", "sh", *cmd]
        return cmd


def _memfd_with(data: bytes, opened: list[int]) -> int:
    """An in-memory file holding `data` for a child to read (any size, unlike a pipe);
    its fd is added to `opened`."""
    fd = os.memfd_create("chaser-bwrap", os.MFD_CLOEXEC)
    opened.append(fd)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
