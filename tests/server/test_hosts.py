"""Which Host names browsers may reach the console and terminals by (server/hosts.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from chaser.config import Settings
from chaser.server.hosts import host_allowed, hostname


def settings(**kw: object) -> Settings:
    s = Settings(data_dir=Path("/nonexistent"))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_hostname_drops_port_brackets_dot_and_case() -> None:
    assert hostname("Example.COM.:8080") == "example.com"
    assert hostname("[::1]:80") == "::1"
    assert hostname("bad:port:x") == "" and hostname("") == ""


def test_by_default_addresses_loopback_names_the_bind_host_and_the_machine() -> None:
    s = settings(host="0.0.0.0")
    for ok in ("127.0.0.1:8080", "10.1.2.3", "[::1]:8080", "[fe80::1]", "localhost:1",
               "LOCALHOST", "a.b.localhost", f"{socket.gethostname()}:8080"):
        assert host_allowed(ok, s), ok
    for bad in ("evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io",
                "", None, "x:notaport"):
        assert not host_allowed(bad, s), bad
    assert host_allowed("box.internal:8080", settings(host="box.internal"))


def test_configured_names_subdomains_and_star() -> None:
    s = settings(allowed_hosts=["chaser.example.com", ".corp.example"])
    assert host_allowed("chaser.example.com:443", s) and host_allowed("CHASER.example.com", s)
    assert host_allowed("a.corp.example", s) and host_allowed("a.b.corp.example", s)
    assert not host_allowed("corp.example.evil", s) and not host_allowed("xcorp.example", s)
    assert not host_allowed("evil.chaser.example.com", s)
    assert host_allowed("anything.at.all", settings(allowed_hosts=["*"]))
    assert host_allowed("a.corp.example", settings(allowed_hosts=["*.corp.example"]))
