"""Jobs and schedules in SQLite (the `JobStore` half of `SQLiteStore`).

Plain SQL that PostgreSQL runs as well: claims are a SELECT of candidates and a
conditional UPDATE (`WHERE status = 'queued'`) whose row count says who won; every
later write of the attempt is fenced by `attempt` and `lease_owner`. On PostgreSQL the
candidate SELECT would add `FOR UPDATE SKIP LOCKED`; nothing else changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Literal, Any, TypeVar

from chaser.store.jobs import Claim, Inserted, JobFilter, Row

T = TypeVar("T")

JOB_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, tenant TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, queue TEXT NOT NULL, priority INTEGER NOT NULL, workspace TEXT,
    labels TEXT NOT NULL, idempotency_key TEXT, schedule_id TEXT, request TEXT NOT NULL,
    created_at TEXT NOT NULL, run_at TEXT, due REAL NOT NULL, deadline REAL,
    attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    lease_owner TEXT, lease_expires REAL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    after_job TEXT, resume_step INTEGER, started_at TEXT, ended_at TEXT,
    exit_code INTEGER, end_reason TEXT, UNIQUE (tenant, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, seq);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, due, tenant);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (tenant, status, priority DESC, due, seq);
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id TEXT NOT NULL, number INTEGER NOT NULL, status TEXT NOT NULL, exit_code INTEGER,
    signal TEXT, end_reason TEXT, node TEXT, owner TEXT, started_at TEXT NOT NULL,
    ended_at TEXT, duration_ms INTEGER, session_id TEXT, command_id TEXT,
    PRIMARY KEY (job_id, number)
);
CREATE TABLE IF NOT EXISTS job_steps (
    job_id TEXT NOT NULL, attempt INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, exit_code INTEGER, end_reason TEXT, tries INTEGER NOT NULL,
    started_at TEXT, ended_at TEXT, duration_ms INTEGER, session_id TEXT, command_id TEXT,
    reused_from_attempt INTEGER, PRIMARY KEY (job_id, attempt, idx)
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, tenant TEXT NOT NULL, name TEXT NOT NULL,
    cron TEXT, timezone TEXT NOT NULL, interval_s INTEGER, overlap TEXT NOT NULL,
    paused INTEGER NOT NULL, job TEXT NOT NULL, created_at TEXT NOT NULL,
    next_run REAL, last_run_at TEXT, last_job_id TEXT
);
CREATE INDEX IF NOT EXISTS schedules_tenant ON schedules (tenant, seq);
"""

JOB_JSON = ("labels", "request", "job")
ACTIVE = "('queued', 'running')"
FENCE = "id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'"


class SQLiteJobs:
    """Mixed into SQLiteStore, which provides `_run` (a call on the store's thread)."""

    async def _run(self, fn: Callable[[sqlite3.Connection], T], urgent: bool = False) -> T:
        raise NotImplementedError

    # -- jobs -------------------------------------------------------------------------

    async def insert_job(self, row: Row, max_active: int) -> tuple[Inserted, Row | None]:
        values = _encode(row)

        def insert(db: sqlite3.Connection) -> tuple[Inserted, Row | None]:
            key = values.get("idempotency_key")
            if key is not None:
                old = db.execute("SELECT * FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                                 (values["tenant"], key)).fetchone()
                if old is not None:
                    return "existing", _decode(old)
            active = db.execute(f"SELECT COUNT(*) FROM jobs WHERE tenant = ? AND status IN {ACTIVE}",
                                (values["tenant"],)).fetchone()[0]
            if active >= max_active:
                return "full", None
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            cols = {**values, "seq": seq}
            db.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' for _ in cols)})", list(cols.values()))
            return "created", _decode(db.execute("SELECT * FROM jobs WHERE id = ?",
                                                 (values["id"],)).fetchone())

        return await self._run(insert, urgent=True)

    async def get_job(self, tenant: str | None, job_id: str) -> Row | None:
        sql, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", [job_id, tenant]
        return await self._run(lambda db: _decode(db.execute(sql, args).fetchone()))

    async def list_jobs(self, tenant: str, where: JobFilter) -> list[Row]:
        sql = "SELECT * FROM jobs WHERE tenant = ?"
        args: list[Any] = [tenant]
        for col in ("status", "kind", "queue", "workspace", "schedule_id"):
            value = getattr(where, col)
            if value is not None:
                sql += f" AND {col} = ?"
                args.append(value)
        if where.after is not None:
            sql += " AND seq < ?"
            args.append(where.after)
        # Labels are filtered here, not in SQL: JSON operators differ between engines.
        wanted = where.labels

        def select(db: sqlite3.Connection) -> list[Row]:
            out: list[Row] = []
            for r in db.execute(sql + " ORDER BY seq DESC", args):
                row = _decode(r)
                assert row is not None
                if all(row["labels"].get(k) == v for k, v in wanted.items()):
                    out.append(row)
                    if len(out) >= where.limit:
                        break
            return out

        return await self._run(select)

    async def job_attempts(self, job_ids: list[str]) -> list[Row]:
        return await self._in("job_attempts", "job_id", job_ids, "number")

    async def job_steps(self, job_ids: list[str]) -> list[Row]:
        return await self._in("job_steps", "job_id", job_ids, "attempt, idx")

    async def _in(self, table: str, col: str, ids: list[str], order: str) -> list[Row]:
        def select(db: sqlite3.Connection) -> list[Row]:
            out: list[Row] = []
            for i in range(0, len(ids), 500):
                batch = ids[i:i + 500]
                marks = ", ".join("?" for _ in batch)
                out += [dict(r) for r in db.execute(
                    f"SELECT * FROM {table} WHERE {col} IN ({marks}) ORDER BY {order}", batch)]
            return out

        return await self._run(select) if ids else []

    async def claim_jobs(self, claim: Claim) -> list[Row]:
        def take(db: sqlite3.Connection) -> list[Row]:
            running: dict[str, int] = dict(db.execute(
                "SELECT tenant, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY tenant"
            ).fetchall())
            tenants = [r[0] for r in db.execute(
                "SELECT DISTINCT tenant FROM jobs WHERE status = 'queued' AND due <= ?",
                (claim.now,)) if running.get(r[0], 0) < claim.max_running_per_tenant]
            queues = dict(claim.queue_running)
            taken: list[Row] = []
            while len(taken) < claim.limit and tenants:
                # The reserve matters once two tenants share the pool: a lone tenant
                # may use it all.
                if claim.limit - len(taken) <= claim.reserve and \
                        sum(1 for n in running.values() if n > 0) >= 2:
                    tenants = [t for t in tenants if running.get(t, 0) == 0]
                found = _fairest(db, claim, tenants, running, queues)
                if found is None:
                    break
                row = _take(db, claim, found, f"{claim.owner}:{len(taken)}")
                if row is None:
                    continue  # another server took it first; look again
                taken.append(row)
                running[row["tenant"]] = running.get(row["tenant"], 0) + 1
                queues[row["queue"]] = queues.get(row["queue"], 0) + 1
                if running[row["tenant"]] >= claim.max_running_per_tenant:
                    tenants.remove(row["tenant"])
            return taken

        return await self._run(take, urgent=True)

    async def next_due(self) -> float | None:
        return await self._run(lambda db: db.execute(
            "SELECT MIN(due) FROM jobs WHERE status = 'queued'").fetchone()[0])

    async def renew_lease(self, job_id: str, attempt: int, owner: str,
                          until: float) -> tuple[bool, bool]:
        def renew(db: sqlite3.Connection) -> tuple[bool, bool]:
            n = db.execute(f"UPDATE jobs SET lease_expires = ? WHERE {FENCE}",
                           (until, job_id, attempt, owner)).rowcount
            if n != 1:
                return False, False
            flag = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
            return True, bool(flag.fetchone()[0])

        return await self._run(renew, urgent=True)

    async def update_attempt(self, job_id: str, attempt: int, owner: str,
                             **fields: Any) -> bool:
        sets = ", ".join(f"{k} = ?" for k in fields)
        return await self._fenced(job_id, attempt, owner, lambda db: db.execute(
            f"UPDATE job_attempts SET {sets} WHERE job_id = ? AND number = ?",
            [*fields.values(), job_id, attempt]))

    async def put_step(self, job_id: str, attempt: int, owner: str, row: Row) -> bool:
        cols = {**row, "job_id": job_id, "attempt": attempt}
        sql = (f"INSERT INTO job_steps ({', '.join(cols)}) VALUES "
               f"({', '.join('?' for _ in cols)}) ON CONFLICT (job_id, attempt, idx) DO UPDATE "
               "SET " + ", ".join(f"{k} = excluded.{k}" for k in row if k != "idx"))
        return await self._fenced(job_id, attempt, owner,
                                  lambda db: db.execute(sql, list(cols.values())))

    async def _fenced(self, job_id: str, attempt: int, owner: str,
                      write: Callable[[sqlite3.Connection], object]) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            held = db.execute(f"SELECT 1 FROM jobs WHERE {FENCE}",
                              (job_id, attempt, owner)).fetchone()
            if held is None:
                return False
            write(db)
            return True

        return await self._run(run, urgent=True)

    async def finish_attempt(self, job_id: str, attempt: int, owner: str,
                             attempt_fields: Row, job_fields: Row,
                             expired_before: float | None = None) -> bool:
        job = {**_encode(job_fields), "lease_owner": None, "lease_expires": None}
        sets = ", ".join(f"{k} = ?" for k in job)
        sql = f"UPDATE jobs SET {sets} WHERE {FENCE}"
        args: list[Any] = [*job.values(), job_id, attempt, owner]
        if expired_before is not None:
            sql += " AND lease_expires < ?"
            args.append(expired_before)
        asets = ", ".join(f"{k} = ?" for k in attempt_fields)

        def finish(db: sqlite3.Connection) -> bool:
            if db.execute(sql, args).rowcount != 1:
                return False
            db.execute(f"UPDATE job_attempts SET {asets} WHERE job_id = ? AND number = ?",
                       [*attempt_fields.values(), job_id, attempt])
            return True

        return await self._run(finish, urgent=True)

    async def release_claim(self, job_id: str, attempt: int, owner: str, due: float) -> bool:
        def release(db: sqlite3.Connection) -> bool:
            n = db.execute("UPDATE jobs SET status = 'queued', attempt = attempt - 1, "
                           "lease_owner = NULL, lease_expires = NULL, due = ? WHERE " + FENCE,
                           (due, job_id, attempt, owner)).rowcount
            if n == 1:
                db.execute("DELETE FROM job_attempts WHERE job_id = ? AND number = ?",
                           (job_id, attempt))
                db.execute("DELETE FROM job_steps WHERE job_id = ? AND attempt = ?",
                           (job_id, attempt))
            return n == 1

        return await self._run(release, urgent=True)

    async def stale_jobs(self, now: float, node_prefix: str, current: str) -> list[Row]:
        def select(db: sqlite3.Connection) -> list[Row]:
            rows = db.execute(
                "SELECT * FROM jobs WHERE status = 'running' AND (lease_expires < ? OR "
                "(substr(lease_owner, 1, ?) = ? AND substr(lease_owner, 1, ?) != ?))",
                (now, len(node_prefix), node_prefix, len(current), current)).fetchall()
            return [r for r in map(_decode, rows) if r is not None]

        return await self._run(select)

    async def request_cancel(self, tenant: str, job_id: str, when: str) -> Row | None:
        def cancel(db: sqlite3.Connection) -> Row | None:
            db.execute("UPDATE jobs SET status = 'cancelled', ended_at = ?, "
                       "end_reason = 'cancelled' WHERE id = ? AND tenant = ? AND "
                       "status = 'queued'", (when, job_id, tenant))
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND tenant = ? AND "
                       "status = 'running'", (job_id, tenant))
            return _decode(db.execute("SELECT * FROM jobs WHERE id = ? AND tenant = ?",
                                      (job_id, tenant)).fetchone())

        return await self._run(cancel, urgent=True)

    async def requeue_job(self, tenant: str, job_id: str, due: float, max_attempts: int,
                          resume_step: int | None, max_active: int,
                          deadline: float | None) -> Row | None | Literal["full"]:
        def requeue(db: sqlite3.Connection) -> Row | None | Literal["full"]:
            active = db.execute(f"SELECT COUNT(*) FROM jobs WHERE tenant = ? AND status IN {ACTIVE}",
                                (tenant,)).fetchone()[0]
            if active >= max_active:  # the same bound as a submit's, in the same write
                return "full"
            n = db.execute(
                "UPDATE jobs SET status = 'queued', due = ?, max_attempts = ?, resume_step = ?, "
                "ended_at = NULL, end_reason = NULL, exit_code = NULL, cancel_requested = 0, "
                "deadline = ? WHERE id = ? AND tenant = ? AND "
                "status IN ('succeeded', 'failed', 'cancelled')",
                (due, max_attempts, resume_step, deadline, job_id, tenant)).rowcount
            if n != 1:
                return None
            return _decode(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

        return await self._run(requeue, urgent=True)

    async def forget_jobs_ended_before(self, cutoff: str, keep_per_tenant: int) -> int:
        final = "status IN ('succeeded', 'failed', 'cancelled')"

        def forget(db: sqlite3.Connection) -> int:
            ids = [r[0] for r in db.execute(
                f"SELECT id FROM jobs WHERE {final} AND ended_at < ?", (cutoff,))]
            for (tenant,) in db.execute(f"SELECT tenant FROM jobs WHERE {final} GROUP BY "
                                        "tenant HAVING COUNT(*) > ?", (keep_per_tenant,)).fetchall():
                ids += [r[0] for r in db.execute(
                    f"SELECT id FROM jobs WHERE tenant = ? AND {final} ORDER BY seq DESC",
                    (tenant,)).fetchall()[keep_per_tenant:]]
            for i in range(0, len(ids), 500):
                batch = ids[i:i + 500]
                marks = ", ".join("?" for _ in batch)
                for table, col in (("job_steps", "job_id"), ("job_attempts", "job_id"),
                                   ("jobs", "id")):
                    db.execute(f"DELETE FROM {table} WHERE {col} IN ({marks})", batch)
            return len(ids)

        return await self._run(forget)

    # -- schedules ----------------------------------------------------------------------

    async def insert_schedule(self, row: Row) -> None:
        values = _encode(row)

        def insert(db: sqlite3.Connection) -> None:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM schedules").fetchone()[0]
            cols = {**values, "seq": seq}
            db.execute(f"INSERT INTO schedules ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' for _ in cols)})", list(cols.values()))

        await self._run(insert, urgent=True)

    async def get_schedule(self, tenant: str, schedule_id: str) -> Row | None:
        return await self._run(lambda db: _decode(db.execute(
            "SELECT * FROM schedules WHERE id = ? AND tenant = ?",
            (schedule_id, tenant)).fetchone()))

    async def list_schedules(self, tenant: str) -> list[Row]:
        def select(db: sqlite3.Connection) -> list[Row]:
            rows = db.execute("SELECT * FROM schedules WHERE tenant = ? ORDER BY seq DESC",
                              (tenant,)).fetchall()
            return [r for r in map(_decode, rows) if r is not None]

        return await self._run(select)

    async def update_schedule(self, tenant: str, schedule_id: str, **fields: Any) -> bool:
        values = _encode(fields)
        sets = ", ".join(f"{k} = ?" for k in values)
        return await self._run(lambda db: db.execute(
            f"UPDATE schedules SET {sets} WHERE id = ? AND tenant = ?",
            [*values.values(), schedule_id, tenant]).rowcount == 1, urgent=True)

    async def delete_schedule(self, tenant: str, schedule_id: str) -> bool:
        return await self._run(lambda db: db.execute(
            "DELETE FROM schedules WHERE id = ? AND tenant = ?",
            (schedule_id, tenant)).rowcount == 1, urgent=True)

    async def due_schedules(self, now: float) -> list[Row]:
        def select(db: sqlite3.Connection) -> list[Row]:
            rows = db.execute("SELECT * FROM schedules WHERE paused = 0 AND next_run <= ? "
                              "ORDER BY next_run LIMIT 100", (now,)).fetchall()
            return [r for r in map(_decode, rows) if r is not None]

        return await self._run(select)

    async def advance_schedule(self, schedule_id: str, expected_next: float, next_run: float,
                               **fields: Any) -> bool:
        values = {**_encode(fields), "next_run": next_run}
        sets = ", ".join(f"{k} = ?" for k in values)
        return await self._run(lambda db: db.execute(
            f"UPDATE schedules SET {sets} WHERE id = ? AND next_run = ?",
            [*values.values(), schedule_id, expected_next]).rowcount == 1, urgent=True)

    async def next_schedule_due(self) -> float | None:
        return await self._run(lambda db: db.execute(
            "SELECT MIN(next_run) FROM schedules WHERE paused = 0").fetchone()[0])


def _encode(row: Row) -> Row:
    return {k: json.dumps(v) if k in JOB_JSON else v for k, v in row.items()}


def _decode(row: sqlite3.Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    for k in JOB_JSON:
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    for k in ("cancel_requested", "paused"):
        if k in out:
            out[k] = bool(out[k])
    return out


def _fairest(db: sqlite3.Connection, claim: Claim, tenants: list[str],
             running: dict[str, int], queues: dict[str, int]) -> str | None:
    """The id of the job to take next: among the tenants running fewest, each one's best
    due job (priority, then age), the best of those. Tenants with nothing that may start
    are dropped from `tenants`."""
    full = [q for q, n in queues.items() if n >= claim.per_queue]
    skip = f"AND queue NOT IN ({', '.join('?' for _ in full)}) " if full else ""
    sql = ("SELECT id, priority, due, seq FROM jobs WHERE tenant = ? AND status = 'queued' "
           "AND due <= ? " + skip + "AND (after_job IS NULL OR NOT EXISTS (SELECT 1 FROM "
           f"jobs p WHERE p.id = jobs.after_job AND p.status IN {ACTIVE})) "
           "ORDER BY priority DESC, due, seq LIMIT 1")
    while tenants:
        low = min(running.get(t, 0) for t in tenants)
        best: tuple[int, float, int, str] | None = None
        for tenant in [t for t in tenants if running.get(t, 0) == low]:
            row = db.execute(sql, (tenant, claim.now, *full)).fetchone()
            if row is None:
                tenants.remove(tenant)
                continue
            key = (-row["priority"], row["due"], row["seq"], row["id"])
            if best is None or key < best:
                best = key
        if best is not None:
            return best[3]
    return None


def _take(db: sqlite3.Connection, claim: Claim, job_id: str, owner: str) -> Row | None:
    """Claim one job by a conditional write (the row count says who won) and open its
    next attempt; None when it was no longer queued."""
    won = db.execute(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = ?, "
        "lease_expires = ?, cancel_requested = 0, started_at = COALESCE(started_at, ?) "
        "WHERE id = ? AND status = 'queued'",
        (owner, claim.lease_until, claim.started_at, job_id)).rowcount
    if won != 1:
        return None
    row = _decode(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
    assert row is not None
    db.execute("INSERT INTO job_attempts (job_id, number, status, node, owner, started_at) "
               "VALUES (?, ?, 'running', ?, ?, ?)",
               (row["id"], row["attempt"], claim.node, owner, claim.started_at))
    return row
