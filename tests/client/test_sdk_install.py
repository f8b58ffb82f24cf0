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
