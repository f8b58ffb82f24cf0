"""Operations: online backup and restore, the systemd unit the installer writes."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent.parent


def test_backup_while_running_then_restore_elsewhere(tmp_root: Path) -> None:
    base = tmp_root / ("ops-" + secrets.token_hex(4))
    base.mkdir(mode=0o711)
    srv = ServerProcess(data_dir=base / "data").start()
    try:
        with srv.client() as admin:
            key = admin.post("/v1/keys", json={"name": "t"}).json()["key"]
        with srv.client(key) as c:
            r = c.post("/v1/exec", json={"workspace": "w", "command": "echo precious > f"})
            assert r.json()["exit_code"] == 0
            # the session stays running while the backup is taken
            out = subprocess.run([sys.executable, "-m", "chaser", "backup", "--data-dir",
                                  str(srv.data_dir), str(base / "copy")],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and "backed up" in out.stdout, out.stderr
            assert c.post("/v1/exec", json={"workspace": "w", "command": "cat f"}).json()[
                "output"] == "precious\n"
    finally:
        srv.stop()
    db = sqlite3.connect(base / "copy" / "chaser.db")
    assert db.execute("SELECT name FROM workspaces").fetchall() == [("w",)]
    image = next((base / "copy" / "workspaces").glob("*.img"))
    assert image.stat().st_blocks * 512 < image.stat().st_size  # still sparse
    srv.start()  # the original runs again beside its restored copy
    restored = ServerProcess(data_dir=base / "copy").start()
    try:
        with restored.client(key) as c:
            r = c.post("/v1/exec", json={"workspace": "w", "command": "cat f; echo more >> f"})
            assert r.json()["output"] == "precious\n" and r.json()["exit_code"] == 0, r.text
    finally:
        restored.stop()
        srv.stop()


def test_backup_refuses_what_is_not_a_data_dir(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "chaser", "backup", "--data-dir",
                          str(tmp_path), str(tmp_path / "dest")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "holds no Chaser database" in out.stderr
    assert "Traceback" not in out.stderr


def test_install_writes_the_systemd_unit(tmp_path: Path) -> None:
    env = {**os.environ, "SYSTEMD_UNIT_DIR": str(tmp_path)}
    out = subprocess.run(["scripts/install.sh", "--systemd"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    unit = (tmp_path / "chaser.service").read_text()
    assert f"ExecStart={ROOT}/.venv/bin/chaser server" in unit
    assert "Delegate=yes" in unit and "@PREFIX@" not in unit
