"""Cgroup layouts: v1 runs for real on this host; v2 file writes against a stand-in tree.

The development and CI machines have a hybrid layout (v1 controllers), so the v2 path
cannot run for real here; its file names and values are checked on a directory laid
out like a cgroup2 mount instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chaser.runtime.cgroups import (
    STOCK_PER_SHAPE,
    STOCK_PREFIX,
    CgroupManager,
    ResourceLimits,
    _cgroup_mounts,
)


def fake_cgroup2(root: Path, instance: str) -> Path:
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    for d in (root, root / "chaser", root / "chaser" / instance):
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.subtree_control").write_text("")
    return root


def test_v2_limits_are_written_as_the_kernel_expects(tmp_path: Path) -> None:
    root = fake_cgroup2(tmp_path, "inst")
    mgr = CgroupManager.detect("inst", mounts={"cgroup2": root})
    assert mgr.version == "v2" and set(mgr.enforced) == {"memory", "pids", "cpu"}
    cg = mgr.create("ses_1", ResourceLimits(memory_bytes=256 * 2**20, pids=64, cpus=0.5))
    assert cg is not None
    d = root / "chaser" / "inst" / "ses_1"
    assert (d / "memory.max").read_text() == str(256 * 2**20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "64"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert cg.procs_files == [d / "cgroup.procs"]


def test_v2_without_controllers_falls_back(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    mgr = CgroupManager.detect("inst", mounts={"cgroup2": tmp_path})
    assert mgr.version == "none" and mgr.enforced == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make cgroups")
def test_host_layout_enforces_limits_for_real() -> None:
    mounts = _cgroup_mounts()
    mgr = CgroupManager.detect("test-" + os.urandom(4).hex())
    if mgr.version == "none":
        pytest.skip(f"no usable cgroup controllers on this host: {mounts}")
    cg = mgr.create("sbx", ResourceLimits(memory_bytes=64 * 2**20, pids=32, cpus=1.0))
    assert cg is not None
    try:
        if mgr.version == "v1":
            mem = next(d for d in cg.dirs if "memory" in str(d))
            assert int((mem / "memory.limit_in_bytes").read_text()) == 64 * 2**20
        assert all(f.exists() for f in cg.procs_files)
    finally:
        cg.remove()
        for root in set(mgr.roots.values()):
            root.rmdir()
    assert not any(d.exists() for d in cg.dirs)


def test_v2_groups_and_the_instance_cap_are_written(tmp_path: Path) -> None:
    root = fake_cgroup2(tmp_path, "inst")
    mgr = CgroupManager.detect("inst", mounts={"cgroup2": root})
    mgr.limit_all(ResourceLimits(memory_bytes=2**30, pids=1000))
    inst = root / "chaser" / "inst"
    assert (inst / "pids.max").read_text() == "1000"
    assert (inst / "memory.max").read_text() == str(2**30)
    (inst / "t_1").mkdir()
    (inst / "t_1" / "cgroup.subtree_control").write_text("")
    cg = mgr.create("ses_2", ResourceLimits(pids=64), "t_1", ResourceLimits(pids=200))
    assert cg is not None and cg.procs_files == [inst / "t_1" / "ses_2" / "cgroup.procs"]
    assert (inst / "t_1" / "pids.max").read_text() == "200"
    assert (inst / "t_1" / "ses_2" / "pids.max").read_text() == "64"
    assert "+pids" in (inst / "t_1" / "cgroup.subtree_control").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make cgroups")
def test_cgroups_made_ahead_are_renamed_to_their_sandbox_and_closing_removes_all() -> None:
    mgr = CgroupManager.detect("test-" + os.urandom(4).hex())
    if mgr.version == "none":
        pytest.skip("no usable cgroup controllers on this host")
    limits = ResourceLimits(memory_bytes=96 * 2**20, pids=40)
    group = ResourceLimits(pids=500)
    try:
        assert mgr.take("eph_first", limits, "t_x", group) is None  # nothing in stock yet
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # restocked on the cleanup threads
            stocked = [d for root in set(mgr.roots.values())
                       for d in (root / "t_x").glob(STOCK_PREFIX + "*")]
            if len(stocked) >= STOCK_PER_SHAPE * len(set(mgr.roots.values())):
                break
            time.sleep(0.05)
        cg = mgr.take("eph_second", limits, "t_x", group)
        assert cg is not None and all(d.name == "eph_second" and d.parent.name == "t_x"
                                      for d in cg.dirs)
        if mgr.version == "v1":
            mem = next(d for d in cg.dirs if "memory" in str(d))
            pids = next(d for d in cg.dirs if "pids" in str(d))
            assert int((mem / "memory.limit_in_bytes").read_text()) == 96 * 2**20
            assert (pids / "pids.max").read_text().strip() == "40"
            assert (pids.parent / "pids.max").read_text().strip() == "500"
        # Another shape gets cgroups of its own limits, never the first shape's.
        other = ResourceLimits(memory_bytes=128 * 2**20, pids=41)
        assert mgr.take("eph_third", other, "t_x", group) is None
    finally:
        mgr.close()
    assert not any(root.exists() for root in mgr.roots.values())
