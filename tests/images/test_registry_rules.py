"""Which registry a reference goes to, over what, with which credentials: the rules of
the registry client (its traffic is tested against real registries in the API tests)."""

from __future__ import annotations

import asyncio
import base64

import pytest

from chaser.errors import Forbidden
from chaser.images.reference import parse
from chaser.images.registry import RegistryClient, RegistryConfig, basic_credentials


def client(**config: object) -> RegistryClient:
    return RegistryClient(RegistryConfig(**config))  # type: ignore[arg-type]


def test_plain_http_only_for_loopback_and_listed_registries() -> None:
    c = client(insecure=frozenset({"registry.lan:5000"}))
    assert c.plain_http("127.0.0.1:5000") and c.plain_http("localhost:5000")
    assert c.plain_http("[::1]:5000") and c.plain_http("registry.lan:5000")
    assert not c.plain_http("registry.lan:5001") and not c.plain_http("ghcr.io")
    assert not c.plain_http("10.0.0.1:5000")
    assert [e.base_url for e in c.endpoints(parse("ghcr.io/org/app:1"))] == ["https://ghcr.io"]
    assert [e.base_url for e in c.endpoints(parse("registry.lan:5000/x"))] == [
        "http://registry.lan:5000"]
    asyncio.run(c.close())


def test_mirrors_come_first_for_docker_hub_only() -> None:
    c = client(mirrors=("http://127.0.0.1:5000/", "https://mirror.example"))
    hub = c.endpoints(parse("node:20-bookworm"))
    assert [e.base_url for e in hub] == ["http://127.0.0.1:5000", "https://mirror.example",
                                         "https://registry-1.docker.io"]
    assert {e.repository for e in hub} == {"library/node"}
    assert len(c.endpoints(parse("ghcr.io/org/app"))) == 1
    asyncio.run(c.close())


def test_allowed_registries() -> None:
    c = client(allowed=frozenset({"docker.io"}))
    assert c.endpoints(parse("python:3.12"))
    with pytest.raises(Forbidden, match="not one this server pulls from"):
        c.endpoints(parse("evil.example/x:1"))
    asyncio.run(c.close())


def test_credentials_from_a_docker_config() -> None:
    pair = base64.b64encode(b"bob:pa:ss").decode()
    creds = basic_credentials({"auths": {
        "https://index.docker.io/v1/": {"auth": pair},
        "ghcr.io": {"username": "ann", "password": "tok"},
        "broken": "nonsense"}})
    assert creds == {"docker.io": ("bob", "pa:ss"), "ghcr.io": ("ann", "tok")}
