"""Jobs under pressure: fair share of the pool between tenants, webhooks only to
allowlisted hosts (sent by the server, no redirects followed), and the bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.inprocess.harness import error, eventually, serving
from tests.inprocess.test_jobs import finished, get, submit


@asynccontextmanager
async def hook_server(status: int = 200,
                      location: str = "") -> AsyncIterator[tuple[int, list[bytes]]]:
    """A tiny HTTP server on loopback that records request bodies."""
    got: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        got.append(head + await reader.readexactly(length))
        extra = f"Location: {location}\r\n" if location else ""
        writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, got
    finally:
        server.close()


async def test_one_tenant_cannot_starve_another(inproc_root: Path) -> None:
    async with serving(inproc_root / "fair", job_workers=2) as api:
        greedy, polite = await api.new_tenant("greedy"), await api.new_tenant("polite")
        hogs = [(await submit(greedy, {"command": "sleep 30", "ephemeral": True,
                                       "priority": 1000}))["id"] for _ in range(5)]
        mine = await submit(polite, {"command": "echo served", "ephemeral": True})
        done = await finished(polite, mine["id"], timeout=10)
        assert done["status"] == "succeeded"
        states = [(await get(greedy, h))["status"] for h in hogs]
        assert states.count("running") == 1  # its share of a pool of 2
        for h in hogs:
            await greedy.client.post(f"/v1/jobs/{h}/cancel")


async def test_webhook_allowlisted_only_and_no_redirects(inproc_root: Path) -> None:
    async with hook_server() as (port, got), hook_server() as (eport, elsewhere), \
            hook_server(302, f"http://127.0.0.1:{eport}/elsewhere") as (rport, rgot):
        allowed = [f"127.0.0.1:{port}", f"127.0.0.1:{rport}"]  # not eport
        async with serving(inproc_root / "hooks", job_webhook_hosts=allowed) as api:
            t = await api.new_tenant("hooks")
            job = await submit(t, {"command": "exit 3", "ephemeral": True,
                                   "webhook": f"http://127.0.0.1:{port}/done"})
            await finished(t, job["id"])

            async def delivered() -> bool:
                return bool(got)

            await eventually(delivered)
            head, _, body = got[0].partition(b"\r\n\r\n")
            assert head.startswith(b"POST /done ")
            assert b"X-Chaser-Job: " + job["id"].encode() in head
            sent = json.loads(body)
            assert sent["id"] == job["id"] and sent["status"] == "failed" and sent["exit_code"] == 3
            for url in (f"http://127.0.0.1:{eport}/x", "http://169.254.169.254/latest/meta-data",
                        f"http://127.0.0.1:{port}@evil.example/x", "file:///etc/passwd",
                        f"http://user:pw@127.0.0.1:{port}/x", "http://127.0.0.1/x"):
                r = await t.client.post("/v1/jobs", json={"command": "true", "webhook": url})
                # a well-formed URL to a host not allowed: 403; a malformed one: 400
                assert r.status_code in (400, 403), (url, r.text)
                assert r.json()["error"]["code"] in ("invalid_webhook", "webhook_not_allowed")
            r = await t.client.post("/v1/schedules", json={"interval_s": 60, "job": {
                "command": "true", "webhook": "http://evil.example/"}})
            error(r, 403, "webhook_not_allowed")
            job = await submit(t, {"command": "true", "ephemeral": True,
                                   "webhook": f"http://127.0.0.1:{rport}/r"})
            await finished(t, job["id"])

            async def redirected() -> bool:
                return len(rgot) >= 1

            await eventually(redirected)
            await asyncio.sleep(0.5)
            assert elsewhere == []  # the redirect to a host not allowlisted is not followed


async def test_request_size_and_kept_jobs_bounds(inproc_root: Path) -> None:
    async with serving(inproc_root / "bounds", max_kept_jobs_per_tenant=10) as api:
        t = await api.new_tenant("bounds")
        big = {"kind": "pipeline.run", "ephemeral": True,
               "steps": [{"command": "x" * 100_000} for _ in range(12)]}
        error(await t.client.post("/v1/jobs", json=big), 413, "payload_too_large")
        ids = [(await submit(t, {"command": "true", "ephemeral": True}))["id"]
               for _ in range(12)]
        for i in ids:
            await finished(t, i)
        await api.app.state.core.jobs.store.forget_jobs_ended_before("2000-01-01", 10)
        kept = (await t.client.get("/v1/jobs?limit=200")).json()["jobs"]
        assert [j["id"] for j in kept] == ids[::-1][:10]
