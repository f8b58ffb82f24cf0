"""Sessions: create, read, list, delete, tenancy, and foreground commands in them."""

from __future__ import annotations

import asyncio

from tests.inprocess.harness import Api, Tenant, error, eventually


async def run(t: Tenant, sid: str, command: str, **fields: object) -> dict[str, object]:
    r = await t.client.post(f"/v1/sessions/{sid}/exec", json={"command": command, **fields})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_create_get_list_delete(api: Api, tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/sessions", json={
        "env": {"GREETING": "hi"}, "cwd": "/home/user", "idle_timeout_s": 600,
        "limits": {"memory_mb": 10**6, "pids": 64, "cpus": 0.5}})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["id"].startswith("ses_") and s["status"] == "running"
    assert (s["image"], s["workspace"], s["cwd"]) == ("default", None, "/home/user")
    assert s["env"] == {"GREETING": "hi"} and s["idle_timeout_s"] == 600
    assert s["limits"]["memory_mb"] == api.settings.max_memory_mb  # capped by the server
    assert (s["limits"]["pids"], s["limits"]["cpus"]) == (64, 0.5)
    assert s["ended_at"] is None and s["end_reason"] is None
    second = (await tenant.client.post("/v1/sessions")).json()  # no body at all

    got = (await tenant.client.get(f"/v1/sessions/{s['id']}")).json()
    assert got["id"] == s["id"] and got["status"] == "running"
    listed = (await tenant.client.get("/v1/sessions")).json()["sessions"]
    assert [x["id"] for x in listed] == [second["id"], s["id"]]  # newest first

    r = await tenant.client.delete(f"/v1/sessions/{s['id']}")
    assert r.status_code == 200
    assert r.json()["status"] == "stopped" and r.json()["end_reason"] == "deleted"
    assert r.json()["ended_at"] is not None
    running = (await tenant.client.get("/v1/sessions?status=running")).json()["sessions"]
    stopped = (await tenant.client.get("/v1/sessions?status=stopped")).json()["sessions"]
    assert [x["id"] for x in running] == [second["id"]]
    assert [x["id"] for x in stopped] == [s["id"]]
    error(await tenant.client.get("/v1/sessions?status=paused"), 422, "invalid_request")
    # Deleting again answers the stopped session; running in it is 409.
    again = await tenant.client.delete(f"/v1/sessions/{s['id']}")
    assert again.status_code == 200 and again.json()["status"] == "stopped"
    r = await tenant.client.post(f"/v1/sessions/{s['id']}/exec", json={"command": "true"})
    error(r, 409, "session_stopped")


async def test_unknown_image_is_404(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/sessions", json={"image": "alpine:3"})
    assert "alpine:3" in error(r, 404, "image_not_found")


async def test_another_tenants_session_is_404(tenant: Tenant, other: Tenant,
                                             session_id: str) -> None:
    cmd = await run(tenant, session_id, "echo mine")
    base = f"/v1/sessions/{session_id}"
    for r in (await other.client.get(base),
              await other.client.delete(base),
              await other.client.post(f"{base}/exec", json={"command": "true"}),
              await other.client.get(f"{base}/commands"),
              await other.client.get(f"{base}/commands/{cmd['command_id']}"),
              await other.client.get(f"{base}/commands/{cmd['command_id']}/stream"),
              await other.client.post(f"{base}/commands/{cmd['command_id']}/stdin",
                                      json={"eof": True}),
              await other.client.post(f"{base}/commands/{cmd['command_id']}/kill")):
        error(r, 404, "not_found")
    assert (await other.client.get("/v1/sessions")).json()["sessions"] == []
    assert (await tenant.client.get(base)).json()["status"] == "running"  # untouched


async def test_foreground_exec_result(tenant: Tenant, session_id: str) -> None:
    res = await run(tenant, session_id, "echo out; echo err >&2; exit 3")
    assert res["exit_code"] == 3 and res["status"] == "exited"
    assert res["output"] == "out\nerr\n" and res["output_size"] == 8
    assert res["signal"] is None and res["timed_out"] is False
    assert res["session_id"] == session_id and str(res["command_id"]).startswith("cmd_")
    r = await tenant.client.get(f"/v1/sessions/{session_id}/commands/{res['command_id']}")
    cmd = r.json()
    assert (cmd["status"], cmd["exit_code"], cmd["end_reason"]) == ("exited", 3, "exit")
    assert cmd["output"] == "out\nerr\n" and cmd["background"] is False


async def test_env_cwd_shell_and_stdin(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/sessions", json={"env": {"A": "1"}})
    sid = r.json()["id"]
    assert (await run(tenant, sid, 'echo "$A$B"', env={"B": "2"}))["output"] == "12\n"
    assert (await run(tenant, sid, 'echo "$USER $LANG"'))["output"] == "user C.UTF-8\n"
    # Files persist between commands of a session; cwd defaults to /workspace.
    await run(tenant, sid, "mkdir -p a/b")
    assert (await run(tenant, sid, "echo deep > f", cwd="/workspace/a/b"))["exit_code"] == 0
    assert (await run(tenant, sid, "cat a/b/f"))["output"] == "deep\n"
    await run(tenant, sid, "echo home > h", cwd="/home/user")
    assert (await run(tenant, sid, 'cat "$HOME/h"'))["output"] == "home\n"
    assert (await run(tenant, sid, 'echo "${BASH_VERSION:+bash}"', shell="bash"))["output"] == "bash\n"
    assert (await run(tenant, sid, 'echo "${BASH_VERSION:+bash}"'))["output"] == "\n"
    assert (await run(tenant, sid, "cat", stdin="fed in"))["output"] == "fed in"


async def test_missing_cwd_is_400(tenant: Tenant, session_id: str) -> None:
    r = await tenant.client.post(f"/v1/sessions/{session_id}/exec",
                                 json={"command": "true", "cwd": "/workspace/nope"})
    error(r, 409, "invalid_cwd")
    r = await tenant.client.post("/v1/sessions", json={"cwd": "/workspace/nope"})
    sid = r.json()["id"]  # a session's cwd is only entered by its commands
    r = await tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
    error(r, 409, "invalid_cwd")


async def test_timeout_and_output_bounds(tenant: Tenant, session_id: str) -> None:
    res = await run(tenant, session_id, "echo start; sleep 10", timeout_ms=200)
    assert (res["status"], res["timed_out"], res["signal"]) == ("timed_out", True, "KILL")
    assert res["exit_code"] is None and res["output"] == "start\n"
    res = await run(tenant, session_id, "printf 0123456789", max_output_bytes=4)
    assert (res["output"], res["output_truncated"], res["output_size"]) == ("0123", True, 10)
    res = await run(tenant, session_id, "kill -9 $$")
    assert (res["status"], res["signal"], res["exit_code"]) == ("killed", "KILL", None)


async def test_delete_kills_commands_and_purge_drops_output(tenant: Tenant,
                                                            session_id: str) -> None:
    base = f"/v1/sessions/{session_id}"
    done = await run(tenant, session_id, "echo kept")
    r = await tenant.client.post(f"{base}/exec", json={"command": "sleep 30", "background": True})
    bg = r.json()["command_id"]
    r = await tenant.client.delete(f"{base}?purge=true")
    assert r.json()["end_reason"] == "deleted"
    cmd = (await tenant.client.get(f"{base}/commands/{bg}")).json()
    assert (cmd["status"], cmd["signal"], cmd["end_reason"]) == ("killed", "KILL", "session_deleted")
    purged = (await tenant.client.get(f"{base}/commands/{done['command_id']}")).json()
    assert purged["status"] == "exited" and purged["output"] == ""
    assert purged["output_start"] == purged["output_size"] == 5


async def test_sandbox_that_ends_by_itself_stops_its_session(api: Api, tenant: Tenant,
                                                             session_id: str) -> None:
    await api.runtime.sandboxes[session_id].close()

    async def stopped() -> bool:
        r = await tenant.client.get(f"/v1/sessions/{session_id}")
        return bool(r.json()["status"] == "stopped")

    await eventually(stopped)
    r = await tenant.client.get(f"/v1/sessions/{session_id}")
    assert r.json()["end_reason"] == "sandbox_exited"


async def test_idle_session_times_out(tenant: Tenant) -> None:
    sid = (await tenant.client.post("/v1/sessions", json={"idle_timeout_s": 1})).json()["id"]
    await asyncio.sleep(0.5)
    assert (await tenant.client.get(f"/v1/sessions/{sid}")).json()["status"] == "running"

    async def stopped() -> bool:
        return bool((await tenant.client.get(f"/v1/sessions/{sid}")).json()["status"] == "stopped")

    await eventually(stopped, timeout=4)
    assert (await tenant.client.get(f"/v1/sessions/{sid}")).json()["end_reason"] == "idle_timeout"
