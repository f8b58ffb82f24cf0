"""`POST /v1/exec`: one-shot sandboxes and workspace runs."""

from __future__ import annotations

from tests.inprocess.harness import Api, Tenant, error


async def exec_ok(t: Tenant, command: str, **fields: object) -> dict[str, object]:
    r = await t.client.post("/v1/exec", json={"command": command, **fields})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_ephemeral_result_shape(api: Api, tenant: Tenant) -> None:
    before = len(api.runtime.sandboxes)
    for extra in ({}, {"ephemeral": True}):
        res = await exec_ok(tenant, "echo 42", **extra)
        assert res == {**res, "exit_code": 0, "output": "42\n", "output_truncated": False,
                       "status": "exited", "signal": None, "timed_out": False,
                       "session_id": None, "command_id": None, "output_offset": 0,
                       "output_size": 3}
        assert isinstance(res["duration_ms"], int)
    assert len(api.runtime.sandboxes) == before  # each ended with its command
    assert (await tenant.client.get("/v1/sessions")).json()["sessions"] == []


async def test_ephemeral_sandboxes_share_nothing(tenant: Tenant) -> None:
    assert (await exec_ok(tenant, "echo x > f && cat f"))["output"] == "x\n"  # cwd /workspace
    assert (await exec_ok(tenant, "test -e f"))["exit_code"] == 1


async def test_ephemeral_fields(tenant: Tenant) -> None:
    assert (await exec_ok(tenant, "cat", stdin="in"))["output"] == "in"
    assert (await exec_ok(tenant, 'echo "$X"', env={"X": "y"}))["output"] == "y\n"
    assert (await exec_ok(tenant, 'echo "${BASH_VERSION:+bash}"', shell="bash"))["output"] == "bash\n"
    assert (await exec_ok(tenant, "pwd >/dev/null; exit 7", cwd="/tmp"))["exit_code"] == 7
    res = await exec_ok(tenant, "echo a; sleep 10", timeout_ms=200)
    assert (res["status"], res["timed_out"], res["signal"], res["output"]) == \
        ("timed_out", True, "KILL", "a\n")
    res = await exec_ok(tenant, "seq 1000", max_output_bytes=10)
    assert res["output"] == "1\n2\n3\n4\n5\n" and res["output_truncated"] is True


async def test_ephemeral_errors(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/exec", json={"command": "true", "cwd": "/workspace/nope"})
    error(r, 409, "invalid_cwd")
    r = await tenant.client.post("/v1/exec", json={"command": "true", "image": "ubuntu"})
    error(r, 404, "image_not_found")


async def test_workspace_runs_share_a_session_and_files(api: Api, tenant: Tenant) -> None:
    first = await exec_ok(tenant, "echo data > f; echo ok", workspace="proj")
    sid = first["session_id"]
    assert isinstance(sid, str) and first["output"] == "ok\n"
    second = await exec_ok(tenant, "cat f", workspace="proj")
    assert second["session_id"] == sid and second["output"] == "data\n"
    cmd = (await tenant.client.get(f"/v1/sessions/{sid}/commands/{second['command_id']}")).json()
    assert cmd["output"] == "data\n" and cmd["status"] == "exited"
    session = (await tenant.client.get(f"/v1/sessions/{sid}")).json()
    assert session["workspace"] == "proj"
    assert session["idle_timeout_s"] == api.settings.workspace_idle_timeout_s
    # Files outlive the session: a later run starts a new one on the same files.
    await tenant.client.delete(f"/v1/sessions/{sid}")
    third = await exec_ok(tenant, "cat f", workspace="proj")
    assert third["session_id"] != sid and third["output"] == "data\n"
    r = await tenant.client.post("/v1/exec", json={"command": "true", "workspace": "proj",
                                                   "image": "other"})
    error(r, 404, "image_not_found")


async def test_own_sessions_are_never_taken_over(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/sessions", json={"workspace": "mine", "env": {"M": "1"}})
    own = r.json()["id"]
    res = await exec_ok(tenant, 'echo "${M:-unset}"', workspace="mine")
    assert res["session_id"] != own and res["output"] == "unset\n"


async def test_workspaces_are_per_tenant(tenant: Tenant, other: Tenant) -> None:
    await exec_ok(tenant, "echo secret > s", workspace="same-name")
    assert (await exec_ok(other, "cat s", workspace="same-name"))["exit_code"] == 1
