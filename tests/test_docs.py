"""Every endpoint, setting and doc page the README names is documented."""

from __future__ import annotations

import re
from pathlib import Path

from chaser.config import Settings
from chaser.server.app import create_app
from chaser.server.openapi import api_routes

ROOT = Path(__file__).resolve().parent.parent


def test_every_endpoint_is_in_the_api_reference() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    app = create_app(Settings(data_dir=Path("/nonexistent")))
    missing = []
    routes = list(api_routes(app.routes))
    assert len(routes) > 40  # FastAPI's included routers are walked, not skipped
    for route in routes:
        if route.include_in_schema:
            # docs write path parameters as {id}, {command_id}, ...: compare the shape
            shape = re.sub(r"\{[^}]+\}", "{}", route.path)
            documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in re.findall(r"(/[\w/{}.-]+)", api)}
            if shape not in documented and not any(d.startswith(shape) for d in documented):
                missing.append(route.path)
    assert not missing, f"undocumented endpoints: {missing}"


def test_every_environment_setting_is_documented() -> None:
    config = (ROOT / "docs" / "configuration.md").read_text()
    names = {"CHASER_API_KEY", "CHASER_DATA_DIR", "CHASER_UID_REGISTRY", *Settings.variables()}
    assert {n for n in names if f"`{n}`" not in config} == set()
    assert Settings().port == 8080


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
