"""Fixtures of the in-process tier: one app over the fake runtime for the whole tier,
and a fresh tenant (its own key) for each test that wants one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.inprocess.harness")  # its checks explain failures

from tests.inprocess.harness import Api, Tenant, serving  # noqa: E402


@pytest.fixture(scope="session")
def inproc_root() -> Iterator[Path]:
    """A temp root the data dir's checks accept (every parent enterable: o+x)."""
    root = Path(tempfile.mkdtemp(prefix="chaser-inproc-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")  # ended with the tier: it sets a process-wide umask
async def api(inproc_root: Path) -> AsyncIterator[Api]:
    """The shared app (admin client: `api.admin`)."""
    async with serving(inproc_root / "shared") as running:
        yield running


@pytest.fixture
async def tenant(api: Api) -> Tenant:
    return await api.new_tenant("tenant")


@pytest.fixture
async def other(api: Api) -> Tenant:
    """A second tenant, to check that tenants never see each other."""
    return await api.new_tenant("other")


@pytest.fixture
async def session_id(tenant: Tenant) -> str:
    """A running session of `tenant` (no workspace)."""
    r = await tenant.client.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
