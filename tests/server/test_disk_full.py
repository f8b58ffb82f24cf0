"""A full data dir is an error, never silent loss, and the server recovers by itself.

The data dir sits on a small tmpfs the test mounts, which a filler file then fills.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess


@pytest.fixture
def small_fs(tmp_root: Path) -> Iterator[Path]:
    mnt = tmp_root / ("full-" + secrets.token_hex(4))
    mnt.mkdir(mode=0o711)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0711", "chaser-full", str(mnt)],
                   check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> None:
    """Take every free byte of `fs` (unbuffered, in ever smaller writes)."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def test_a_full_disk_fails_clearly_and_recovers(small_fs: Path) -> None:
    srv = ServerProcess(data_dir=small_fs / "data", extra_env={"CHASER_WARM_POOL": "0"}).start()
    try:
        with srv.client() as admin:
            key = admin.post("/v1/keys", json={"name": "t"}).json()["key"]
        c = srv.client(key)
        sid = c.post("/v1/sessions", json={}).json()["id"]
        idle = c.post("/v1/sessions", json={"idle_timeout_s": 2}).json()["id"]
        bg = c.post(f"/v1/sessions/{sid}/exec", json={
            "command": "while :; do head -c 100000 /dev/zero; sleep 0.05; done",
            "background": True}).json()["command_id"]
        fill(small_fs)

        r = c.post("/v1/exec", json={"ephemeral": True, "command": "head -c 3000000 /dev/zero"})
        assert r.status_code == 507 and r.json()["error"]["code"] == "storage_full", r.text
        assert "Retry-After" in r.headers
        r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "head -c 3000000 /dev/zero"})
        assert r.status_code == 507, r.text
        r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30", "background": True})
        assert r.status_code in (201, 507), r.text
        assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200

        # Nothing is left "running" without a process; the chatty one was ended.
        deadline = time.monotonic() + 10
        while True:
            cmds = c.get(f"/v1/sessions/{sid}/commands").json()["commands"]
            chatty = next(x for x in cmds if x["id"] == bg)
            if chatty["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert chatty["status"] == "killed" and chatty["end_reason"] == "storage_full", chatty
        # Idle sessions still end.
        deadline = time.monotonic() + 10
        while c.get(f"/v1/sessions/{idle}").json()["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.2)

        os.unlink(small_fs / "filler")
        r = c.post(f"/v1/sessions/{sid}/exec", json={
            "command": "pgrep -f 'head -c 10000[0]' || echo back"})  # its tree is gone too
        assert r.status_code == 200 and r.json()["output"] == "back\n", r.text
        r = c.post("/v1/exec", json={"ephemeral": True, "command": "echo back"})
        assert r.status_code == 200 and r.json()["output"] == "back\n", r.text
        assert shutil.disk_usage(small_fs).free > 0
    finally:
        srv.stop()
    # What could not be stored while the disk was full was stored once it was not.
    srv.start()
    try:
        with srv.client(key) as c:
            assert c.get(f"/v1/sessions/{idle}").json()["end_reason"] == "idle_timeout"
            cmds = c.get(f"/v1/sessions/{sid}/commands").json()["commands"]
            assert next(x for x in cmds if x["id"] == bg)["end_reason"] == "storage_full"
    finally:
        srv.stop()
