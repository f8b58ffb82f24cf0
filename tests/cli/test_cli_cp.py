"""`chaser cp` as docker cp: files and trees both ways, sessions and workspaces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.test_cli_run import assert_one_line_error, cli_env
from tests.conftest import ServerProcess
from tests.types import Tenant


def cp(server: ServerProcess, tenant: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaser", "cp", *args], text=True,
                          env=cli_env(server.url, tenant.key), capture_output=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_cp_files_and_directories(server: ServerProcess, tenant: Tenant, tmp_path: Path) -> None:
    src = tmp_path / "proj"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "x.bin").write_bytes(os.urandom(2_000_000))
    (src / "run.sh").write_text("echo ran\n")
    (src / "run.sh").chmod(0o755)
    assert cp(server, tenant, str(src), "cpw:/workspace/proj").returncode == 0
    ran = tenant.client.post("/v1/exec", json={"workspace": "cpw", "command": "sh proj/run.sh; "
                                               "stat -c %a proj/run.sh; wc -c < proj/lib/x.bin"})
    assert ran.json()["output"] == "ran\n755\n2000000\n"
    # onto an existing directory: inside it
    assert cp(server, tenant, str(src), "cpw:proj").returncode == 0
    assert tenant.client.get("/v1/workspaces/cpw/files",
                             params={"path": "proj/proj/run.sh"}).status_code == 200
    out = tmp_path / "out"
    r = cp(server, tenant, "cpw:proj/lib/x.bin", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (src / "lib" / "x.bin").read_bytes()
    assert cp(server, tenant, "cpw:/workspace/proj", str(tmp_path / "back")).returncode == 0
    back = tree(tmp_path / "back")
    assert {k: v for k, v in back.items() if not k.startswith("proj/")} == tree(src)
    (tmp_path / "into").mkdir()
    assert cp(server, tenant, "cpw:proj/lib", str(tmp_path / "into")).returncode == 0
    assert (tmp_path / "into" / "lib" / "x.bin").stat().st_size == 2_000_000
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    assert cp(server, tenant, str(src / "run.sh"), f"{sid}:/tmp/").returncode == 0
    assert tenant.client.get(f"/v1/sessions/{sid}/files",
                             params={"path": "/tmp/run.sh"}).content == b"echo ran\n"
    assert_one_line_error(cp(server, tenant, "cpw:nope", str(tmp_path / "n")))
    assert_one_line_error(cp(server, tenant, str(tmp_path / "nope"), "cpw:x"))
    assert cp(server, tenant, "a", "b").returncode == 2


def test_cp_of_a_link_to_a_directory_copies_the_directory(server: ServerProcess,
                                                           tenant: Tenant,
                                                           tmp_path: Path) -> None:
    """As `docker cp` follows the path it is given: the directory's files arrive under
    the link's name, never an empty copy."""
    made = tenant.client.post("/v1/exec", json={"workspace": "cpl", "command":
                                                "mkdir -p real/sub && echo a > real/sub/a && "
                                                "ln -s real link"})
    assert made.json()["exit_code"] == 0, made.text
    r = cp(server, tenant, "cpl:/workspace/link", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "out") == {"sub/a": b"a\n"}
