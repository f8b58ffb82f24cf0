"""The SDK's files API end to end, sync and async: bytes, streams, trees, typed errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import chaser
from chaser import AsyncClient, Client
from tests.conftest import ServerProcess
from tests.types import Tenant


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _make_tree(root: Path) -> None:
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "deep" / "blob.bin").write_bytes(os.urandom(300_000))
    (root / "README").write_text("readme")


def test_sync_files(server: ServerProcess, tenant: Tenant, tmp_path: Path) -> None:
    with Client(server.url, tenant.key) as c:
        s = c.sessions.create()
        f = s.files
        assert f.write("a/b.bin", b"\x00\xff", mode=0o600).size == 2
        assert f.read("a/b.bin") == b"\x00\xff"
        assert [(e.name, e.type, e.mode) for e in f.list("a")] == [("b.bin", "file", 0o600)]
        big = os.urandom(5 * 1024 * 1024)
        assert f.write("big", iter([big[:1 << 20], big[1 << 20:]])).size == len(big)
        with f.iter_read("big", start=10, end=19) as chunks:
            assert b"".join(chunks) == big[10:20]
        assert f.download("big", tmp_path / "big") == len(big)
        assert hashlib.sha256((tmp_path / "big").read_bytes()).digest() == \
            hashlib.sha256(big).digest()
        _make_tree(tmp_path / "tree")
        assert f.upload_dir(tmp_path / "tree", "proj").files == 5
        f.download_dir("proj", tmp_path / "back")
        assert _tree(tmp_path / "back") == _tree(tmp_path / "tree")
        assert f.stat("proj") is not None and f.stat("proj/README").type == "file"  # type: ignore[union-attr]
        assert f.stat("missing") is None
        with pytest.raises(chaser.NotFoundError):
            f.read("missing")
        with pytest.raises(chaser.ConflictError):
            f.read("proj")
        with pytest.raises(chaser.ConflictError):
            f.delete("proj")
        f.delete("proj", recursive=True)
        assert not f.exists("proj")
        ws = c.workspaces.files("sdk-files")
        ws.mkdir("d")
        ws.upload(tmp_path / "tree" / "README", "d/R")
        assert ws.read_text("d/R") == "readme"
        s.delete()


async def test_async_files(server: ServerProcess, tenant: Tenant, tmp_path: Path) -> None:
    async with AsyncClient(server.url, tenant.key) as c:
        s = await c.sessions.create()
        f = s.files

        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield bytes([i]) * 100_000
        assert (await f.write("x", parts())).size == 300_000
        async with f.iter_read("x", start=99_999, end=100_000) as chunks:
            assert b"".join([c async for c in chunks]) == b"\x00\x01"
        _make_tree(tmp_path / "tree")
        assert (await f.upload_dir(tmp_path / "tree", "/tmp/p")).files == 5
        await f.download_dir("/tmp/p", tmp_path / "back")
        assert _tree(tmp_path / "back") == _tree(tmp_path / "tree")
        assert await f.download("x", tmp_path / "x") == 300_000
        with pytest.raises(chaser.NotFoundError):
            await f.read("nope")
        ws = c.workspaces.files("sdk-async-files")
        await ws.upload(tmp_path / "x", "x")
        assert len(await ws.read("x")) == 300_000
        await s.delete()
