"""Revoking a key ends what it holds open on a real server: its terminals (WebSocket
close 4401), its event streams (an `error` event, then the end) and its unused
terminal tickets; the tenant's sandboxes and commands go on."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.sync.client import connect

from tests.conftest import ServerProcess
from tests.server.pty_client import Term, events
from tests.types import Tenant


class Follow(threading.Thread):
    """Reads one SSE stream to its end in a thread: the events it got, when it ended."""

    def __init__(self, server: ServerProcess, key: str, path: str) -> None:
        super().__init__(daemon=True)
        self.server, self.key, self.path = server, key, path
        self.events: list[tuple[str, str]] = []
        self.ended_at: float | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=httpx.Timeout(10, read=120),
                          headers={"Authorization": f"Bearer {self.key}"}) as c, \
                c.stream("GET", self.path) as r:
            assert r.status_code == 200
            name = "message"
            for line in r.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((name, line[5:].strip()))
        self.ended_at = time.monotonic()

    def names(self) -> list[str]:
        return [n for n, _ in self.events]


def wait_until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_revoking_a_key_ends_its_terminals_streams_and_tickets(
        server: ServerProcess, client: httpx.Client, tenant: Tenant) -> None:
    made = client.post("/v1/keys", json={"name": "doomed", "tenant": tenant.id}).json()
    key, key_id = made["key"], made["id"]
    sid = tenant.client.post("/v1/sessions", json={}).json()["id"]
    cmd = tenant.client.post(f"/v1/sessions/{sid}/exec", json={
        "command": "while :; do echo tick; sleep 0.2; done", "background": True}).json()
    job = tenant.client.post("/v1/jobs", json={"command": "while :; do echo job; sleep 0.2; done",
                                                "timeout_ms": 120_000}).json()
    with server.client(key) as doomed:
        ticket = doomed.post(f"/v1/sessions/{sid}/pty-ticket").json()["url"]
    term = Term(server, key, sid, "mode=agent")
    kept = Term(server, tenant.key, sid, "mode=agent")  # the tenant's other key: untouched
    follows = [Follow(server, key, f"/v1/sessions/{sid}/commands/{cmd['command_id']}/stream"),
               Follow(server, key, f"/v1/jobs/{job['id']}/stream")]
    for f in follows:
        f.start()
    wait_until(lambda: all(("output" in f.names()) for f in follows), "output on both streams")

    revoked_at = time.monotonic()
    assert client.delete(f"/v1/keys/{key_id}").status_code == 200
    for f in follows:
        f.join(10)
        assert not f.is_alive(), f"{f.path} still streams after the revoke"
        assert f.ended_at is not None and f.ended_at - revoked_at < 5
        name, data = f.events[-1]
        assert name == "error" and json.loads(data)["error"]["code"] == "key_revoked"
        assert "exit" not in f.names()
    frames = term.read_until(lambda fs: any(isinstance(x, dict) and x["type"] == "error"
                                            for x in fs), timeout=10)
    assert events(frames, "error")[-1]["code"] == "key_revoked"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            term.ws.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "API key revoked")

    # A ticket taken before the revoke opens nothing after it.
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(server.url.replace("http", "ws") + ticket)
    assert refused.value.response.status_code == 401
    # The tenant's work goes on: its command runs, its other key's terminal answers.
    got = tenant.client.get(f"/v1/sessions/{sid}/commands/{cmd['command_id']}?limit=0").json()
    assert got["status"] == "running"
    kept.send("echo still-$((40+2))\n")
    kept.until_text("still-42")
    kept.close()
    tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    tenant.client.delete(f"/v1/sessions/{sid}")
