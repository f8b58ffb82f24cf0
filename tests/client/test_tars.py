"""Extracting downloaded tars (they come from a hostile sandbox): crafted archives fed
to the SDK's extractor, and a hostile tree made by a sandbox, downloaded for real."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import chaser
from chaser import Client
from chaser.client._tars import extract_chunks
from tests.conftest import ServerProcess
from tests.types import Tenant

Member = tuple[str, bytes, str, int]  # name, type, link target or content, mode


def _tar(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, text, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, mode
            data = None
            if kind == tarfile.REGTYPE:
                data = text.encode()
                info.size = len(data)
            elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = text
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _extract(members: list[Member], dest: Path, strip_top: bool = False) -> None:
    data = _tar(members)
    extract_chunks(iter([data[i:i + 700] for i in range(0, len(data), 700)]), dest,
                   strip_top=strip_top)


def _file(name: str, text: str = "x", mode: int = 0o644) -> Member:
    return (name, tarfile.REGTYPE, text, mode)


def _link(name: str, target: str) -> Member:
    return (name, tarfile.SYMTYPE, target, 0o777)


HOSTILE: dict[str, list[Member]] = {
    "absolute name": [_file("/tmp/chaser-evil")],
    "dotdot": [_file("../evil")],
    "inner dotdot": [_file("a/../../evil")],
    "absolute symlink": [_link("l", "/etc")],
    "symlink climbing out": [_link("a/l", "../../out")],
    "symlink chain out": [_link("d/l", ".."), _link("d/x", "l/../..")],
    "member under an archive symlink": [("sub", tarfile.DIRTYPE, "", 0o755),
                                        _link("l", "sub"), _file("l/x")],
    "file written through a symlink": [_file("t"), _link("l", "t"), _file("l", "new")],
    "hard link out": [("h", tarfile.LNKTYPE, "/etc/passwd", 0o644)],
    "hard link to no file of it": [("h", tarfile.LNKTYPE, "nope", 0o644)],
    "hard link to a symlink": [_link("l", "."), ("h", tarfile.LNKTYPE, "l", 0o644)],
    "character device": [("c", tarfile.CHRTYPE, "", 0o644)],
    "fifo": [("f", tarfile.FIFOTYPE, "", 0o644)],
    "overlong name": [_file("n" * 256)],
    "overlong path": [_file("/".join(["d" * 200] * 21))],
    "empty name": [_file("./")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused(case: str, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(chaser.UnsafeArchiveError):
        _extract(HOSTILE[case], dest)
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(dest in p.parents for p in created), created  # nothing outside dest
    assert not os.path.lexists("/tmp/chaser-evil")


def test_a_symlink_already_in_dest_is_not_followed(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "pre").symlink_to(outside)
    with pytest.raises(chaser.UnsafeArchiveError):
        _extract([_file("pre/x")], dest)
    (dest / "f").symlink_to(outside / "target")
    _extract([_file("f", "mine")], dest)  # replaced, never written through
    assert (dest / "f").read_text() == "mine" and not (dest / "f").is_symlink()
    assert list(outside.iterdir()) == []


def test_benign_archives_extract_with_sane_modes(tmp_path: Path) -> None:
    _extract([("top/", tarfile.DIRTYPE, "", 0o755), ("top/a/b/", tarfile.DIRTYPE, "", 0o1777),
              _file("top/a/b/f", "data", 0o6777), _file("top/./a//g", "g"),
              _link("top/a/b/up", "../../g2"), _file("top/g2", "two"),
              _link("top/a/lib.so", "lib.so.1"), _file("top/a/lib.so.1", "lib"),
              ("top/a/hard", tarfile.LNKTYPE, "top/a/b/f", 0o4775)], tmp_path, strip_top=True)
    f = tmp_path / "a" / "b" / "f"
    assert f.read_text() == "data"
    assert stat.S_IMODE(f.stat().st_mode) == 0o755  # no setuid, setgid, group/other write
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755  # no sticky
    assert (tmp_path / "a" / "b" / "up").read_text() == "two"
    assert (tmp_path / "a" / "lib.so").read_text() == "lib"
    assert (tmp_path / "a" / "hard").stat().st_ino == f.stat().st_ino
    assert (tmp_path / "a" / "g").read_text() == "g"


def test_a_hostile_sandbox_tree_is_refused_on_download(server: ServerProcess, tenant: Tenant,
                                                        tmp_path: Path) -> None:
    with Client(server.url, tenant.key) as c:
        s = c.sessions.create()
        for i, plant in enumerate(["ln -s /etc d/abs", "ln -s ../../.. d/up",
                                   "ln -s .. d/l && ln -s l/../.. d/x"]):
            out = s.exec(f"rm -rf d && mkdir d && echo hi > d/a && {plant}")
            assert out.exit_code == 0, out.output
            dest = tmp_path / str(i)
            with pytest.raises(chaser.UnsafeArchiveError):
                s.files.download_dir("d", dest)
            assert {p.name for p in tmp_path.rglob("*")} <= {"0", "1", "2", "a", "l"}
        s.exec("rm -rf d && mkdir -p d/e && echo hi > d/e/a && ln -s e/a d/ok")
        s.files.download_dir("d", tmp_path / "fine")
        assert (tmp_path / "fine" / "ok").read_text() == "hi\n"
