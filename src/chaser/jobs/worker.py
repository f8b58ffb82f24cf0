"""The worker pool: takes due jobs from the store's queue and runs their attempts.

Bounded three ways: `job_workers` attempts at once on this server, `job_workers_per_queue`
of one queue, and `max_running_jobs_per_tenant` of one tenant (counted in the store, so
across servers). Among due jobs the store hands out first those of the tenants running
fewest, so one tenant's thousand queued jobs do not keep another's one waiting; inside
an attempt the tenant's own limits (sandboxes, commands, memory) apply as to any command.

Each attempt holds a lease, renewed every third of `job_lease_s`. A server that dies
stops renewing: its attempts are recorded failed (`infrastructure`) and retried per
policy by whichever server sweeps first, this one at its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from chaser.config import Settings
from chaser.core.execution import Executor
from chaser.core.sessions import SessionService
from chaser.core.telemetry import Telemetry
from chaser.core.util import now_iso
from chaser.jobs.models import JobCreate
from chaser.jobs.policy import AttemptEnd, backoff_s, should_retry
from chaser.jobs.runner import AttemptRunner, LostClaim, NoCapacity, describe
from chaser.store.base import Row, Store
from chaser.store.jobs import Claim
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.jobs")

IDLE_POLL_S = 1.0  # jobs other servers queue, and run_at times, are seen this often
RESERVED_WORKERS = 1  # kept for tenants running no job yet (store.jobs.Claim.reserve)
NO_CAPACITY_RETRY_S = 2.0

OnFinal = Callable[[str], Awaitable[None]]


class WorkerPool:
    """Claims jobs and runs their attempts on this server."""

    def __init__(self, settings: Settings, store: Store, sessions: SessionService,
                 executor: Executor, node: str, on_final: OnFinal) -> None:
        self.settings = settings
        self.store = store
        self.sessions = sessions
        self.executor = executor
        self.node = node
        # This process's claims: `node:process:claim`. A later process of this node
        # knows every claim of an earlier one is dead (one server per data dir).
        self.process = f"{node}:{secrets.token_hex(4)}"
        self.on_final = on_final
        self.running: dict[str, AttemptRunner] = {}
        self.per_queue: Counter[str] = Counter()
        self.telemetry: Telemetry | None = None
        self.wake = asyncio.Event()
        self.tasks = TaskSet("jobs")
        self.closing = False

    @property
    def size(self) -> int:
        return self.settings.job_workers

    @property
    def per_tenant(self) -> int:
        """Jobs one tenant may run at once: its share of the pool unless set."""
        return self.settings.max_running_jobs_per_tenant or self.settings.share(self.size)

    # -- dispatch ---------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Claim while there is room; sleep until woken or the next job falls due."""
        while not self.closing:
            self.wake.clear()
            claimed = False
            try:
                if len(self.running) < self.size:
                    claimed = await self._claim()
            except Exception:  # noqa: BLE001 - the store failing (a full disk) must not end the pool
                log.exception("jobs: could not take a job; trying again shortly")
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if claimed:
                continue
            wait = IDLE_POLL_S
            if len(self.running) < self.size:
                with contextlib.suppress(Exception):
                    due = await self.store.next_due()
                    if due is not None:
                        wait = min(wait, max(0.0, due - time.time()))
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the cancel of
            # close() when the event is set at the same moment, and this loop never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if wait > 0 else 0.01):
                    await self.wake.wait()

    async def _claim(self) -> bool:
        """Take as many due jobs as there are free workers (in one store call); start
        their attempts. Whether any was taken."""
        now = time.time()
        claim = Claim(owner=f"{self.process}:{secrets.token_hex(4)}", node=self.node, now=now,
                      lease_until=now + self.settings.job_lease_s, started_at=now_iso(),
                      limit=self.size - len(self.running), queue_running=dict(self.per_queue),
                      per_queue=self.settings.job_workers_per_queue or self.size,
                      max_running_per_tenant=self.per_tenant,
                      reserve=RESERVED_WORKERS if self.size > RESERVED_WORKERS else 0)
        rows = await self.store.claim_jobs(claim)
        for row in rows:
            previous: list[Row] = []
            if row.get("resume_step"):
                previous = [s for s in await self.store.job_steps([row["id"]])
                            if s["attempt"] == row["attempt"] - 1]
            runner = AttemptRunner(self.store, self.sessions, self.executor, row,
                                   row["lease_owner"], previous)
            self.running[row["id"]] = runner
            self.per_queue[row["queue"]] += 1
            self.tasks.spawn(self._attempt(runner, row["queue"]))
        return bool(rows)

    async def _attempt(self, runner: AttemptRunner, queue: str) -> None:
        beat = self.tasks.spawn(self._heartbeat(runner))
        try:
            await self._run(runner)
        finally:
            beat.cancel()
            self.running.pop(runner.job_id, None)
            self.per_queue[queue] -= 1
            if self.per_queue[queue] <= 0:
                del self.per_queue[queue]
            self.wake.set()

    async def _run(self, runner: AttemptRunner) -> None:
        deadline = runner.row.get("deadline")
        try:
            if deadline is not None and float(deadline) <= time.time():
                end = AttemptEnd("deadline", end_reason="deadline")
            else:
                end = await runner.run()
        except NoCapacity as e:
            if runner.current is None:  # nothing ran: not an attempt, back in the queue
                log.info("job %s: no capacity now (%s); back in the queue", runner.job_id, e)
                await self.store.release_claim(runner.job_id, runner.number, runner.owner,
                                               time.time() + NO_CAPACITY_RETRY_S)
                return
            end = AttemptEnd("infrastructure", end_reason="no_capacity")
        except LostClaim:
            log.warning("job %s: lost its claim; another server took it", runner.job_id)
            return
        except Exception:  # noqa: BLE001 - a bug or the store failing: never a job stuck running
            log.exception("job %s: attempt %d failed in the server", runner.job_id, runner.number)
            runner.stop("error")
            end = AttemptEnd("infrastructure", end_reason="server_error")
        except asyncio.CancelledError:
            # The server is shutting down: the attempt is recorded as ended by it.
            runner.stop("shutdown")
            with contextlib.suppress(Exception):
                await asyncio.shield(self.finish(runner.row, runner.owner, AttemptEnd(
                    "infrastructure", end_reason="server_shutdown"), runner.started))
            raise
        await self.finish(runner.row, runner.owner, end, runner.started)

    async def _heartbeat(self, runner: AttemptRunner) -> None:
        """Renew the attempt's lease; stop the attempt when it is no longer ours, or
        could not be renewed before it ran out (another server may take it then: two
        runs at once must never be)."""
        lease = self.settings.job_lease_s
        held_until = time.time() + lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                ours, cancel = await self.store.renew_lease(
                    runner.job_id, runner.number, runner.owner, time.time() + lease)
            except Exception:  # noqa: BLE001 - the store failing (a full disk): try again
                log.warning("job %s: could not renew its lease", runner.job_id)
                if time.time() >= held_until - lease / 6:
                    runner.stop("lost")
                    return
                continue
            held_until = time.time() + lease
            if not ours:
                runner.stop("lost")
                return
            if cancel:
                runner.stop("cancelled")

    def cancel_local(self, job_id: str) -> bool:
        """Stop the job's attempt now if it runs here (else its heartbeat sees the flag)."""
        runner = self.running.get(job_id)
        if runner is None:
            return False
        runner.stop("cancelled")
        return True

    # -- ending attempts ----------------------------------------------------------------

    async def finish(self, row: Row, owner: str, end: AttemptEnd, started_mono: float | None,
                     expired_before: float | None = None) -> bool:
        """Record the attempt's end and move the job on per its retry policy."""
        spec = JobCreate.model_validate(row["request"])
        number, now = row["attempt"], time.time()
        if row.get("cancel_requested") and end.outcome != "succeeded":
            end = AttemptEnd("cancelled", end.exit_code, end.signal, "cancelled")
        job: dict[str, Any] = {}
        retry = should_retry(spec.retry, end, number, row["max_attempts"])
        due = now + backoff_s(spec.retry, number) if retry else now
        if retry and row.get("deadline") is not None and due >= float(row["deadline"]):
            retry, end.end_reason = False, "deadline"
        if retry:
            job = {"status": "queued", "due": due, "resume_step":
                   await self._resume_at(row, end) if spec.resume_from_failed_step else None}
        else:
            status = end.attempt_status if end.outcome != "deadline" else "failed"
            job = {"status": status, "ended_at": now_iso(), "exit_code": end.exit_code,
                   "end_reason": end.end_reason}
        attempt = {**describe(end), "ended_at": now_iso()}
        if started_mono is not None:
            attempt["duration_ms"] = int((time.monotonic() - started_mono) * 1000)
        done = await self.store.finish_attempt(row["id"], number, owner, attempt, job,
                                               expired_before)
        if done:
            if self.telemetry is not None:
                self.telemetry.job_attempts.labels(end.outcome).inc()
            self.wake.set()
            if not retry:
                await self.on_final(row["id"])
        return done

    async def _resume_at(self, row: Row, end: AttemptEnd) -> int | None:
        """The step a resumed pipeline starts at: the one that failed, or (an attempt cut
        short by a crash) the first that did not succeed."""
        if end.failed_step is not None or row["kind"] != "pipeline.run":
            return end.failed_step
        steps = [s for s in await self.store.job_steps([row["id"]])
                 if s["attempt"] == row["attempt"]]
        return next((int(s["idx"]) for s in steps if s["status"] != "succeeded"), None)

    async def recover(self, sweep: bool = False) -> int:
        """Record as failed (infrastructure) the attempts of dead owners: an earlier
        process of this node, or (with `sweep`) any whose lease ran out."""
        now = time.time()
        stale = await self.store.stale_jobs(now, self.node + ":", self.process + ":")
        n = 0
        for row in stale:
            owner = str(row["lease_owner"])
            if row["id"] in self.running or owner.startswith(self.process + ":"):
                continue  # ours and alive (its renewal was late): never taken from itself
            mine_before = owner.startswith(self.node + ":")
            if not mine_before and not sweep:
                continue
            end = AttemptEnd("infrastructure", end_reason="server_lost")
            try:
                if await self.finish(row, row["lease_owner"], end, None,
                                     None if mine_before else now):
                    n += 1
            except Exception:  # noqa: BLE001 - one bad row must not keep the server down
                log.exception("job %s: could not record its interrupted attempt", row["id"])
        return n

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease_s)
            with contextlib.suppress(Exception):
                if await self.recover(sweep=True):
                    self.wake.set()

    async def close(self) -> None:
        self.closing = True
        self.wake.set()
        await self.tasks.close()
