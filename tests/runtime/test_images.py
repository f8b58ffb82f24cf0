"""Which directories exist in a fresh default-image sandbox (checked before it starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaser.runtime.bwrap import AGENT_PATH
from chaser.runtime.images import build_default_root, dir_in_fresh_sandbox


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_default_root(tmp_path_factory.mktemp("img") / "rootfs", AGENT_PATH)


@pytest.mark.parametrize("path,exists", [
    ("/", True), ("/workspace", True), ("/tmp", True), ("/home/user", True), ("/etc", True),
    ("/etc/ssl", True), ("/usr/lib", True), ("/bin", True), ("/var/tmp", True),
    ("/workspace/..", True), ("/proc", True),
    ("/tmp/x", False), ("/workspace/src", False), ("/no/such", False), ("/usr/nope", False),
    ("/var/tmp/x", False), ("/root", False), ("/etc/ssl/private", False),
])
def test_dir_in_fresh_sandbox(rootfs: Path, path: str, exists: bool) -> None:
    assert dir_in_fresh_sandbox(rootfs, path) is exists


def test_prepared_root_holds_only_the_allowlist(rootfs: Path) -> None:
    etc = {p.name for p in (rootfs / "etc").iterdir()}
    assert {"passwd", "group", "hosts", "ld.so.cache"} <= etc
    assert not etc & {"shadow", "gshadow", "sudoers", "ssh", "machine-id"}
    assert "root:x:0:0" in (rootfs / "etc" / "passwd").read_text()
    assert not (rootfs / "etc" / "ssl" / "private").exists()
