"""The PTY WebSocket end to end: human, agent and exec modes on real sandboxes, real
terminals and a real WebSocket client (docs/pty.md)."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.conftest import ServerProcess, server_with
from tests.server.pty_client import Term, events, screen_of, text_of
from tests.types import NewTenant, Tenant

PROMPT = "user@sandbox"


def human(server: ServerProcess, tenant: Tenant, sid: str, query: str = "") -> Term:
    t = Term(server, tenant.key, sid, "mode=human&" + query)
    t.until_text("$ ")
    return t


def agent(server: ServerProcess, tenant: Tenant, sid: str, query: str = "") -> Term:
    t = Term(server, tenant.key, sid, "mode=agent&" + query)
    t.until_text("$ ")
    return t


def run(t: Term, line: str, timeout: float = 20.0) -> tuple[str, int, str]:
    """One command in agent mode: (output, exit code, the command line reported)."""
    t.send(line + "\n")
    frames = t.until_event("command_end", timeout)
    start = events(frames, "command_start")
    assert start, frames
    cut = frames.index(start[-1])
    end = events(frames, "command_end")[-1]
    return text_of(frames[cut:]), int(end["exit_code"]), str(start[-1]["command"])


# -- human ---------------------------------------------------------------------------------

def test_human_is_a_login_bash_on_a_terminal_of_the_sandbox(server: ServerProcess, tenant: Tenant,
                                                             session_id: str) -> None:
    t = human(server, tenant, session_id)
    assert t.hello["mode"] == "human" and t.hello["cols"] == 80 and t.hello["rows"] == 24
    t.send("tty; echo TERM=$TERM; shopt -q login_shell && echo LOGIN; echo $((6*7))\n")
    out = t.until_text("42\r\n")
    assert "/dev/pts/0" in out and "TERM=xterm-256color" in out and "LOGIN" in out
    assert PROMPT in text_of(t.frames)
    t.send("exit 7\n")
    exit_ = t.wait_event("exit")
    assert exit_ == {"type": "exit", "exit_code": 7, "signal": None, "status": "exited"}


def test_ctrl_c_interrupts_the_program_not_the_shell_and_job_control_works(
        server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    t = human(server, tenant, session_id)
    t.send("sleep 300\n")
    time.sleep(0.5)
    t.send(b"\x03")
    t.send("echo still-$((1+1))\n")
    assert "still-2" in t.until_text("still-2\r\n")
    t.send("sleep 301 &\n")
    t.send("jobs; echo JOBS-DONE\n")
    assert "sleep 301" in t.until_text("JOBS-DONE\r\n")
    t.send("fg\n")
    time.sleep(0.5)
    t.send(b"\x03")
    t.send("echo after-fg\n")
    t.until_text("after-fg\r\n")
    t.control({"type": "close"})
    assert t.wait_event("exit")["signal"] == "KILL"


def test_resize_changes_the_size_and_sends_sigwinch(server: ServerProcess, tenant: Tenant,
                                                    session_id: str) -> None:
    t = human(server, tenant, session_id, "cols=100&rows=30")
    t.send("stty size\n")
    t.until_text("30 100")
    t.send("trap 'echo WINCH-$(stty size | tr \" \" x)' WINCH; sleep 5 & wait\n")
    time.sleep(0.5)
    t.control({"type": "resize", "cols": 132, "rows": 43})
    assert "WINCH-43x132" in t.until_text("WINCH-43x132")
    t.close()


def test_a_full_screen_program_draws_its_screen(server: ServerProcess, tenant: Tenant,
                                                session_id: str) -> None:
    t = human(server, tenant, session_id)
    t.send("seq 1 500 > nums; clear; less nums\n")
    screen = t.wait_screen(lambda lines: lines[:3] == ["1", "2", "3"] and lines[-1] == "nums")
    assert screen[22] == "23" and "\x1b[?1049h" in text_of(t.frames), screen
    t.send("G")  # to the end: the last screenful
    screen = t.wait_screen(lambda lines: "(END)" in lines[-1])
    assert screen[-2] == "500" and screen[0] == "478", screen
    t.send("q")
    t.send("echo back-$((2+3))\n")
    t.wait_screen(lambda lines: any(line == "back-5" for line in lines))
    assert "\x1b[?1049l" in text_of(t.frames)  # less gave the shell its screen back
    t.close()


# -- agent ---------------------------------------------------------------------------------

def test_agent_mode_runs_five_commands_as_an_agent_would(server: ServerProcess, tenant: Tenant,
                                                        session_id: str) -> None:
    t = agent(server, tenant, session_id)
    assert t.hello["mode"] == "agent"
    out, code, line = run(t, "echo hello; ls /workspace; echo $TERM $NO_COLOR $PAGER")
    assert (out, code, line) == ("hello\r\ndumb 1 cat\r\n",
                                 0, "echo hello; ls /workspace; echo $TERM $NO_COLOR $PAGER")
    out, code, _ = run(t, "ls /nonexistent")
    assert code == 2 and "No such file or directory" in out
    out, code, line = run(t, "for i in 1 2 3\ndo\n  echo n$i\ndone")
    assert (out, code) == ("n1\r\nn2\r\nn3\r\n", 0) and "for i in 1 2 3" in line
    t.send("read name; echo hi-$name\n")
    t.until_event("command_start")
    t.send("agent\n")
    frames = t.until_event("command_end")
    assert "hi-agent" in text_of(frames) and events(frames, "command_end")[0]["exit_code"] == 0
    t.send("sleep 300\n")
    t.until_event("command_start")
    time.sleep(0.3)
    t.send(b"\x03")
    assert events(t.until_event("command_end"), "command_end")[0]["exit_code"] == 130
    out, code, _ = run(t, "printf no-newline")
    assert (out, code) == ("no-newline", 0)
    # Clean transcripts: no echo of the input, no escape sequences, markers stripped.
    everything = text_of(t.frames)
    assert "\x1b" not in everything and "6973" not in everything
    assert "read name" not in everything


def test_agent_mode_echo_stays_off_after_reads_and_interrupts(server: ServerProcess,
                                                               tenant: Tenant,
                                                               session_id: str) -> None:
    t = agent(server, tenant, session_id)
    for i in range(3):
        t.send("read -r line; echo got-$line\n")
        t.until_event("command_start")
        t.send(f"typed-{i}\n")
        t.until_event("command_end")
        t.send("sleep 30\n")
        t.until_event("command_start")
        time.sleep(0.3)
        t.send(b"\x03")
        t.until_event("command_end")
        out, code, _ = run(t, "stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e -echo")
        assert (out, code) == ("-echo\r\n", 0), (i, out)
    assert "typed-" not in text_of(t.frames).replace("got-typed-", "")


def test_agent_mode_survives_prompt_changes_and_exec_bash(server: ServerProcess, tenant: Tenant,
                                                          session_id: str) -> None:
    t = agent(server, tenant, session_id)
    assert run(t, "PS1='custom> '")[1] == 0
    assert run(t, "x=5; cd /tmp")[1] == 0
    out, code, _ = run(t, "echo $x $PWD")
    assert (out, code) == ("5 /tmp\r\n", 0)
    assert run(t, "exec bash")[1] == 0
    out, code, line = run(t, "echo in-new-bash; false")
    assert "in-new-bash" in out and code == 1 and line == "echo in-new-bash; false"
    assert "\x1b]6973" not in text_of(t.frames)


def test_agent_mode_on_sh(server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    t = agent(server, tenant, session_id, "shell=sh")
    out, code, line = run(t, "echo from-sh; exit_code_is() { return 3; }; exit_code_is")
    assert "from-sh" in out and code == 3 and line.startswith("echo from-sh")


# -- exec ----------------------------------------------------------------------------------

def test_exec_mode_streams_a_command_without_a_tty(server: ServerProcess, tenant: Tenant,
                                                   session_id: str) -> None:
    t = Term(server, tenant.key, session_id, "mode=exec&command=tty%3B%20cat%3B%20exit%205")
    t.send(b"line one\n\x00\xff")
    t.control({"type": "eof"})
    frames = t.until_event("exit")
    data = b"".join(f for f in frames if isinstance(f, bytes))
    assert data == b"not a tty\nline one\n\x00\xff"
    assert events(frames, "exit")[0]["exit_code"] == 5
    # The command is one of the session's, as any other.
    row = tenant.client.get(f"/v1/sessions/{session_id}/commands/{t.pty_id}").json()
    assert row["exit_code"] == 5 and row["kind"] == "command"


def test_exec_mode_takes_the_command_in_a_first_frame(server: ServerProcess, tenant: Tenant,
                                                      session_id: str) -> None:
    url = server.url.replace("http", "ws") + f"/v1/sessions/{session_id}/pty?mode=exec"
    with connect(url, additional_headers={"Authorization": f"Bearer {tenant.key}"}) as ws:
        ws.send(json.dumps({"type": "exec", "command": "echo from-frame"}))
        frames = [ws.recv(10) for _ in range(3)]
    assert json.loads(frames[0])["type"] == "hello" and frames[1] == b"from-frame\n"
    assert json.loads(frames[2])["exit_code"] == 0


# -- terminals outlive connections ----------------------------------------------------------

def test_reattach_replays_what_was_printed_meanwhile(server: ServerProcess, tenant: Tenant,
                                                     session_id: str) -> None:
    t = agent(server, tenant, session_id)
    run(t, "v=kept")
    t.send("sleep 1; for i in $(seq 1 2000); do echo line-$i; done\n")
    at = t.wait_event("command_start")["offset"]
    t.close()  # dropped: the terminal goes on
    time.sleep(2.5)
    back = Term(server, tenant.key, session_id, f"pty_id={t.pty_id}&from={at}")
    assert back.hello["pty_id"] == t.pty_id and back.hello["offset"] == at
    frames = back.until_event("command_end")
    assert events(frames)[0]["command"].startswith("sleep 1; for i")
    replay = text_of(frames)
    assert replay.startswith("line-1\r\n") and "line-2000\r\n" in replay
    assert [f"line-{i}" for i in range(1, 2001)] == [x for x in replay.split("\r\n") if x.startswith("line-")]
    out, code, _ = run(back, "echo $v")  # the same shell, its state kept
    assert (out, code) == ("kept\r\n", 0)
    # The transcript is the command's output log, readable by offset like any command's.
    row = tenant.client.get(f"/v1/sessions/{session_id}/commands/{t.pty_id}").json()
    assert row["kind"] == "pty" and row["status"] == "running" and "line-2000" in row["output"]
    back.control({"type": "close"})
    back.until_event("exit")


def test_a_viewer_watches_read_only(server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    t = agent(server, tenant, session_id)
    viewer = Term(server, tenant.key, session_id, f"pty_id={t.pty_id}&view=true")
    assert viewer.hello["view"] is True
    viewer.send("echo from-viewer\n")
    assert viewer.wait_event("error")["code"] == "read_only"
    viewer.control({"type": "resize", "cols": 10, "rows": 10})
    assert viewer.wait_event("error")["code"] == "read_only"
    run(t, "echo from-owner")
    assert "from-owner" in viewer.until_text("from-owner")
    assert "from-viewer" not in text_of(t.frames)
    t.control({"type": "close"})
    assert viewer.until_event("exit")


@pytest.fixture(scope="module")
def short_grace(tmp_root: Path) -> Iterator[ServerProcess]:
    with server_with(tmp_root, {"CHASER_PTY_GRACE_S": "2",
                                "CHASER_PTY_SCROLLBACK_BYTES": "4096"}) as srv:
        yield srv


def test_the_grace_period_ends_a_detached_terminal_and_its_tree(short_grace: ServerProcess) -> None:
    key = short_grace.client().post("/v1/keys", json={"name": "grace"}).json()["key"]
    c = short_grace.client(key)
    sid = c.post("/v1/sessions", json={}).json()["id"]
    t = Term(short_grace, key, sid, "mode=human")
    t.send("sleep 1000 & sleep 1001 & echo started-$((1+1))\n")
    t.until_text("started-2")
    t.close()
    time.sleep(1.0)  # within the grace period: reattach, then leave again
    again = Term(short_grace, key, sid, f"pty_id={t.pty_id}")
    again.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = c.get(f"/v1/sessions/{sid}/commands/{t.pty_id}").json()
        if row["status"] != "running":
            break
        time.sleep(0.2)
    assert row["status"] == "killed" and row["end_reason"] == "pty_detached"
    ps = c.post(f"/v1/sessions/{sid}/exec", json={"command": "ps -eo args"}).json()["output"]
    assert "sleep 100" not in ps, ps
    # Reattaching to an ended terminal replays it and says how it ended.
    ended = Term(short_grace, key, sid, f"pty_id={t.pty_id}&from=0")
    frames = ended.until_event("exit")
    assert "started-2" in text_of(frames) and events(frames, "exit")[0]["signal"] == "KILL"


def test_a_terminal_lives_while_any_client_is_attached(short_grace: ServerProcess) -> None:
    key = short_grace.client().post("/v1/keys", json={"name": "tabs"}).json()["key"]
    sid = short_grace.client(key).post("/v1/sessions", json={}).json()["id"]
    first = Term(short_grace, key, sid, "mode=agent")
    tabs = [Term(short_grace, key, sid, f"pty_id={first.pty_id}") for _ in range(5)]
    for tab in tabs:
        tab.close()  # four of six tabs closed, one stays: the grace period must not start
    first.close()
    kept = Term(short_grace, key, sid, f"pty_id={first.pty_id}")
    for i in range(4):  # well past the 2 s grace period
        assert run(kept, f"echo tick-{i}")[:2] == (f"tick-{i}\r\n", 0)
        time.sleep(1)
    kept.control({"type": "close"})
    assert kept.wait_event("exit")["signal"] == "KILL"


def test_a_reattach_without_from_replays_the_scrollback(short_grace: ServerProcess) -> None:
    key = short_grace.client().post("/v1/keys", json={"name": "scroll"}).json()["key"]
    sid = short_grace.client(key).post("/v1/sessions", json={}).json()["id"]
    t = Term(short_grace, key, sid, "mode=agent")
    t.send("seq 1 20000; echo END\n")
    t.until_text("END")
    t.close()
    back = Term(short_grace, key, sid, f"pty_id={t.pty_id}")
    frames = back.read_until(lambda fs: "$ " in text_of(fs))
    replay = text_of(frames)
    size = back.hello["offset"] + len(replay.encode())
    assert 4096 - 8 <= len(replay.encode()) <= 4096 + 8, len(replay)  # the last 4 KiB
    assert "20000\r\nEND\r\n" in replay and "\r\n1\r\n" not in replay
    assert back.hello["offset"] == size - len(replay.encode()) > 0
    back.control({"type": "close"})
    back.wait_event("exit")


def test_vi_edits_a_file_and_top_draws(server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    t = human(server, tenant, session_id)
    t.send("vi notes.txt\n")
    t.wait_screen(lambda lines: lines[-1].startswith('"notes.txt"'))
    t.send("ihello from vi\x1b")
    t.wait_screen(lambda lines: lines[0] == "hello from vi")
    t.send(":wq\n")
    t.read_until(lambda fs: "\x1b[?1049l" in text_of(fs) and text_of(fs).endswith("$ "))
    t.send("cat notes.txt; echo CAT-$((1+1))\n")
    t.until_text("CAT-2\r\n")
    assert "hello from vi\r\nCAT-2" in text_of(t.frames)
    t.frames.clear()
    t.send("top -b -n 1 | head -3 >/dev/null; top -d 1\n")
    screen = t.wait_screen(lambda lines: any(line.startswith("Tasks:") for line in lines)
                           and any("PID" in line and "COMMAND" in line for line in lines))
    assert screen[0].startswith("top - "), screen
    t.send("q")
    t.close()


# -- browsers: tickets and Origin ------------------------------------------------------------

def test_a_ticket_opens_one_terminal_once(server: ServerProcess, tenant: Tenant,
                                          session_id: str, new_tenant: NewTenant) -> None:
    r = tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket")
    assert r.status_code == 201
    body = r.json()
    assert body["ticket"].startswith("pty_") and body["expires_in_s"] == 60
    ws_url = server.url.replace("http", "ws")
    with connect(ws_url + body["url"] + "&mode=agent", origin=Origin(server.url)) as ws:
        assert json.loads(ws.recv(10))["type"] == "hello"
    with pytest.raises(websockets.InvalidStatus) as used:
        connect(ws_url + body["url"])
    assert used.value.response.status_code == 401
    # A ticket is for its session only, and another tenant cannot get one for ours.
    other = new_tenant("other")
    assert other.client.post(f"/v1/sessions/{session_id}/pty-ticket").status_code == 404
    t2 = tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket").json()["ticket"]
    other_sid = other.client.post("/v1/sessions", json={}).json()["id"]
    with pytest.raises(websockets.InvalidStatus) as wrong:
        connect(ws_url + f"/v1/sessions/{other_sid}/pty?ticket={t2}")
    assert wrong.value.response.status_code == 401


def refusal(server: ServerProcess, path: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    """An upgrade the server refuses: its status and JSON error, read over plain HTTP."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(server.url.replace("http", "ws") + path, additional_headers=headers)
    response = refused.value.response
    body: dict[str, object] = json.loads(response.body or b"{}")
    return response.status_code, body


def test_refusals_come_before_the_upgrade_as_json(server: ServerProcess, tenant: Tenant,
                                                  session_id: str, new_tenant: NewTenant) -> None:
    auth = {"Authorization": f"Bearer {tenant.key}"}
    base = f"/v1/sessions/{session_id}/pty"
    assert refusal(server, base + "?mode=root", auth) == (400, {"error": {
        "code": "invalid_mode", "message": "mode must be one of human, agent, exec"}})
    assert refusal(server, base, {})[0] == 401
    assert refusal(server, base, {"Authorization": "Bearer chs_wrong"})[0] == 401
    assert refusal(server, base + "?ticket=pty_forged", {})[0] == 401
    assert refusal(server, base + "?cols=0", auth)[0] == 400
    assert refusal(server, base + "?cols=abc", auth)[0] == 400
    other = new_tenant("intruder")
    mine = agent(server, tenant, session_id)
    code, body = refusal(server, base, {"Authorization": f"Bearer {other.key}"})
    assert code == 404 and body["error"]["code"] == "not_found"  # type: ignore[index]
    assert refusal(server, base + f"?pty_id={mine.pty_id}",
                   {"Authorization": f"Bearer {other.key}"})[0] == 404
    with pytest.raises(websockets.InvalidStatus) as cross:
        connect(server.url.replace("http", "ws") + base, additional_headers=auth,
                origin=Origin("http://evil.example"))
    assert cross.value.response.status_code == 403
    tenant.client.delete(f"/v1/sessions/{session_id}")
    assert refusal(server, base, auth)[0] in (404, 409)


def test_bad_frames_get_errors_and_the_terminal_goes_on(server: ServerProcess, tenant: Tenant,
                                                        session_id: str) -> None:
    t = agent(server, tenant, session_id)
    for bad in ("not json", "[1, 2]", json.dumps({"type": "resize", "cols": 10**9, "rows": 5}),
                json.dumps({"type": "resize", "cols": "80", "rows": 24}),
                json.dumps({"type": "teleport"}), json.dumps({"type": "eof"}),
                json.dumps({"type": "x", "pad": "a" * 100_000})):
        t.ws.send(bad)
        assert events(t.until_event("error"), "error"), bad
    t.send(bytes(range(256)) * 4)  # binary garbage: the shell reads it as it would any
    time.sleep(0.5)
    t.send(b"\x03")  # ^C: whatever it left half-typed is dropped
    time.sleep(0.5)
    t.send(b"\x03")
    time.sleep(0.5)
    out, code, _ = run(t, "echo alive")
    assert (out, code) == ("alive\r\n", 0)


def test_a_large_paste_is_bounded_and_others_are_unaffected(server: ServerProcess, tenant: Tenant,
                                                            session_id: str) -> None:
    t = agent(server, tenant, session_id)
    t.send("wc -c\n")
    t.until_event("command_start")
    chunk = (b"x" * 1023 + b"\n") * 64  # 64 KiB: the tty's line discipline takes lines
    start = time.monotonic()
    for _ in range(160):  # 10 MiB
        t.send(chunk)
    t.send(b"\x04")
    frames = t.until_event("command_end", timeout=120)
    assert "10485760" in text_of(frames), text_of(frames)[-200:]
    assert time.monotonic() - start < 120
    assert tenant.client.get("/healthz").status_code == 200


def test_a_client_that_never_reads_pauses_its_terminal_not_the_server(
        server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    # A raw socket: after the handshake it never reads (a library client would).
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall((f"GET /v1/sessions/{session_id}/pty?mode=agent HTTP/1.1\r\nHost: x\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                  f"Authorization: Bearer {tenant.key}\r\n\r\n").encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    line = b"yes 0123456789012345678901234567890123456789 | head -c 200000000; echo DONE\n"
    mask = os.urandom(4)
    sock.sendall(bytes([0x82, 0x80 | len(line)]) + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(line)))
    rows = tenant.client.get(f"/v1/sessions/{session_id}/commands").json()["commands"]
    pty = next(r for r in rows if r["kind"] == "pty")

    def kept() -> int:
        got = tenant.client.get(f"/v1/sessions/{session_id}/commands/{pty['id']}",
                                params={"limit": 0}).json()
        return int(got["output_size"])

    time.sleep(3)
    paused_at = kept()
    time.sleep(1)
    assert kept() == paused_at < 20_000_000  # paused: the program waits on its terminal
    t0 = time.monotonic()
    r = tenant.client.post(f"/v1/sessions/{session_id}/exec", json={"command": "echo ok"})
    assert r.json()["output"] == "ok\n" and time.monotonic() - t0 < 5
    sock.close()


def test_200_terminals_at_once(server: ServerProcess, new_tenant: NewTenant) -> None:
    tenant = new_tenant("many")
    sids = [tenant.client.post("/v1/sessions", json={}).json()["id"] for _ in range(4)]
    terms = []
    refused = 0
    for i in range(200):
        try:
            terms.append(Term(server, tenant.key, sids[i % 4], "mode=agent&shell=sh"))
        except websockets.InvalidStatus as e:
            assert e.response.status_code in (429, 503), e.response.body
            refused += 1
    assert len(terms) + refused == 200 and len(terms) >= 100
    for t in terms[:: max(1, len(terms) // 10)]:
        assert run(t, "echo ok")[:2] == ("ok\r\n", 0)
    other = new_tenant("bystander")
    r = other.client.post("/v1/exec", json={"ephemeral": True, "command": "echo fine"})
    assert r.json()["output"] == "fine\n"
    for t in terms:
        t.close()


def test_terminals_are_listed_and_streamed_as_commands(server: ServerProcess, tenant: Tenant,
                                                       session_id: str) -> None:
    t = agent(server, tenant, session_id)
    run(t, "echo transcript-line")
    t.control({"type": "close"})
    t.until_event("exit")
    c: httpx.Client = tenant.client
    rows = c.get(f"/v1/sessions/{session_id}/commands").json()["commands"]
    row = next(r for r in rows if r["id"] == t.pty_id)
    assert row["kind"] == "pty" and row["status"] == "killed" and row["end_reason"] == "pty_closed"
    stream = c.get(f"/v1/sessions/{session_id}/commands/{t.pty_id}/stream?from=0").text
    assert "transcript-line" in stream and "event: exit" in stream


def test_tickets_and_exec_commands_stay_out_of_the_servers_log(
        server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    ws_url = server.url.replace("http", "ws")
    used = tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket").json()
    with connect(ws_url + used["url"] + "&mode=agent", origin=Origin(server.url)) as ws:
        assert json.loads(ws.recv(10))["type"] == "hello"
    refused = tenant.client.post(f"/v1/sessions/{session_id}/pty-ticket").json()
    with pytest.raises(websockets.InvalidStatus):
        connect(ws_url + refused["url"], origin=Origin("http://evil.example"))
    secret = "echo exec-secret-" + os.urandom(4).hex()
    t = Term(server, tenant.key, session_id, "mode=exec&command=" + secret.replace(" ", "%20"))
    t.wait_event("exit")
    time.sleep(0.5)  # uvicorn's lines are written as the connections end
    assert server.log_path is not None
    log = server.log_path.read_text(errors="replace")
    assert f"/v1/sessions/{session_id}/pty" in log  # the lines are there, their queries not
    for needle in (used["ticket"], refused["ticket"], secret.split()[-1], "ticket="):
        assert needle not in log, needle
