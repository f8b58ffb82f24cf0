"""Disk quotas held by the kernel: a workspace's own disk, tmpfs sizes without one."""

from __future__ import annotations

from tests.conftest import ServerProcess
from tests.types import Tenant


def run(tenant: Tenant, sid: str, command: str) -> dict[str, object]:
    r = tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": command,
                                                             "timeout_ms": 60000})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_workspace_cannot_write_past_its_quota(server: ServerProcess, tenant: Tenant) -> None:
    sid = tenant.client.post("/v1/sessions", json={"workspace": "quota",
                                                   "limits": {"disk_mb": 64}}).json()["id"]
    r = run(tenant, sid, "head -c 200000000 /dev/zero > /workspace/big; echo rc=$?")
    assert "No space left on device" in str(r["output"]) and "rc=1" in str(r["output"]), r
    r = run(tenant, sid, "head -c 200000000 /dev/zero > /tmp/big; "
                         "head -c 200000000 /dev/zero > ~/big; "
                         "df -m --output=used /workspace /tmp ~ | tail -n +2")
    used = [int(n) for n in str(r["output"]).split() if n.isdigit()]
    assert len(used) == 3 and max(used) <= 64, r  # /tmp and home share the one disk
    r = run(tenant, sid, "rm -f /workspace/big /tmp/big ~/big; mkdir many && cd many && "
                         "i=0; while [ $i -lt 100000 ]; do printf x > f$i 2>/dev/null || break; i=$((i+1)); done; "
                         "echo files=$i")
    files = int(str(r["output"]).split("files=")[1])
    assert 1000 < files < 100000, r  # inodes run out too
    # What the host's filesystem gave the workspace: its sparse disk image's blocks
    # (the filesystem's free space moves with everything else the host writes).
    images = sorted((server.data_dir / "workspaces").glob("*.img"),
                    key=lambda p: p.stat().st_mtime)
    assert images and images[-1].stat().st_blocks * 512 < 100_000_000
    assert run(tenant, sid, "rm -rf many; echo ok > /workspace/kept; echo fine")["output"] == "fine\n"


def test_a_workspace_disk_grows_on_request_and_keeps_its_files(server: ServerProcess,
                                                               tenant: Tenant) -> None:
    c = tenant.client
    s1 = c.post("/v1/sessions", json={"workspace": "grow", "limits": {"disk_mb": 32}}).json()
    run(tenant, s1["id"], "echo keep > kept")
    refused = c.post("/v1/sessions", json={"workspace": "grow", "limits": {"disk_mb": 128}})
    assert refused.status_code == 409 and "no session runs" in refused.text, refused.text  # in use
    c.delete(f"/v1/sessions/{s1['id']}")
    s2 = c.post("/v1/sessions", json={"workspace": "grow", "limits": {"disk_mb": 128}}).json()
    r = run(tenant, s2["id"], "cat kept; head -c 80000000 /dev/zero > big && echo wrote")
    assert r["output"] == "keep\nwrote\n", r
    ws = c.get("/v1/workspaces/grow").json()
    assert ws["disk_bytes"] >= 80_000_000


def test_sandboxes_without_a_workspace_are_bounded_too(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={"ephemeral": True, "limits": {"disk_mb": 16},
                                             "command": "head -c 50000000 /dev/zero > big; "
                                                        "echo rc=$?"}).json()
    assert "No space left on device" in r["output"] and "rc=1" in r["output"], r
