"""The default image's prepared root."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaser.runtime.bwrap import AGENT_PATH
from chaser.runtime.images import build_default_root


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_default_root(tmp_path_factory.mktemp("img") / "rootfs", AGENT_PATH)


def test_prepared_root_holds_only_the_allowlist(rootfs: Path) -> None:
    etc = {p.name for p in (rootfs / "etc").iterdir()}
    assert {"passwd", "group", "hosts", "ld.so.cache"} <= etc
    assert not etc & {"shadow", "gshadow", "sudoers", "ssh", "machine-id"}
    assert "root:x:0:0" in (rootfs / "etc" / "passwd").read_text()
    assert not (rootfs / "etc" / "ssl" / "private").exists()
