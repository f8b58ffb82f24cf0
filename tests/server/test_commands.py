"""Background commands: start, list, get with paging, stdin, signals, timeouts."""

from __future__ import annotations

import time

import httpx

from tests.types import Json, Tenant


def start(c: httpx.Client, sid: str, command: str, **extra: object) -> Json:
    r = c.post(f"/v1/sessions/{sid}/exec", json={"command": command, "background": True, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_done(c: httpx.Client, sid: str, cid: str, timeout: float = 15) -> Json:
    deadline = time.monotonic() + timeout
    while True:
        got = c.get(f"/v1/sessions/{sid}/commands/{cid}").json()
        if got["status"] != "running" or time.monotonic() > deadline:
            return got  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_background_returns_at_once_and_outlives_the_request(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    t = time.monotonic()
    bg = start(c, session_id, "sleep 1; echo finished")
    assert time.monotonic() - t < 1.0
    assert bg["command_id"].startswith("cmd_") and isinstance(bg["pid"], int)
    got = c.get(f"/v1/sessions/{session_id}/commands/{bg['command_id']}").json()
    assert got["status"] == "running" and got["background"] is True
    done = wait_done(c, session_id, bg["command_id"])
    assert done["status"] == "exited" and done["exit_code"] == 0 and done["output"] == "finished\n"
    assert done["ended_at"] and done["started_at"]


def test_list_newest_first_with_foreground_and_background(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    c.post(f"/v1/sessions/{session_id}/exec", json={"command": "echo fg"})
    bg = start(c, session_id, "sleep 30")
    cmds = c.get(f"/v1/sessions/{session_id}/commands").json()["commands"]
    assert [x["command"] for x in cmds[:2]] == ["sleep 30", "echo fg"]
    assert cmds[0]["status"] == "running" and cmds[1]["status"] == "exited"
    assert cmds[0]["id"] == bg["command_id"]


def test_output_paging_by_offset(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    bg = start(c, session_id, "seq 1 20000")
    whole = wait_done(c, session_id, bg["command_id"])
    assert whole["output_size"] == len(whole["output"]) == sum(len(f"{i}\n") for i in range(1, 20001))
    pages, offset = [], 0
    while True:
        page = c.get(f"/v1/sessions/{session_id}/commands/{bg['command_id']}",
                     params={"from": offset, "limit": 7000}).json()
        if not page["output"]:
            break
        assert page["output_offset"] == offset
        pages.append(page["output"])
        offset = page["next_offset"]
        assert page["output_truncated"] == (offset < page["output_size"])
    assert "".join(pages) == whole["output"]


def test_stdin_round_trip_with_cat_and_eof(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    bg = start(c, session_id, "cat; echo EOF-seen")
    url = f"/v1/sessions/{session_id}/commands/{bg['command_id']}"
    for part in ["one\n", "two ", "three\n", "é✓\n"]:
        r = c.post(url + "/stdin", json={"input": part})
        assert r.status_code == 200 and r.json()["bytes"] == len(part.encode())
    time.sleep(0.3)
    assert c.get(url).json()["status"] == "running"  # stdin stays open until eof
    assert c.post(url + "/stdin", json={"eof": True}).status_code == 200
    done = wait_done(c, session_id, bg["command_id"])
    assert done["output"] == "one\ntwo three\né✓\nEOF-seen\n"
    r = c.post(url + "/stdin", json={"input": "late"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "command_finished"


def test_kill_signals_whole_process_group(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    bg = start(c, session_id, "sh -c 'sleep 500' & sh -c 'sleep 501' & echo up; wait")
    url = f"/v1/sessions/{session_id}/commands/{bg['command_id']}"
    time.sleep(0.3)
    r = c.post(url + "/kill", json={"signal": "TERM"})
    assert r.status_code == 200
    done = wait_done(c, session_id, bg["command_id"])
    assert done["status"] == "killed" and done["signal"] == "TERM"
    ps = c.post(f"/v1/sessions/{session_id}/exec",
                json={"command": "ps -eo args | grep -c '^sleep 50[01]' || true"}).json()
    assert ps["output"].strip() == "0"
    again = c.post(url + "/kill", json={"signal": "KILL"})
    assert again.status_code == 409


def test_signal_names_and_numbers(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    for sig, expect in [("KILL", "KILL"), ("INT", "INT"), ("HUP", "HUP"), ("SIGUSR1", "USR1"),
                        ("9", "KILL"), (15, "TERM")]:
        bg = start(c, session_id, "sleep 100")
        r = c.post(f"/v1/sessions/{session_id}/commands/{bg['command_id']}/kill", json={"signal": sig})
        assert r.status_code == 200, r.text
        assert wait_done(c, session_id, bg["command_id"])["signal"] == expect
    bg = start(c, session_id, "sleep 100")
    url = f"/v1/sessions/{session_id}/commands/{bg['command_id']}/kill"
    for bad in ["FOO", "SIGNOPE", 0, 1000, "", None]:
        r = c.post(url, json={"signal": bad})
        assert r.status_code in (400, 422), (bad, r.text)
    assert c.post(url).json()["signal"] == "TERM"  # default TERM, no body


def test_trap_handles_signal_and_exits_normally(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    bg = start(c, session_id, "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done")
    time.sleep(0.3)
    c.post(f"/v1/sessions/{session_id}/commands/{bg['command_id']}/kill", json={"signal": "TERM"})
    done = wait_done(c, session_id, bg["command_id"])
    assert done["status"] == "exited" and done["exit_code"] == 7 and "got-term" in done["output"]


def test_background_timeout(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    bg = start(c, session_id, "echo start; sleep 100", timeout_ms=400)
    done = wait_done(c, session_id, bg["command_id"])
    assert done["status"] == "timed_out" and done["output"] == "start\n"


def test_exit_status_fidelity(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    for cmd, code in [("nonexistent-cmd-42", 127), ("touch /tmp/nx; /tmp/nx", 126), ("exit 42", 42)]:
        bg = start(c, session_id, cmd)
        assert wait_done(c, session_id, bg["command_id"])["exit_code"] == code


def test_unknown_command_and_session_are_404(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    assert c.get(f"/v1/sessions/{session_id}/commands/cmd_nope").status_code == 404
    assert c.get("/v1/sessions/ses_nope/commands").status_code == 404
    assert c.post("/v1/sessions/ses_nope/exec", json={"command": "true"}).status_code == 404
