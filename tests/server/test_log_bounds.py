"""Kept output is bounded per session, per tenant and in total; purge drops it at once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

MB = 1_000_000


@pytest.fixture
def tight(tmp_root: Path) -> Iterator[ServerProcess]:
    data = tmp_root / ("logs-" + secrets.token_hex(4)) / "data"
    data.parent.mkdir(mode=0o711)
    srv = ServerProcess(data_dir=data, extra_env={
        "CHASER_MAX_SESSION_LOG_BYTES": str(8 * MB), "CHASER_MAX_TENANT_LOG_BYTES": str(12 * MB)})
    yield srv.start()
    srv.stop()


def tenant(srv: ServerProcess) -> httpx.Client:
    with srv.client() as admin:
        return srv.client(admin.post("/v1/keys", json={"name": "t"}).json()["key"])


def chatter(c: httpx.Client, sid: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = c.post(f"/v1/sessions/{sid}/exec", json={"command": "head -c 3000000 /dev/zero",
                                                     "max_output_bytes": 0})
        assert r.status_code == 200, r.text
        ids.append(r.json()["command_id"])
        time.sleep(0.05)  # distinct ages
    return ids


def kept(c: httpx.Client, sid: str, cid: str) -> int:
    cmd = c.get(f"/v1/sessions/{sid}/commands/{cid}", params={"limit": 0}).json()
    assert cmd["output_size"] == 3 * MB  # offsets keep their meaning
    return int(cmd["output_size"] - cmd["output_start"])


def settle(c: httpx.Client, sid: str, cids: list[str], bound: int) -> list[int]:
    deadline = time.monotonic() + 15
    while True:
        sizes = [kept(c, sid, cid) for cid in cids]
        if sum(sizes) <= bound or time.monotonic() > deadline:
            return sizes
        time.sleep(0.5)


def test_a_session_keeps_its_newest_output_within_its_bound(tight: ServerProcess) -> None:
    c = tenant(tight)
    sid = c.post("/v1/sessions", json={}).json()["id"]
    cids = chatter(c, sid, 4)
    sizes = settle(c, sid, cids, 8 * MB)
    assert sum(sizes) <= 8 * MB, sizes
    assert sizes[0] == 0 and sizes[-1] == 3 * MB, sizes  # the oldest went first


def test_a_tenant_is_bounded_across_its_sessions(tight: ServerProcess) -> None:
    c = tenant(tight)
    a, b = (c.post("/v1/sessions", json={}).json()["id"] for _ in range(2))
    ca, cb = chatter(c, a, 2), chatter(c, b, 3)
    deadline = time.monotonic() + 15
    while True:
        total = sum(kept(c, a, x) for x in ca) + sum(kept(c, b, x) for x in cb)
        if total <= 12 * MB or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert total <= 12 * MB
    assert kept(c, a, ca[0]) == 0  # the tenant's oldest output went first


def test_delete_with_purge_drops_output_at_once(tight: ServerProcess) -> None:
    c = tenant(tight)
    sid = c.post("/v1/sessions", json={}).json()["id"]
    cids = chatter(c, sid, 1)
    r = c.delete(f"/v1/sessions/{sid}", params={"purge": "true"})
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    assert kept(c, sid, cids[0]) == 0
    r = c.get(f"/v1/sessions/{sid}/commands/{cids[0]}/stream")
    assert "event: exit" in r.text and "event: output" not in r.text


def test_running_commands_cannot_keep_a_tenant_over_its_bound(tight: ServerProcess) -> None:
    c = tenant(tight)
    sid = c.post("/v1/sessions", json={}).json()["id"]
    cids = [c.post(f"/v1/sessions/{sid}/exec", json={
        "command": "head -c 4000000 /dev/zero; sleep 60", "background": True}).json()[
        "command_id"] for _ in range(4)]
    deadline = time.monotonic() + 20
    while True:
        cmds = [c.get(f"/v1/sessions/{sid}/commands/{x}", params={"limit": 0}).json()
                for x in cids]
        held = sum(x["output_size"] - x["output_start"] for x in cmds)
        if (held <= 12 * MB and all(x["output_size"] == 4 * MB for x in cmds)) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert held <= 12 * MB and all(x["status"] == "running" for x in cmds), cmds
