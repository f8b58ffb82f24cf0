"""The server's sandbox cap, derived from what the host holds (capacity.py)."""

from __future__ import annotations

import resource
from pathlib import Path

from chaser.config import Settings
from chaser.core.capacity import IDLE_SANDBOX_MB, connection_cap, host_capacity, raise_fd_limit
from chaser.core.quotas import Ledger


def test_the_cap_is_the_scarcest_resource_at_an_idle_sandbox_s_cost() -> None:
    by_memory = host_capacity(memory_mb=24576, fd_limit=1 << 20, pids_budget=1 << 22)
    assert by_memory.sandboxes == 24576 * 3 // 4 // IDLE_SANDBOX_MB == 9216
    # Half the descriptors for sandboxes (3 each), half for running commands (5 each).
    few_fds = host_capacity(24576, fd_limit=20000, pids_budget=1 << 22)
    assert (few_fds.sandboxes, few_fds.commands) == (9488 // 3, 9488 // 5) == (3162, 1897)
    assert host_capacity(24576, fd_limit=1 << 20, pids_budget=1 << 22).commands == 4096
    assert host_capacity(24576, fd_limit=1 << 20, pids_budget=16384).sandboxes == 8192
    assert host_capacity(64, fd_limit=100, pids_budget=1).sandboxes == 1  # never zero
    assert "file descriptors 3162" in few_fds.describe()


def test_the_server_derives_its_cap_and_a_setting_wins(tmp_path: Path) -> None:
    derived = Ledger.for_host(Settings(data_dir=tmp_path))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == raise_fd_limit()  # raised once, to the hard limit
    assert derived.max_sandboxes > 256 or soft < 2048  # the old fixed cap, outgrown
    assert derived.server_limits()["sandboxes"] == derived.max_sandboxes
    assert derived.defaults().max_sandboxes == derived.max_sandboxes // 4  # the tenant share
    fixed = Ledger.for_host(Settings(data_dir=tmp_path, max_sandboxes=40,
                                     max_running_commands=100))
    assert fixed.max_sandboxes == 40 and fixed.defaults().max_sessions == 10
    assert fixed.server_limits()["commands"] == 100 and fixed.defaults().max_commands == 25


def test_connections_are_taken_out_of_the_descriptors_first() -> None:
    assert connection_cap(20000) == 2500 and connection_cap(1 << 20) == 16384
    assert connection_cap(20000, 7) == 7  # the setting wins
    shared = host_capacity(24576, fd_limit=20000, pids_budget=1 << 22, connections=2500)
    assert (shared.sandboxes, shared.commands) == (8238 // 3, 8238 // 5)
