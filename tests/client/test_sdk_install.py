"""`pip install chaser` is the SDK and the CLI: neither imports the server's packages."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("fastapi", "uvicorn", "starlette", "sse_starlette", "mcp", "prometheus_client")


def test_the_sdk_and_cli_import_nothing_of_the_server() -> None:
    code = ("import sys, chaser, chaser.client, chaser.cli.main\n"
            "from chaser.cli.main import cli\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_ONLY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out


def test_the_server_extra_is_declared() -> None:
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    base = " ".join(meta["dependencies"])
    server = " ".join(meta["optional-dependencies"]["server"])
    for name in ("fastapi", "uvicorn", "mcp"):
        assert name not in base and name in server
    assert "chaser[server]" in meta["optional-dependencies"]["dev"]


def test_the_install_script_puts_chaser_on_path(tmp_path: object) -> None:
    """scripts/install.sh links `chaser` into a directory on PATH (/usr/local/bin unless
    CHASER_BIN_DIR says otherwise); the link is made as the script makes it, into a
    directory of the test's own so no other checkout's link is touched."""
    import os
    from pathlib import Path

    root = Path(__file__).parents[2]
    script = (root / "scripts" / "install.sh").read_text()
    block = script[script.index("# `chaser` on PATH"):script.index("fi\n", script.index(
        "# `chaser` on PATH")) + 3]
    bin_dir = Path(str(tmp_path)) / "bin"
    bin_dir.mkdir()
    subprocess.run(["bash", "-c", f"set -euo pipefail; cd {root}; {block}"], check=True,
                   env={**os.environ, "CHASER_BIN_DIR": str(bin_dir)}, capture_output=True)
    link = bin_dir / "chaser"
    assert os.path.realpath(link) == os.path.realpath(root / ".venv" / "bin" / "chaser")
    out = subprocess.run([str(link), "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout


def test_a_script_beside_the_checkout_imports_the_installed_package() -> None:
    """A src/ layout: the checkout's root holds no `chaser` package to shadow the
    installed one, whatever directory a script runs in."""
    from pathlib import Path

    root = Path(__file__).parents[2]
    assert not (root / "chaser").exists() and (root / "src" / "chaser" / "__init__.py").is_file()
    for cwd in (root, root.parent):
        out = subprocess.run([sys.executable, "-c", "import chaser; print(chaser.__file__)"],
                             cwd=cwd, capture_output=True, text=True, check=True).stdout
        assert Path(out.strip()).parent.name == "chaser"
        assert Path(out.strip()).parent != root / "chaser"
