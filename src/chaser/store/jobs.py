"""The part of the Store protocol that holds jobs, their attempts and steps, and schedules.

The queue lives here, in the state store, so that several servers sharing one database
can take jobs from it (docs/jobs.md, "Design"). Every change to a running job is a
conditional write fenced by the claim that took it: the job's attempt number and the
claim's owner token (`lease_owner`) must still be the job's, and the job still
`running`. A worker that lost its lease (its server was thought dead) writes nothing.
Times that are compared (`due`, `lease_expires`, `deadline`, `next_run`) are seconds
since the epoch; times that are shown are ISO 8601 text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Row = dict[str, Any]
Inserted = Literal["created", "existing", "full"]


@dataclass
class JobFilter:
    """What `GET /v1/jobs` narrows to; `after` is the cursor (a job's `seq`)."""

    status: str | None = None
    kind: str | None = None
    queue: str | None = None
    workspace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    schedule_id: str | None = None
    after: int | None = None
    limit: int = 50


@dataclass
class Claim:
    """Who takes jobs and on what terms: fencing token, lease, and fair-share bounds."""

    owner: str  # unique per claim: node, process and a random part (+ ":N" per job taken)
    node: str
    now: float
    lease_until: float
    started_at: str
    limit: int = 1  # jobs to take at most (the pool's free workers)
    queue_running: dict[str, int] = field(default_factory=dict)  # on this server
    per_queue: int = 1_000_000
    max_running_per_tenant: int = 1_000_000
    # Workers kept for tenants running nothing yet: the last `reserve` free workers go
    # only to a tenant with no job running, so jobs that never end cannot shut out a
    # newcomer.
    reserve: int = 0


class JobStore(Protocol):
    """Jobs, attempts, steps and schedules (see the module docstring on fencing)."""

    async def insert_job(self, row: Row, max_active: int) -> tuple[Inserted, Row | None]:
        """Insert a job unless the tenant has one with the same idempotency key
        ("existing", that one) or `max_active` queued or running ("full", None)."""

    async def get_job(self, tenant: str | None, job_id: str) -> Row | None: ...

    async def list_jobs(self, tenant: str, where: JobFilter) -> list[Row]: ...

    async def job_attempts(self, job_ids: list[str]) -> list[Row]: ...

    async def job_steps(self, job_ids: list[str]) -> list[Row]: ...

    async def claim_jobs(self, claim: Claim) -> list[Row]:
        """Take up to `claim.limit` due jobs, one at a time the fairest (the tenants
        running fewest first, then priority, then age), and open each one's next attempt
        (owner `claim.owner:N`); none when nothing may start."""

    async def next_due(self) -> float | None:
        """When the earliest queued job falls due (None: nothing queued)."""

    async def renew_lease(self, job_id: str, attempt: int, owner: str,
                          until: float) -> tuple[bool, bool]:
        """Extend the lease; (still ours, cancel requested)."""

    async def update_attempt(self, job_id: str, attempt: int, owner: str,
                             **fields: Any) -> bool: ...

    async def put_step(self, job_id: str, attempt: int, owner: str, row: Row) -> bool:
        """Insert or replace a step of the attempt (fenced)."""

    async def finish_attempt(self, job_id: str, attempt: int, owner: str,
                             attempt_fields: Row, job_fields: Row,
                             expired_before: float | None = None) -> bool:
        """End the attempt and move the job on (queued again, or final) in one
        transaction; with `expired_before`, only when the lease ran out before then."""

    async def release_claim(self, job_id: str, attempt: int, owner: str, due: float) -> bool:
        """Give a claimed job back unstarted (no capacity): the attempt is forgotten."""

    async def stale_jobs(self, now: float, node_prefix: str, current: str) -> list[Row]:
        """Running jobs whose lease ran out, or held by an earlier process of this node."""

    async def request_cancel(self, tenant: str, job_id: str, when: str) -> Row | None:
        """Cancel a queued job at once, or flag a running one; the job, or None."""

    async def requeue_job(self, tenant: str, job_id: str, due: float, max_attempts: int,
                          resume_step: int | None, max_active: int,
                          deadline: float | None) -> Row | None | Literal["full"]:
        """Queue a finished job for another attempt, under a new `deadline`; None when it
        is not finished, "full" when the tenant already has `max_active` jobs queued or
        running."""

    async def forget_jobs_ended_before(self, cutoff: str, keep_per_tenant: int) -> int:
        """Forget finished jobs that ended before `cutoff`, and each tenant's oldest
        finished ones past `keep_per_tenant`; how many."""

    async def insert_schedule(self, row: Row) -> None: ...

    async def get_schedule(self, tenant: str, schedule_id: str) -> Row | None: ...

    async def list_schedules(self, tenant: str) -> list[Row]: ...

    async def update_schedule(self, tenant: str, schedule_id: str, **fields: Any) -> bool: ...

    async def delete_schedule(self, tenant: str, schedule_id: str) -> bool: ...

    async def due_schedules(self, now: float) -> list[Row]: ...

    async def advance_schedule(self, schedule_id: str, expected_next: float, next_run: float,
                               **fields: Any) -> bool:
        """Move a schedule's next run on, only if no one else did (fenced by its old value)."""

    async def next_schedule_due(self) -> float | None: ...
