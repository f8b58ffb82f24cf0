"""The async SDK end to end against a real server."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

import chaser
from chaser import AsyncClient, AsyncCommandHandle, ExitEvent, OutputEvent
from tests.conftest import ServerProcess, free_port
from tests.types import NewTenant, Tenant



@pytest.fixture
async def sdk(server: ServerProcess, tenant: Tenant) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, tenant.key) as c:
        yield c


async def collect(handle: AsyncCommandHandle, from_offset: int = 0) -> tuple[str, ExitEvent]:
    text, exit_event = "", None
    async for ev in handle.stream(from_offset=from_offset, timeout=60):
        if isinstance(ev, OutputEvent):
            text += ev.data
        else:
            exit_event = ev
    assert exit_event is not None
    return text, exit_event


async def test_exec(sdk: AsyncClient) -> None:
    r = await sdk.exec("python3 -c 'print(42)'", ephemeral=True)
    assert (r.exit_code, r.output) == (0, "42\n")
    r = await sdk.exec("echo $X; exit 2", workspace="async-ws", env={"X": "y"})
    assert (r.exit_code, r.output) == (2, "y\n") and r.session_id


async def test_session_background_stream_resume(sdk: AsyncClient) -> None:
    async with await sdk.sessions.create() as s:
        assert s.id in [x.id for x in await sdk.sessions.list(status="running")]
        cmd = await s.exec("for i in 1 2 3; do echo n$i; sleep 0.1; done", background=True)
        text, exit_event = await collect(cmd)
        assert text == "n1\nn2\nn3\n"
        assert (exit_event.status, exit_event.exit_code) == ("exited", 0)
        tail, _ = await collect(cmd, from_offset=3)
        assert tail == text[3:]
        assert (await cmd.wait()).exit_code == 0
        assert await cmd.output() == text
        assert [c.id for c in await s.list_commands()] == [cmd.id]
    assert (await s.info()).status == "stopped"


async def test_session_usage(sdk: AsyncClient) -> None:
    async with await sdk.sessions.create() as s:
        await s.exec("head -c 20000000 /dev/zero > /workspace/blob")
        u = await s.usage()
        assert u is not None and u.disk_bytes is not None and u.disk_bytes >= 20_000_000
        listed = {h.id: h.last_info.usage for h in await sdk.sessions.list(usage=True)}
        mine = listed[s.id]
        assert mine is not None and mine.sampled_at.endswith("Z")
    assert await s.usage() is None


async def test_stdin_and_kill(sdk: AsyncClient) -> None:
    s = await sdk.sessions.create()
    cat = await s.exec("cat", background=True)
    await cat.send_stdin("ping\n")
    await cat.close_stdin()
    done = await cat.wait(timeout=30)
    assert (done.exit_code, done.output) == (0, "ping\n")

    sleeper = await s.exec("sleep 30", background=True)
    with pytest.raises(chaser.TimeoutError):
        await sleeper.wait(timeout=0.3)
    await sleeper.kill("KILL")
    done = await sleeper.wait(timeout=30)
    assert (done.status, done.signal) == ("killed", "KILL")
    with pytest.raises(chaser.ConflictError):
        await sleeper.send_stdin("x")
    await s.delete()


async def test_errors_and_isolation(server: ServerProcess, new_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = new_tenant("a"), new_tenant("b")
    async with AsyncClient(server.url, a.key) as ca, AsyncClient(server.url, b.key) as cb:
        s = await ca.sessions.create()
        with pytest.raises(chaser.NotFoundError) as e:
            await cb.sessions.get(s.id)
        assert e.value.code == "not_found"
        with pytest.raises(chaser.NotFoundError):
            await cb.sessions.delete(s.id)
        await s.delete()
    async with AsyncClient(server.url, "nope") as bad:
        with pytest.raises(chaser.AuthenticationError):
            await bad.sessions.list()
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "k", retries=0) as down:
        with pytest.raises(chaser.ConnectionError):
            await down.exec("true")


async def test_stdin_bytes_and_streams(sdk: AsyncClient) -> None:
    s = await sdk.sessions.create()
    cmd = await s.exec("sha256sum", background=True)
    await cmd.send_stdin(b"\xff\x00")

    async def blocks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"\x07" * (1 << 20)
    assert (await cmd.stream_stdin(blocks())).bytes == 4 << 20
    digest = hashlib.sha256(b"\xff\x00" + b"\x07" * (4 << 20)).hexdigest()
    assert str((await cmd.wait(timeout=60)).output).split()[0] == digest
    r = await s.exec("od -An -tx1", stdin=b"\x01\xfe")
    assert r.output.split() == ["01", "fe"]
    await s.delete()
