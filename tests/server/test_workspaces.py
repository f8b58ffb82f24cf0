"""Workspaces as objects: list, inspect, delete; files removed without root on host paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant


def host_dir(server: ServerProcess, tenant: Tenant, name: str) -> Path:
    marker = f".where-{name}"
    tenant.client.post("/v1/exec", json={"workspace": name, "command": f"touch {marker}"})
    return next(server.data_dir.glob(f"workspaces/*/files/{marker}")).parent.parent


def test_list_get_and_disk_used(server: ServerProcess, tenant: Tenant, new_tenant: NewTenant) -> None:
    c = tenant.client
    r = c.post("/v1/exec", json={"workspace": "big", "command":
                                 "head -c 5000000 /dev/urandom > blob"})
    assert r.json()["exit_code"] == 0
    items = c.get("/v1/workspaces").json()["workspaces"]
    big = next(w for w in items if w["name"] == "big")
    assert big["disk_bytes"] >= 5_000_000 and big["session_id"] and big["last_used_at"]
    assert c.get("/v1/workspaces/big").json()["disk_bytes"] == big["disk_bytes"]
    other = new_tenant().client
    assert other.get("/v1/workspaces/big").status_code == 404
    assert other.delete("/v1/workspaces/big").status_code == 404
    assert c.get("/v1/workspaces/nope").status_code == 404


def test_delete_refuses_a_busy_workspace_unless_forced(server: ServerProcess,
                                                       tenant: Tenant) -> None:
    c = tenant.client
    where = host_dir(server, tenant, "busy")
    r = c.delete("/v1/workspaces/busy")
    assert r.status_code == 409 and r.json()["error"]["code"] == "workspace_busy"
    r = c.delete("/v1/workspaces/busy", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert not where.exists()
    assert "busy" not in [w["name"] for w in c.get("/v1/workspaces").json()["workspaces"]]
    r = c.post("/v1/exec", json={"workspace": "busy", "command": "ls -A"}).json()
    assert r["output"] == "", r  # a new workspace of that name starts empty


def test_planted_links_and_locked_dirs_never_touch_the_host(server: ServerProcess,
                                                            tenant: Tenant) -> None:
    c = tenant.client
    victim = Path("/root") / "chaser-victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep").write_text("keep")
    where = host_dir(server, tenant, "links")
    c.post("/v1/exec", json={"workspace": "links", "command": (
        f"ln -s {victim} victim; ln -s / root; ln -s /etc ~/etc; "
        f"ln {victim}/keep hard 2>/dev/null; "
        "mkdir -p locked/deep && touch locked/deep/f && chmod 000 locked; "
        f"ln -s {where} /tmp/self")})
    c.delete("/v1/workspaces/links", params={"force": "true"})
    assert (victim / "keep").read_text() == "keep"
    assert Path("/etc/hostname").exists() and Path("/etc/passwd").exists()
    assert not where.exists()


def test_cli_workspaces_ls_and_rm(server: ServerProcess, tenant: Tenant) -> None:
    tenant.client.post("/v1/exec", json={"workspace": "cli-ws", "command": "true"})
    env = {**os.environ, "CHASER_API_URL": server.url, "CHASER_API_KEY": tenant.key}
    cli = [sys.executable, "-m", "chaser", "workspaces"]
    out = subprocess.run([*cli, "ls", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "cli-ws" in [w["name"] for w in json.loads(out.stdout)]
    out = subprocess.run([*cli, "rm", "cli-ws"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "running" in out.stderr  # a session runs on it
    out = subprocess.run([*cli, "rm", "cli-ws", "--force"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "cli-ws deleted" in out.stdout, out.stderr
