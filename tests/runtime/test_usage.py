"""Reading a sandbox's use from the kernel: cgroup counters (v1 for real on this host,
v2 from a stand-in tree) and a workspace disk's filesystem counters."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from chaser.runtime.cgroups import CgroupManager, ResourceLimits
from chaser.runtime.usage import MAX_READ, cgroup_usage, disk_figures, read_file, sandbox_usage

MIB = 1024 * 1024
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, mounts)")


def v2_tree(d: Path, **files: str) -> dict[str, Path]:
    for name, text in files.items():
        (d / name.replace("_", ".", 1)).write_text(text)
    return {c: d for c in ("memory", "pids", "cpu", "cpuacct")}


def test_v2_figures_are_the_working_set_cpu_time_and_tmpfs(tmp_path: Path) -> None:
    where = v2_tree(tmp_path, memory_current="300000000\n", memory_peak="400000000\n",
                    memory_stat="anon 1000\ninactive_file 100000000\nshmem 20000000\n"
                                "file 150000000\n",
                    cpu_stat="usage_usec 2500000\nuser_usec 2000000\n", pids_current="7\n")
    u = sandbox_usage(where, "v2", None, 64 * MIB)
    assert (u.memory_bytes, u.memory_peak_bytes, u.cpu_usec, u.pids) == (
        200_000_000, 400_000_000, 2_500_000, 7)
    assert (u.disk_bytes, u.disk_limit_bytes) == (20_000_000, 64 * MIB)  # its tmpfs
    assert abs(u.sampled_at - time.time()) < 5
    group = cgroup_usage(where, "v2")
    assert group.disk_bytes is None and group.memory_bytes == 200_000_000


def test_missing_or_malformed_files_are_not_figures(tmp_path: Path) -> None:
    where = v2_tree(tmp_path, memory_current="-5\n", memory_stat="inactive_file x\n",
                    cpu_stat="user_usec 5\n", pids_current="")
    u = sandbox_usage(where, "v2", None, None)
    assert (u.memory_bytes, u.memory_peak_bytes, u.cpu_usec, u.pids) == (None, None, None,
                                                                        None)
    assert sandbox_usage({}, "none", None, None).memory_bytes is None


def test_reads_are_bounded_and_never_follow_links(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("1" * (3 * MAX_READ))
    assert len(read_file(big) or "") == MAX_READ
    (tmp_path / "link").symlink_to(big)
    assert read_file(tmp_path / "link") is None
    assert read_file(tmp_path / "absent") is None


def test_disk_figures_need_a_mount_there(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert disk_figures(plain) is None  # the data dir's own filesystem is never measured
    (tmp_path / "link").symlink_to(plain)
    assert disk_figures(tmp_path / "link") is None
    assert disk_figures(tmp_path / "absent") is None


@ROOT_ONLY
def test_disk_figures_of_a_mounted_filesystem(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "blob").write_bytes(b"x" * (2 * MIB))
        used, size = disk_figures(mnt) or (0, 0)
        assert size == 8 * MIB and 2 * MIB <= used < 3 * MIB
        u = sandbox_usage({}, "none", mnt, None)
        assert (u.disk_bytes, u.disk_limit_bytes) == (used, size)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert disk_figures(mnt) is None


@ROOT_ONLY
def test_the_hosts_cgroups_count_a_process_in_them() -> None:
    mgr = CgroupManager.detect("test-" + os.urandom(4).hex())
    if mgr.version == "none":
        pytest.skip("no usable cgroup controllers on this host")
    try:
        assert mgr.usage("t_never").pids == 0  # a group with no sandbox yet: nothing
        cg = mgr.create("sbx", ResourceLimits(memory_bytes=256 * MIB, pids=16), group="t_1")
        assert cg is not None
        joins = "".join(f"echo $$ > {f}; " for f in cg.procs_files)
        code = ("b = b'x' * (40 << 20); import time; t = time.process_time()\n"
                "while time.process_time() - t < 0.3: pass\nprint('ok', flush=True)\n"
                "time.sleep(30)")
        proc = subprocess.Popen(["sh", "-c", joins + 'exec python3 -c "$0"', code],
                                stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
            u = cg.usage()
            assert u.memory_bytes is not None and 40 * MIB <= u.memory_bytes < 256 * MIB
            assert u.memory_peak_bytes is not None and u.memory_peak_bytes >= 40 * MIB
            assert u.cpu_usec is not None and u.cpu_usec >= 250_000
            assert u.pids == 1
            group, everything = mgr.usage("t_1"), mgr.usage()
            assert group.pids == everything.pids == 1
            assert group.memory_bytes is not None and group.memory_bytes >= 40 * MIB
        finally:
            proc.kill()
            proc.wait()
        cg.remove()
        with pytest.raises(ValueError):
            mgr.usage("../escape")
    finally:
        mgr.close()
