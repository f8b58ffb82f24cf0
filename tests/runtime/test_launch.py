"""The sandbox launcher (launch.c): the root-run process between the server and bwrap.

Run here for real, as root, on a program that reports what it was given: its uid, its
groups and capabilities, its priority and its cgroups.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaser.runtime import agent_build
from chaser.runtime.cgroups import CgroupManager, ResourceLimits

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the launcher is run by root")

UID = 1_999_999  # no account on the host: nothing of anyone's
REPORT = ("grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status; "
          "echo files=$(ulimit -n); cat /proc/self/cgroup")


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = agent_build.build_launcher(tmp_path_factory.mktemp("launch"))
    assert built is not None, "the launcher was not built (gcc and libc6-dev are installed)"
    return built


@pytest.fixture
def cgroups() -> Iterator[CgroupManager]:
    mgr = CgroupManager.detect("test-" + os.urandom(4).hex())
    if mgr.version == "none":
        pytest.skip("no usable cgroup controllers on this host")
    yield mgr
    mgr.close()


def launch(launcher: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(launcher), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/")


def test_the_program_runs_in_its_cgroups_as_the_uid_with_no_privilege_left(
        launcher: Path, cgroups: CgroupManager) -> None:
    cg = cgroups.create("sbx", ResourceLimits(pids=16))
    assert cg is not None
    procs = [str(f) for f in cg.procs_files]
    r = launch(launcher, str(UID), *procs, "--", "/bin/sh", "-c", REPORT)
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line
                  and not line[0].isdigit())
    assert status["Uid"].split() == [str(UID)] * 4 and status["Gid"].split() == [str(UID)] * 4
    assert status["Groups"].strip() == ""
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert "files=1024" in r.stdout  # not the server's raised limit
    cgroup_lines = [line for line in r.stdout.splitlines() if line[:1].isdigit()]
    for d in cg.dirs:  # in each of the sandbox's cgroups (v1: one per controller)
        assert any(line.endswith("/" + d.relative_to(d.parents[2]).as_posix())
                   for line in cgroup_lines), (d, cgroup_lines)


def test_a_cgroup_it_cannot_join_stops_the_launch_before_the_program(
        launcher: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = launch(launcher, str(UID), "/sys/fs/cgroup/no-such/cgroup.procs", "--",
               "/bin/touch", str(marker))
    assert r.returncode == 126 and "cannot join the cgroup" in r.stderr
    assert not marker.exists()


def test_only_cgroup_procs_files_on_a_cgroup_filesystem_are_written(
        launcher: Path, tmp_path: Path) -> None:
    """It runs as root: a path that is not a cgroup's must never be written to."""
    fake = tmp_path / "cgroup.procs"
    fake.write_text("untouched\n")
    other = tmp_path / "passwd"
    other.write_text("untouched\n")
    for path, why in ((fake, "not on a cgroup filesystem"), (other, "not a cgroup.procs file")):
        r = launch(launcher, str(UID), str(path), "--", "/bin/true")
        assert r.returncode == 126 and why in r.stderr, r.stderr
        assert path.read_text() == "untouched\n"


@pytest.mark.parametrize("args, why", [
    (["0", "--", "/bin/true"], "bad uid"),  # never root
    (["-5", "--", "/bin/true"], "bad uid"),
    (["1000x", "--", "/bin/true"], "bad uid"),
    ([str(UID), "--"], "usage"),
    ([str(UID), "/bin/true", "/bin/true"], "no program after --"),
])
def test_bad_arguments_are_refused(launcher: Path, args: list[str], why: str) -> None:
    r = launch(launcher, *args)
    assert r.returncode == 126 and why in r.stderr, r.stderr


def test_it_refuses_to_run_for_anyone_but_root(launcher: Path, tmp_path: Path) -> None:
    copy = tmp_path / "launch"
    copy.write_bytes(launcher.read_bytes())
    copy.chmod(0o755)
    tmp_path.chmod(0o755)
    r = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                        str(copy), str(UID), "--", "/bin/true"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 126 and "must be started by root" in r.stderr
