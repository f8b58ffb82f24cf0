"""The MCP endpoint end to end: a real server on loopback, plain HTTP, curl and the SDK's client."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant

SEED_BODY = """{
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
      "name": "terminal",
      "arguments": {"workspace": "my-project", "command": "npm test"}
    }
  }"""


def rpc(client: httpx.Client, method: str, params: dict[str, Any] | None = None,
        path: str = "/v1/mcp") -> dict[str, Any]:
    """One JSON-RPC request; asserts a JSON answer that is never a server error."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    r = client.post(path, json=body)
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r.json()  # type: ignore[no-any-return]


def call(client: httpx.Client, name: str, args: Any) -> dict[str, Any]:
    """`tools/call`: the result (asserting it is one, not a JSON-RPC error)."""
    answer = rpc(client, "tools/call", {"name": name, "arguments": args})
    assert "result" in answer, answer
    return answer["result"]  # type: ignore[no-any-return]


def ok(client: httpx.Client, name: str, args: Any) -> dict[str, Any]:
    """A successful tool call's structuredContent."""
    result = call(client, name, args)
    assert result["isError"] is False, result
    return result["structuredContent"]  # type: ignore[no-any-return]


def error_text(client: httpx.Client, name: str, args: Any) -> str:
    result = call(client, name, args)
    assert result["isError"] is True, result
    assert "structuredContent" not in result
    return result["content"][0]["text"]  # type: ignore[no-any-return]


def check_seed_answer(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 1, answer
    result = answer["result"]
    assert result["isError"] is False  # npm failing (or missing) is a normal result
    data = result["structuredContent"]
    assert isinstance(data["exit_code"], int)
    assert isinstance(data["output"], str) and data["output_truncated"] is False
    assert data["session_id"].startswith("ses_") and data["command_id"].startswith("cmd_")
    text = result["content"][0]["text"]
    assert text.startswith(data["output"])
    assert f"exit code: {data['exit_code']}" in text and data["session_id"] in text
    return data  # type: ignore[no-any-return]


# -- the document's curl -------------------------------------------------------------------


def test_seed_curl_request_with_httpx(server: ServerProcess, tenant: Tenant) -> None:
    """The exact request of the document: no initialize, no Accept, only Content-Type."""
    headers = {"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as http:
        req = http.build_request("POST", server.url + "/v1/mcp", headers=headers, content=SEED_BODY)
        del req.headers["accept"]  # curl sends */*, httpx too; test the header missing as well
        first = check_seed_answer(http.send(req).json())
        again = check_seed_answer(http.post(server.url + "/v1/mcp", headers=headers,
                                            content=SEED_BODY).json())
    assert again["session_id"] == first["session_id"]  # the workspace's session is reused
    assert again["command_id"] != first["command_id"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_curl_request_with_curl(server: ServerProcess, tenant: Tenant) -> None:
    out = subprocess.run(
        ["curl", "-sS", f"{server.url}/v1/mcp",
         "-H", f"Authorization: Bearer {tenant.key}",
         "-H", "Content-Type: application/json",
         "-d", SEED_BODY],
        capture_output=True, text=True, timeout=120, check=True)
    check_seed_answer(json.loads(out.stdout))


def test_no_redirect_and_any_host(server: ServerProcess, tenant: Tenant) -> None:
    """/v1/mcp/ answers too (no 307), and a Host other than localhost is not refused (no 421)."""
    for path in ("/v1/mcp", "/v1/mcp/"):
        r = tenant.client.post(path, headers={"Host": "chaser.example.com:8080"},
                               json={"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert r.status_code == 200, r.text
        assert r.json() == {"jsonrpc": "2.0", "id": 3, "result": {}}


def test_needs_a_valid_key(server: ServerProcess) -> None:
    body = json.loads(SEED_BODY)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer chs_wrong"}, {"Authorization": "Basic eDp5"}):
            r = http.post("/v1/mcp", json=body, headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
        r = http.get("/v1/mcp", headers={"Authorization": f"Bearer {server.admin_key}"})
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_lists_the_endpoint(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/mcp"] and "/v1/mcp/" not in paths


# -- standard clients ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto", "2026-07-28"])
async def test_sdk_client(server: ServerProcess, tenant: Tenant, mode: str) -> None:
    """The SDK's own Streamable HTTP client: handshake (or discover), list, call, reuse."""
    headers = {"Authorization": f"Bearer {tenant.key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(server.url + "/v1/mcp", http_client=http)
        async with Client(transport, mode=mode) as mcp:
            if mode == "legacy":
                assert mcp.server_info is not None and mcp.server_info.name == "chaser"
            else:
                assert mcp.protocol_version == "2026-07-28"
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            assert {"terminal", "start_command", "read_output", "send_input", "send_signal",
                    "list_commands", "read_file", "write_file", "list_sessions"} <= set(tools)
            for tool in tools.values():
                assert tool.description and tool.input_schema["type"] == "object"
                assert tool.output_schema is not None
            assert tools["terminal"].input_schema["required"] == ["command"]

            first = await mcp.call_tool("terminal", {"command": "cd /workspace && echo one > f; "
                                                                "echo hello; exit 3"})
            assert not first.is_error
            data = first.structured_content
            assert data["exit_code"] == 3 and data["output"] == "hello\n"
            text = first.content[0].text  # type: ignore[union-attr]
            assert text.startswith("hello\nexit code: 3\n")
            sid = data["session_id"]

            again = await mcp.call_tool("terminal", {"command": "cat f", "session_id": sid})
            assert again.structured_content["output"] == "one\n"
            assert again.structured_content["session_id"] == sid

            bad = await mcp.call_tool("terminal", {"command": 42})
            assert bad.is_error and "command" in bad.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_handshake_era_clients(tenant: Tenant, version: str) -> None:
    """What TypeScript-era clients send: initialize, initialized, then versioned requests."""
    c = tenant.client
    both = {"Accept": "application/json, text/event-stream"}
    init = c.post("/v1/mcp", headers=both, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "test-client", "version": "1.0"}}})
    assert init.status_code == 200, init.text
    assert init.json()["result"]["protocolVersion"] == version
    assert init.json()["result"]["capabilities"]["tools"] is not None
    headers = {**both, "MCP-Protocol-Version": version}
    note = c.post("/v1/mcp", headers=headers,
                  json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note.status_code == 202
    r = c.post("/v1/mcp", headers=headers, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "terminal", "arguments": {"ephemeral": True, "command": "echo $0"}}})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["structuredContent"]["output"] == "/bin/sh\n"


def test_modern_request_without_metadata_is_refused_cleanly(tenant: Tenant) -> None:
    r = tenant.client.post("/v1/mcp", headers={"MCP-Protocol-Version": "2026-07-28"},
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32602


# -- the other tools -----------------------------------------------------------------------


def test_background_output_stdin_signal(tenant: Tenant) -> None:
    c = tenant.client
    started = ok(c, "start_command", {"command": "echo ready; read line; echo got:$line; sleep 600"})
    sid, cid = started["session_id"], started["command_id"]
    assert started["pid"] and started["status"] == "running"
    ref = {"session_id": sid, "command_id": cid}

    page = ok(c, "read_output", {**ref, "offset": 0, "wait_ms": 5000})
    assert page["output"].startswith("ready")
    assert ok(c, "send_input", {**ref, "input": "hello\n"})["bytes"] == 6

    seen, offset, deadline = "", 0, time.monotonic() + 20
    while "got:hello" not in seen and time.monotonic() < deadline:
        page = ok(c, "read_output", {**ref, "offset": offset, "wait_ms": 2000})
        seen += page["output"]
        offset = page["next_offset"]
    assert seen.startswith("ready\n") and "got:hello\n" in seen
    assert page["status"] == "running"

    listed = ok(c, "list_commands", {"session_id": sid})["commands"]
    assert [x["id"] for x in listed if x["status"] == "running"] == [cid]

    killed = ok(c, "send_signal", {**ref, "signal": "TERM"})
    assert killed["status"] == "killed" and killed["signal"] == "TERM"
    assert "command_finished" in error_text(c, "send_input", {**ref, "input": "x"})
    final = call(c, "read_output", ref)
    assert "killed by signal TERM" in final["content"][0]["text"]


def test_huge_output_is_truncated_and_paged(tenant: Tenant) -> None:
    c = tenant.client
    result = call(c, "terminal", {"command": "head -c 200000 /dev/zero | tr '\\0' a; echo; exit 0"})
    data = result["structuredContent"]
    assert data["output_truncated"] is True and len(data["output"]) == 65536
    assert data["output_size"] == 200001 and data["next_offset"] == 65536
    text = result["content"][0]["text"]
    assert "output truncated" in text and "offset=65536" in text and "exit code: 0" in text
    ref = {"session_id": data["session_id"], "command_id": data["command_id"]}
    total, offset = len(data["output"]), data["next_offset"]
    while offset < data["output_size"]:
        page = ok(c, "read_output", {**ref, "offset": offset, "limit": 50000})
        assert page["output_offset"] == offset
        total += len(page["output"])
        offset = page["next_offset"]
    assert total == 200001


def test_files_round_trip(tenant: Tenant) -> None:
    c = tenant.client
    sid = ok(c, "terminal", {"command": "true"})["session_id"]
    text = "héllo wörld\nline 2\n"
    wrote = ok(c, "write_file", {"session_id": sid, "path": "notes/a b.txt", "content": text})
    assert wrote["size"] == len(text.encode()) and wrote["bytes_written"] == wrote["size"]
    read = ok(c, "read_file", {"session_id": sid, "path": "/workspace/notes/a b.txt"})
    assert read["content"] == text and read["encoding"] == "utf-8" and not read["truncated"]
    seen = ok(c, "terminal", {"session_id": sid, "command": "cat 'notes/a b.txt'"})
    assert seen["output"] == text

    ok(c, "write_file", {"session_id": sid, "path": "notes/a b.txt", "content": "more\n",
                         "append": True})
    # Paging splits no character: 'é' is bytes 1-2, so a 2-byte page stops after 'h'.
    page = ok(c, "read_file", {"session_id": sid, "path": "notes/a b.txt", "limit": 2})
    assert page["content"] == "h" and page["next_offset"] == 1 and page["truncated"]
    rest = ok(c, "read_file", {"session_id": sid, "path": "notes/a b.txt", "offset": 1})
    assert "h" + rest["content"] == text + "more\n"

    blob = bytes(range(256))
    ok(c, "write_file", {"session_id": sid, "path": "bin/blob",
                         "content_b64": base64.b64encode(blob).decode()})
    read = ok(c, "read_file", {"session_id": sid, "path": "bin/blob"})
    assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == blob

    missing = error_text(c, "read_file", {"session_id": sid, "path": "nope.txt"})
    assert "not_found" in missing and "no such file" in missing.lower()
    assert "directory" in error_text(c, "read_file", {"session_id": sid, "path": "notes"})
    assert "session_id or workspace" in error_text(c, "read_file", {"path": "x"})


def test_file_tools_need_nothing_from_the_image(tenant: Tenant) -> None:
    """The tools are the files API's operations, not shell commands: with no PATH at all
    they still work, `..` is resolved by name from the session's cwd, and an append to a
    fifo the sandbox planted is refused at once rather than hanging."""
    c = tenant.client
    made = c.post("/v1/sessions", json={"env": {"PATH": "/nowhere"}, "cwd": "/workspace/sub"})
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    ok(c, "write_file", {"session_id": sid, "path": "../top.txt", "content": "a\n"})
    assert ok(c, "write_file", {"session_id": sid, "path": "/workspace/top.txt",
                                "content": "b\n", "append": True})["size"] == 4
    read = ok(c, "read_file", {"session_id": sid, "path": "/workspace/sub/../top.txt"})
    assert read["content"] == "a\nb\n" and read["path"] == "/workspace/sub/../top.txt"
    page = ok(c, "read_file", {"session_id": sid, "path": "../top.txt", "offset": 9})
    assert page["content"] == "" and page["size"] == 4 and not page["truncated"]
    ok(c, "write_file", {"session_id": sid, "path": "here.txt", "content": ""})  # makes sub/
    ran = ok(c, "terminal", {"session_id": sid, "command": "/bin/busybox mkfifo /workspace/f "
                             "|| /usr/bin/mkfifo /workspace/f; echo made"})
    assert ran["output"].endswith("made\n")
    refused = error_text(c, "write_file", {"session_id": sid, "path": "/workspace/f",
                                           "content": "x", "append": True})
    assert "not_regular" in refused or "not a regular" in refused.lower()


def test_files_in_a_workspace(tenant: Tenant) -> None:
    c = tenant.client
    ok(c, "write_file", {"workspace": "proj", "path": "src/main.py", "content": "print(42)\n"})
    ran = ok(c, "terminal", {"workspace": "proj", "command": "python3 src/main.py || cat src/main.py"})
    assert ran["output"] in ("42\n", "print(42)\n")
    assert ok(c, "read_file", {"workspace": "proj", "path": "src/main.py"})["content"] == "print(42)\n"


def test_sessions_ephemeral_and_stop(tenant: Tenant) -> None:
    c = tenant.client
    eph = call(c, "terminal", {"ephemeral": True, "command": "echo $((6*7))"})
    assert eph["structuredContent"]["output"] == "42\n"
    assert eph["structuredContent"]["session_id"] is None
    assert "ephemeral" in eph["content"][0]["text"]

    sid = ok(c, "terminal", {"command": "true"})["session_id"]
    listed = ok(c, "list_sessions", {})["sessions"]
    assert sid in [x["id"] for x in listed]
    assert ok(c, "stop_session", {"session_id": sid})["status"] == "stopped"
    assert sid not in [x["id"] for x in ok(c, "list_sessions", {"status": "running"})["sessions"]]
    msg = error_text(c, "terminal", {"session_id": sid, "command": "true"})
    assert "session_stopped" in msg and "without session_id" in msg


def test_tenants_are_isolated(new_tenant: NewTenant) -> None:
    a, b = new_tenant("a"), new_tenant("b")
    started = ok(a.client, "start_command", {"command": "sleep 600"})
    sid, cid = started["session_id"], started["command_id"]
    ref = {"session_id": sid, "command_id": cid}
    for name, args in (("terminal", {"session_id": sid, "command": "id"}),
                       ("start_command", {"session_id": sid, "command": "id"}),
                       ("read_output", ref), ("send_input", {**ref, "input": "x"}),
                       ("send_signal", ref), ("list_commands", {"session_id": sid}),
                       ("read_file", {"session_id": sid, "path": "x"}),
                       ("write_file", {"session_id": sid, "path": "x", "content": "x"}),
                       ("stop_session", {"session_id": sid})):
        assert "not_found" in error_text(b.client, name, args), name
    assert sid not in [x["id"] for x in ok(b.client, "list_sessions", {})["sessions"]]
    ok(a.client, "send_signal", {**ref, "signal": "KILL"})  # still a's, still alive until now


def test_bad_input(tenant: Tenant) -> None:
    c = tenant.client
    unknown = rpc(c, "tools/call", {"name": "rm_rf", "arguments": {}})
    assert unknown["error"]["code"] == -32602 and "terminal" in unknown["error"]["message"]
    assert rpc(c, "tools/call", {"name": "terminal", "arguments": ["ls"]})["error"]["code"] == -32602
    assert rpc(c, "no/such/method")["error"]["code"] == -32601

    assert "command: Field required" in error_text(c, "terminal", {})
    assert "timeout_ms" in error_text(c, "terminal", {"command": "true", "timeout_ms": "soon"})
    assert "env" in error_text(c, "terminal", {"command": "true", "env": {"A": 1}})
    assert "comand" in error_text(c, "terminal", {"comand": "ls"})
    assert "workspace" in error_text(c, "terminal", {"command": "true", "workspace": "../etc"})
    assert "not both" in error_text(c, "terminal", {"command": "true", "workspace": "w",
                                                    "session_id": "ses_x"})
    assert "not_found" in error_text(c, "terminal", {"command": "true", "session_id": "ses_nope"})
    assert "image" in error_text(c, "terminal", {"command": "true", "ephemeral": True,
                                                 "image": "no-such-image:1"})
    assert "cwd" in error_text(c, "terminal", {"command": "true", "cwd": "relative"})
    assert "offset" in error_text(c, "read_output", {"session_id": "s", "command_id": "c",
                                                     "offset": -1})
    sid = ok(c, "start_command", {"command": "sleep 600"})
    assert "signal" in error_text(c, "send_signal", {**{k: sid[k] for k in ("session_id",)},
                                                     "command_id": sid["command_id"],
                                                     "signal": "NOPE"})
    ok(c, "send_signal", {"session_id": sid["session_id"], "command_id": sid["command_id"],
                          "signal": 9})
    assert "content" in error_text(c, "write_file", {"session_id": sid["session_id"], "path": "x"})
    assert "base64" in error_text(c, "write_file", {"session_id": sid["session_id"], "path": "x",
                                                    "content_b64": "!!"})

    r = c.post("/v1/mcp", content=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = c.post("/v1/mcp", content=b"[]")
    assert 400 <= r.status_code < 500


def test_shell_tool_keeps_state_in_a_real_sandbox(tenant: Tenant) -> None:
    c = tenant.client
    first = ok(c, "shell", {"workspace": "shellws", "command": "mkdir -p d && cd d && export A=1"})
    assert first["exit_code"] == 0 and first["output"] == ""
    sid = first["session_id"]
    second = ok(c, "shell", {"session_id": sid, "command": "pwd; echo $A; tty"})
    assert second["output"] == "/workspace/d\n1\n/dev/pts/0\n" and second["exit_code"] == 0
    assert second["pty_id"] == first["pty_id"]
    multi = ok(c, "shell", {"session_id": sid, "command": "for i in a b\ndo echo $i\ndone"})
    assert multi["output"] == "a\nb\n"
    rows = c.get(f"/v1/sessions/{sid}/commands").json()["commands"]
    assert any(r["id"] == first["pty_id"] and r["kind"] == "pty" for r in rows)
