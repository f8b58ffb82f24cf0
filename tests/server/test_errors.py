"""Bad input: every error is the one JSON shape, with a fitting status, and loses nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.types import Tenant


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in r.text
    if code:
        assert body["error"]["code"] == code


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 422, "invalid_request"),
    (b'"just a string"', 422, "invalid_request"),
    (b"{}", 422, "invalid_request"),  # missing command
    (b'{"command": ""}', 422, "invalid_request"),
    (b'{"command": "   "}', 422, "invalid_request"),
    (b'{"command": 42}', 422, "invalid_request"),
    (b'{"command": "true", "bogus": 1}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": "a", "ephemeral": true}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": "a/b"}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": ".."}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": ".hidden"}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": "a\\u0000b"}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": ""}', 422, "invalid_request"),
    (b'{"command": "true", "workspace": "' + b"x" * 65 + b'"}', 422, "invalid_request"),
    (b'{"command": "true", "timeout_ms": -1}', 422, "invalid_request"),
    (b'{"command": "true", "timeout_ms": 0}', 422, "invalid_request"),
    (b'{"command": "true", "timeout_ms": 99999999999999}', 422, "invalid_request"),
    (b'{"command": "true", "timeout_ms": "soon"}', 422, "invalid_request"),
    (b'{"command": "true", "env": {"A": 1}}', 422, "invalid_request"),
    (b'{"command": "true", "env": {"BAD NAME": "x"}}', 422, "invalid_request"),
    (b'{"command": "true", "cwd": "relative"}', 422, "invalid_request"),
    (b'{"command": "a\\u0000b"}', 422, "invalid_request"),
    (b'{"command": "true", "shell": "zsh"}', 422, "invalid_request"),
])
def test_bad_exec_bodies(tenant: Tenant, body: bytes, status: int, code: str) -> None:
    r = tenant.client.post("/v1/exec", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, status, code)


def test_one_megabyte_command_is_refused_clearly(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", json={"command": "echo " + "x" * (1024 * 1024)})
    assert_error(r, 422, "invalid_request")
    assert "longer than" in r.json()["error"]["message"]
    # Just under the limit still runs.
    r = tenant.client.post("/v1/exec", json={"command": ": " + "x" * 100_000 + "; echo ok"})
    assert r.status_code == 200 and r.json()["output"] == "ok\n"


def test_body_over_limit_is_413(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", content=b'{"command": "' + b"x" * (5 * 1024 * 1024) + b'"}',
                           headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_body_without_content_type_is_read_as_json(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/exec", content=b'{"command": "echo hi"}',
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["output"] == "hi\n"


def test_unknown_route_and_method(server: ServerProcess, client: httpx.Client) -> None:
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.put("/v1/exec", json={}), 405, "method_not_allowed")


def test_bad_query_and_session_bodies(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    assert_error(c.get(f"/v1/sessions/{session_id}/commands/cmd_x", params={"from": -1}), 422)
    assert_error(c.get(f"/v1/sessions/{session_id}/commands/cmd_x/stream", params={"from": "a"}), 422)
    assert_error(c.post("/v1/sessions", json={"limits": {"memory_mb": -5}}), 422)
    assert_error(c.post("/v1/sessions", json={"idle_timeout_s": 0}), 422)
    assert_error(c.post("/v1/sessions", json={"workspace": "../etc"}), 422)
    assert_error(c.get("/v1/sessions", params={"status": "weird"}), 422)
    bg = c.post(f"/v1/sessions/{session_id}/exec", json={"command": "cat", "background": True}).json()
    url = f"/v1/sessions/{session_id}/commands/{bg['command_id']}"
    assert_error(c.post(url + "/stdin", json={"input": 5}), 422)
    assert_error(c.post(url + "/stdin", json={"nope": "x"}), 422)
    assert_error(c.post(url + "/kill", json={"signal": "NOPE"}), 400, "invalid_signal")
    # Nothing was lost: the command still runs and still takes input.
    assert c.post(url + "/stdin", json={"input": "still\n", "eof": True}).status_code == 200


def test_command_printing_a_gigabyte_stays_bounded(server: ServerProcess, tenant: Tenant) -> None:
    def rss_kb() -> int:
        with open(f"/proc/{server.proc.pid}/status") as f:  # type: ignore[union-attr]
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    before = rss_kb()
    r = tenant.client.post("/v1/exec", json={"command": "head -c 1000000000 /dev/zero",
                                             "timeout_ms": 120000}, timeout=180)
    body = r.json()
    assert body["exit_code"] == 0 and body["output_truncated"] is True
    assert body["output_size"] == 1_000_000_000
    assert len(body["output"]) <= 1024 * 1024
    assert rss_kb() - before < 100 * 1024
    assert tenant.client.post("/v1/exec", json={"command": "echo alive"}).json()["output"] == "alive\n"
