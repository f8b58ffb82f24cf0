"""`POST /v1/mcp`: the MCP handshake, tools/list and tool calls over the same core.

Structured results are read into the models the tools declare, so the wire shape is
checked along with the behaviour.
"""

from __future__ import annotations

import itertools
import time
from typing import TypeVar

import pytest
from pydantic import BaseModel

from chaser.core import terminal
from chaser.models import BackgroundStarted, Command, CommandList, SessionList, StdinResult
from chaser.server.mcp import schemas
from tests.inprocess.harness import Api, Tenant, error

TOOLS = {"terminal", "shell", "start_command", "read_output", "send_input", "send_signal",
         "list_commands", "read_file", "write_file", "list_sessions", "stop_session",
         "submit_job", "get_job"}
M = TypeVar("M", bound=BaseModel)
_ids = itertools.count(1)


async def rpc(t: Tenant, method: str, params: dict[str, object] | None = None,
              path: str = "/v1/mcp") -> dict[str, object]:
    """One JSON-RPC exchange; the answer (with `result` or `error`)."""
    body: dict[str, object] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    if params is not None:
        body["params"] = params
    r = await t.client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer: dict[str, object] = r.json()
    assert answer["id"] == body["id"]
    return answer


async def call_raw(t: Tenant, tool: str, **arguments: object) -> tuple[bool, str, object]:
    """A tools/call: (isError, its text, structuredContent)."""
    answer = await rpc(t, "tools/call", {"name": tool, "arguments": arguments})
    result = answer.get("result")
    assert isinstance(result, dict), answer
    text = "".join(block["text"] for block in result["content"])
    return bool(result["isError"]), text, result.get("structuredContent")


async def call(t: Tenant, model: type[M], tool: str, **arguments: object) -> M:
    """A tools/call that must succeed, its structured result read as `model`."""
    failed, text, data = await call_raw(t, tool, **arguments)
    assert not failed, text
    return model.model_validate(data)


async def test_initialize_and_list_tools(tenant: Tenant) -> None:
    init = await rpc(tenant, "initialize", {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "inproc-test", "version": "0"}})
    result = init["result"]
    assert isinstance(result, dict)
    assert result["serverInfo"]["name"] == "chaser"
    assert result["protocolVersion"] == "2025-06-18" and "tools" in result["capabilities"]
    listed = (await rpc(tenant, "tools/list", path="/v1/mcp/"))["result"]
    assert isinstance(listed, dict)
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == TOOLS
    assert "command" in tools["terminal"]["inputSchema"]["properties"]
    assert "exit_code" in tools["terminal"]["outputSchema"]["properties"]


async def test_terminal_and_files(tenant: Tenant, other: Tenant) -> None:
    failed, text, data = await call_raw(tenant, "terminal", command="echo hi; exit 3")
    res = schemas.TerminalResult.model_validate(data)
    assert not failed and (res.exit_code, res.output, res.status) == (3, "hi\n", "exited")
    assert "exit code: 3" in text and f"session_id: {res.session_id}" in text
    sid = res.session_id
    # The session it made keeps files for later calls (paths relative to /workspace:
    # the fake runtime maps cwd, not paths inside commands).
    wrote = await call(tenant, schemas.WriteFileResult, "write_file", session_id=sid,
                       path="notes/a.txt", content="héllo")
    assert (wrote.bytes_written, wrote.size) == (6, 6)
    read = await call(tenant, schemas.ReadFileResult, "read_file", session_id=sid,
                      path="notes/a.txt")
    assert (read.content, read.encoding, read.truncated) == ("héllo", "utf-8", False)
    again = await call(tenant, schemas.TerminalResult, "terminal", session_id=sid,
                       command="cat notes/a.txt")
    assert again.output == "héllo"
    eph = await call(tenant, schemas.TerminalResult, "terminal", command="test -e notes/a.txt",
                     ephemeral=True)
    assert (eph.exit_code, eph.session_id) == (1, None)
    # Another tenant's session is not found; bad arguments are tool errors, not crashes.
    failed, text, _ = await call_raw(other, "terminal", session_id=sid, command="true")
    assert failed and "not_found" in text
    failed, text, _ = await call_raw(tenant, "terminal", command="")
    assert failed and "invalid arguments for terminal" in text
    failed, text, _ = await call_raw(tenant, "read_file", session_id=sid, path="missing")
    assert failed and "not_found" in text and "no such file" in text.lower()


async def test_background_tools(tenant: Tenant) -> None:
    started = await call(tenant, BackgroundStarted, "start_command", command="cat")
    sid, cid = started.session_id, started.command_id
    sent = await call(tenant, StdinResult, "send_input", session_id=sid, command_id=cid,
                      input="x\n", eof=True)
    assert sent.bytes == 2
    # Read as an agent does: from next_offset until the command ended and all is read.
    # (A read racing an append can answer no bytes with output_size past them: see the
    # report on `Executor.get_command`.)
    text, offset = "", 0
    for _ in range(20):
        out = await call(tenant, Command, "read_output", session_id=sid, command_id=cid,
                         offset=offset, wait_ms=2000)
        text, offset = text + (out.output or ""), out.next_offset
        if out.status != "running" and offset == out.output_size:
            break
    assert (text, out.status, out.exit_code) == ("x\n", "exited", 0)
    listed = await call(tenant, CommandList, "list_commands", session_id=sid)
    assert [c.id for c in listed.commands] == [cid]
    sleeper = await call(tenant, BackgroundStarted, "start_command", session_id=sid,
                         command="sleep 30")
    killed = await call(tenant, Command, "send_signal", session_id=sid,
                        command_id=sleeper.command_id, signal="KILL")
    assert (killed.status, killed.signal) == ("killed", "KILL")
    sessions = await call(tenant, SessionList, "list_sessions")
    assert sid in [s.id for s in sessions.sessions]
    stopped = await call(tenant, schemas.StopSessionResult, "stop_session", session_id=sid)
    assert (stopped.status, stopped.end_reason) == ("stopped", "deleted")


async def test_mcp_errors(api: Api, tenant: Tenant) -> None:
    r = await api.client().post("/v1/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    error(r, 401, "unauthorized")
    answer = await rpc(tenant, "tools/call", {"name": "nope", "arguments": {}})
    problem = answer.get("error")
    assert isinstance(problem, dict) and "unknown tool" in problem["message"]
    error(await tenant.client.get("/v1/mcp"), 405, "method_not_allowed")


async def test_shell_keeps_its_state_between_calls(tenant: Tenant) -> None:
    first = await call(tenant, schemas.ShellResult, "shell", command="cd /tmp && x=41 && echo set")
    assert (first.output, first.exit_code, first.interrupted) == ("set\n", 0, False)
    assert first.new_shell
    sid = first.session_id
    again = await call(tenant, schemas.ShellResult, "shell", session_id=sid,
                       command="echo $((x+1)) $(basename $PWD); false")
    assert (again.output, again.exit_code, again.pty_id) == ("42 tmp\n", 1, first.pty_id)
    slow = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="sleep 30",
                      timeout_ms=300)
    assert slow.interrupted and slow.exit_code == 130
    still = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="echo $x")
    assert still.output == "41\n"
    big = await call(tenant, schemas.ShellResult, "shell", session_id=sid,
                     command="seq 1 10000", max_output_bytes=100)
    assert big.output_truncated and big.output.startswith("1\n2\n") and len(big.output) <= 100
    gone = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="exit 4")
    assert gone.exit_code is None
    fresh = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="echo ${x:-unset}")
    assert fresh.output == "unset\n" and fresh.pty_id != first.pty_id and fresh.new_shell


async def test_shell_takes_any_text_as_one_command(tenant: Tenant) -> None:
    multi = await call(tenant, schemas.ShellResult, "shell",
                       command="echo L1\nsleep 0.2; echo L2\necho L3")
    assert (multi.output, multi.exit_code) == ("L1\nL2\nL3\n", 0)
    sid = multi.session_id
    t0 = time.monotonic()
    quote = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="echo 'abc")
    assert quote.exit_code == 2 and "unexpected EOF" in quote.output
    assert time.monotonic() - t0 < 5
    after = await call(tenant, schemas.ShellResult, "shell", session_id=sid, command="echo next")
    assert after.output == "next\n"
    long = await call(tenant, schemas.ShellResult, "shell", session_id=sid,
                      command="echo START; true " + "'' " * 1500 + "; echo " + "x" * 5000)
    assert long.output == "START\n" + "x" * 5000 + "\n" and long.exit_code == 0
    keys = await call(tenant, schemas.ShellResult, "shell", session_id=sid,
                      command="printf 'a\\004b\\003c\\025d\\r'; echo; echo 'x\x04y\x03z\x15w\rv' | od -c | head -1")
    assert keys.exit_code == 0 and not keys.new_shell and "x 004   y 003   z 025   w  \\r   v" in keys.output
    nul = await call_raw(tenant, "shell", session_id=sid, command="echo a\x00b")
    assert nul[0] and "NUL" in nul[1]


async def test_a_shell_command_that_ignores_ctrl_c_ends_the_shell(
        tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terminal, "INTERRUPT_GRACE_S", 0.5)
    monkeypatch.setattr(terminal, "SECOND_INTERRUPT_S", 0.2)
    t0 = time.monotonic()
    stuck = await call(tenant, schemas.ShellResult, "shell",
                       command="trap '' INT; sleep 60", timeout_ms=300)
    assert stuck.interrupted and stuck.exit_code is None and time.monotonic() - t0 < 10
    assert (await tenant.client.get("/healthz")).status_code == 200
    fresh = await call(tenant, schemas.ShellResult, "shell", session_id=stuck.session_id,
                       command="echo fresh")
    assert fresh.output == "fresh\n" and fresh.pty_id != stuck.pty_id
