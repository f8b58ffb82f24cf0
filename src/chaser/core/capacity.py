"""How many sandboxes this host can hold: the server's sandbox cap, derived.

An idle sandbox costs the host about 0.9 MB all told (its bwrap and the static agent,
0.2 MB PSS, plus the kernel's namespaces, mounts, cgroups and page tables; measured by
bench/idle.py with 2,000 idle sessions), held to at most `IDLE_SANDBOX_MB`. The cap
is the smallest of what the host's memory, the server's file descriptors and the
kernel's process ids allow at that cost, each with room kept for the host and for
sandboxes that do more than idle. `max_sandboxes` set by hand wins.

Running commands are capped the same way (each holds a few descriptors), at most 4096.
Client connections come first: an eighth of the descriptors (at most 16384, or the
`max_connections` setting), taken out before the rest is shared, so sandboxes, commands
and connections all at their caps still leave the reserve (the server never runs out
of descriptors: it would fail to accept clients and to open logs).

The cap bounds the count only: what sandboxes may use is held by their memory and
process limits (admitted against the memory budget, enforced by cgroups).
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("chaser.core")

IDLE_SANDBOX_MB = 2  # the footprint an idle sandbox is held to (bench/idle.py measures it)
HOST_RESERVE = 0.25  # of memory, kept for the host, the server and busy sandboxes
FDS_PER_SANDBOX = 3  # its agent's socket, bwrap's stderr pipe and its pidfd
FDS_PER_COMMAND = 5  # its stdout and stderr pipes, stdin's, and its log's two files
FDS_RESERVE = 1024  # for clients, logs, the store and images
MAX_COMMANDS = 4096  # running commands, all tenants, however many fds there are
PIDS_PER_SANDBOX = 2  # bwrap and the agent of an idle session
MAX_CONNECTIONS = 16384  # client connections, however many fds there are


@dataclass(frozen=True)
class Capacity:
    """The sandbox cap and what each resource allows, and the running-command cap."""

    by_memory: int
    by_fds: int
    by_pids: int
    commands: int

    @property
    def sandboxes(self) -> int:
        return max(1, min(self.by_memory, self.by_fds, self.by_pids))

    def describe(self) -> str:
        return (f"{self.sandboxes} sandboxes (memory allows {self.by_memory}, file "
                f"descriptors {self.by_fds}, process ids {self.by_pids}) and "
                f"{self.commands} running commands")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (thousands of sandboxes
    each hold a few descriptors); returns the limit now in force. Sandboxes start with
    the usual 1024 again (the launcher sets it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return int(hard if soft == resource.RLIM_INFINITY else soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return int(hard)
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, e)
        return int(soft)


def connection_cap(fd_limit: int, setting: int | None = None) -> int:
    """Client connections the server keeps open at once: `setting` when given, else an
    eighth of `fd_limit` (at most MAX_CONNECTIONS)."""
    return setting or max(1, min(MAX_CONNECTIONS, fd_limit // 8))


def host_capacity(memory_mb: int, fd_limit: int, pids_budget: int,
                  connections: int = 0) -> Capacity:
    """The caps for a host with `memory_mb` of memory, `fd_limit` open files for the
    server (`connections` of them kept for clients) and `pids_budget` process ids for
    sandboxes. The descriptors left go half to sandboxes, half to running commands: all
    at once never run the server out of descriptors (it would fail to accept clients)."""
    fds = max(0, fd_limit - FDS_RESERVE - connections) // 2
    return Capacity(
        by_memory=int(memory_mb * (1 - HOST_RESERVE)) // IDLE_SANDBOX_MB,
        by_fds=fds // FDS_PER_SANDBOX,
        by_pids=pids_budget // PIDS_PER_SANDBOX,
        commands=max(1, min(MAX_COMMANDS, fds // FDS_PER_COMMAND)))
