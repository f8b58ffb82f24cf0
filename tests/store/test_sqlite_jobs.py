"""The queue in the store: claims by conditional write, fencing by attempt and owner,
leases, fair order between tenants, bounds, schedules moved on once per tick."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaser.store.jobs import Claim
from chaser.store.sqlite import SQLiteStore
from tests.types import Json


def job_row(job_id: str, tenant: str = "a", **extra: object) -> Json:
    return {"id": job_id, "tenant": tenant, "kind": "sandbox.exec", "status": "queued",
            "queue": "default", "priority": 0, "workspace": None, "labels": {"k": "v"},
            "idempotency_key": None, "schedule_id": None, "request": {"command": "true"},
            "created_at": "2026-01-01T00:00:00.000Z", "run_at": None, "due": time.time() - 1,
            "deadline": None, "max_attempts": 3, "after_job": None, **extra}


def claim(owner: str = "n:p:c", limit: int = 1, **extra: object) -> Claim:
    now = time.time()
    return Claim(owner=owner, node="n", now=now, lease_until=now + 30,
                 started_at="2026-01-01T00:00:01.000Z", limit=limit, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "db")
    await s.open()
    yield s
    await s.close()


async def test_claim_is_won_once_and_writes_are_fenced(store: SQLiteStore) -> None:
    assert (await store.insert_job(job_row("j1"), 10))[0] == "created"
    [row] = await store.claim_jobs(claim("n:p:x"))
    owner = row["lease_owner"]
    assert (row["status"], row["attempt"], owner) == ("running", 1, "n:p:x:0")
    assert await store.claim_jobs(claim("n:q:y")) == []  # nobody takes it twice
    assert await store.update_attempt("j1", 1, owner, command_id="cmd_1")
    assert not await store.update_attempt("j1", 1, "n:q:y:0", command_id="cmd_2")
    assert not await store.update_attempt("j1", 2, owner, command_id="cmd_2")
    assert not await store.put_step("j1", 1, "someone", {"idx": 0, "name": "s", "status": "x",
                                                         "tries": 1})
    assert await store.renew_lease("j1", 1, owner, time.time() + 60) == (True, False)
    assert await store.renew_lease("j1", 1, "thief", time.time() + 60) == (False, False)
    # A sweep's write only wins once the lease has run out.
    assert not await store.finish_attempt("j1", 1, owner, {"status": "failed"},
                                          {"status": "queued"}, expired_before=time.time())
    assert await store.finish_attempt("j1", 1, owner, {"status": "failed", "exit_code": 1},
                                      {"status": "queued", "due": time.time() - 1})
    assert not await store.finish_attempt("j1", 1, owner, {"status": "x"}, {"status": "failed"})
    [again] = await store.claim_jobs(claim("n:p:z"))
    assert again["attempt"] == 2
    attempts = await store.job_attempts(["j1"])
    assert [(a["number"], a["status"], a["command_id"]) for a in attempts] == [
        (1, "failed", "cmd_1"), (2, "running", None)]


async def test_release_forgets_the_unstarted_attempt(store: SQLiteStore) -> None:
    await store.insert_job(job_row("j1"), 10)
    [row] = await store.claim_jobs(claim())
    assert await store.release_claim("j1", 1, row["lease_owner"], time.time() + 60)
    got = await store.get_job("a", "j1")
    assert got is not None and (got["status"], got["attempt"]) == ("queued", 0)
    assert await store.job_attempts(["j1"]) == []
    assert await store.claim_jobs(claim()) == []  # not due for a minute


async def test_tenants_running_fewest_go_first(store: SQLiteStore) -> None:
    for i in range(5):
        await store.insert_job(job_row(f"a{i}", "a", priority=100), 10)
    await store.insert_job(job_row("b0", "b"), 10)
    first = await store.claim_jobs(claim(limit=2))
    assert sorted(r["tenant"] for r in first) == ["a", "b"]  # not a's two best
    more = await store.claim_jobs(claim(limit=5, max_running_per_tenant=2))
    assert [r["id"] for r in more] == ["a1"]  # a is at its cap of 2; b has nothing left
    none = await store.claim_jobs(claim(limit=5, queue_running={"default": 4}, per_queue=4))
    assert none == []  # the queue is full on this server


async def test_the_last_free_worker_waits_for_a_newcomer(store: SQLiteStore) -> None:
    for tenant in ("a", "b"):
        for i in range(3):
            await store.insert_job(job_row(f"{tenant}{i}", tenant), 10)
    taken = await store.claim_jobs(claim(limit=4, reserve=1))
    # a and b take three; the fourth worker is kept (both already run something)
    assert len(taken) == 3
    assert await store.claim_jobs(claim(limit=1, reserve=1)) == []
    await store.insert_job(job_row("c0", "c"), 10)
    newcomer = await store.claim_jobs(claim(limit=1, reserve=1))
    assert [r["id"] for r in newcomer] == ["c0"]


async def test_a_lone_tenant_uses_the_whole_pool(store: SQLiteStore) -> None:
    for i in range(4):
        await store.insert_job(job_row(f"a{i}", "a"), 10)
    assert len(await store.claim_jobs(claim(limit=4, reserve=1))) == 4


async def test_idempotency_and_queue_bound(store: SQLiteStore) -> None:
    assert (await store.insert_job(job_row("j1", idempotency_key="k"), 2))[0] == "created"
    outcome, row = await store.insert_job(job_row("j2", idempotency_key="k"), 2)
    assert outcome == "existing" and row is not None and row["id"] == "j1"
    assert (await store.insert_job(job_row("j3", "b", idempotency_key="k"), 2))[0] == "created"
    assert (await store.insert_job(job_row("j4"), 2))[0] == "created"
    assert await store.insert_job(job_row("j5"), 2) == ("full", None)


async def test_stale_jobs_and_cancel(store: SQLiteStore) -> None:
    await store.insert_job(job_row("j1"), 10)
    await store.insert_job(job_row("j2"), 10)
    await store.claim_jobs(claim("node:old", limit=2))
    stale = await store.stale_jobs(time.time(), "node:", "node:new:")
    assert sorted(r["id"] for r in stale) == ["j1", "j2"]  # an earlier process of this node
    assert await store.stale_jobs(time.time(), "node:", "node:old:") == []  # its own
    got = await store.request_cancel("a", "j1", "2026-01-01T00:00:02.000Z")
    assert got is not None and got["status"] == "running" and got["cancel_requested"]
    assert await store.request_cancel("b", "j1", "x") is None
    await store.insert_job(job_row("j3"), 10)
    got = await store.request_cancel("a", "j3", "2026-01-01T00:00:02.000Z")
    assert got is not None and got["status"] == "cancelled"
    assert await store.requeue_job("a", "j1", time.time(), 5, None, 100, None) is None  # running
    assert await store.requeue_job("a", "j3", time.time(), 5, None, 1, None) == "full"
    again = await store.requeue_job("a", "j3", time.time(), 5, None, 100, 1234.5)
    assert isinstance(again, dict) and again["status"] == "queued" and again["max_attempts"] == 5
    assert again["deadline"] == 1234.5  # a retry runs under a deadline of its own


async def test_schedule_tick_moves_on_once(store: SQLiteStore) -> None:
    due = time.time() - 5
    await store.insert_schedule({"id": "s1", "tenant": "a", "name": "", "cron": None,
                                 "timezone": "UTC", "interval_s": 60, "overlap": "skip",
                                 "paused": 0, "job": {"command": "true"},
                                 "created_at": "x", "next_run": due})
    assert [r["id"] for r in await store.due_schedules(time.time())] == ["s1"]
    assert await store.advance_schedule("s1", due, due + 60, last_job_id="j1")
    assert not await store.advance_schedule("s1", due, due + 120)  # that tick is taken
    assert await store.due_schedules(time.time()) == []
    assert await store.get_schedule("b", "s1") is None
    assert not await store.delete_schedule("b", "s1")
