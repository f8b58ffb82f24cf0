"""A one-shot sandbox's command: the sandbox's only process, ended with it.

The command runs under a fixed wrapper (the request's command arrives in bwrap's
option file as an environment variable, never in a host argv), and bwrap's JSON status
pipe says whether the command ran at all: a setup failure (a cwd missing inside the
sandbox) is told apart from the command's own exit 1, which the command cannot fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from chaser.runtime.base import ExitStatus
from chaser.runtime.cgroups import Cgroup

# The one-shot wrapper: the command reaches the sandbox in an environment variable
# (argv is visible to every host user); positional parameters, never exported, carry it
# past the `unset`, so the command's environment is exactly the request's.
# A command of the largest size (one argv string, 128 KiB) does not fit one environment
# string beside its name, so it travels in two halves that the wrapper joins.
ONESHOT_WRAPPER = ('set -- "$__SANDBOX_SHELL" "$__SANDBOX_CMD$__SANDBOX_CMD2"; '
                   'unset __SANDBOX_SHELL __SANDBOX_CMD __SANDBOX_CMD2; umask 022; '
                   'exec "$1" -c "$2"')


def command_env(shell: str, command: str) -> dict[str, str]:
    """The wrapper's variables for `command` (in two halves, each well under the limit)."""
    half = len(command) // 2
    return {"__SANDBOX_SHELL": shell, "__SANDBOX_CMD": command[:half],
            "__SANDBOX_CMD2": command[half:]}


def read_all(fd: int) -> bytes:
    """Read a pipe to its end and close it (bwrap's status: a few hundred bytes)."""
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    finally:
        os.close(fd)
    return data


def read_now(fd: int) -> bytes | None:
    """Read a pipe to its end and close it if its end is already there (None, and the
    fd left open, when its writer is still alive): no thread hop in the usual case."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        os.set_blocking(fd, True)
        return None
    os.close(fd)
    return data


class OneShotProcess:
    """The command of an ephemeral sandbox: bwrap's exit status is the command's."""

    def __init__(self, proc: asyncio.subprocess.Process, cgroup: Cgroup | None,
                 status_fd: int) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self.status_fd = status_fd
        self._killed = False
        self.pid: int | None = None
        self._status: ExitStatus | None = None

    async def wait(self) -> ExitStatus:
        if self._status is None:
            rc = await self.proc.wait()
            # bwrap wrote its status and exited; only a sandbox process still dying may
            # hold the pipe a moment longer.
            status = read_now(self.status_fd)
            if status is None:
                status = await asyncio.to_thread(read_all, self.status_fd)
            if self.cgroup is not None:
                # Off the request's path: rmdir waits until the kernel lets the cgroup go.
                self.cgroup.remove_later()
            if rc == 1 and b'"exit-code"' not in status and not self._killed:
                # bwrap failed before the command ran, so its stderr (the command's) holds
                # only bwrap's reason and the command cannot fake this.
                self._status = ExitStatus(1, None, setup_failed=True)
                return self._status
            # bwrap reports a command killed by signal N as 128+N, as a shell does; that
            # cannot be told from `exit 137`, so it stays an exit code. Only bwrap's own
            # death (our timeout kill) is a signal.
            self._status = ExitStatus(None, -rc) if rc < 0 else ExitStatus(rc, None)
        return self._status

    def signal(self, signum: int) -> None:
        """Any signal ends the whole one-shot sandbox (it is only used for timeouts)."""
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_later()
