"""SQLite store: one connection on one worker thread, so the event loop never blocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple
from pathlib import Path
from typing import Any, TypeVar

from chaser.errors import StorageFull
from chaser.store.base import KeyRecord, Row, WorkspaceRecord
from chaser.store.sqlite_jobs import JOB_SCHEMA, SQLiteJobs

T = TypeVar("T")
Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
    admin INTEGER NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS tenants (
    tenant TEXT PRIMARY KEY, limits TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workspaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, name TEXT NOT NULL,
    uid INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, workspace TEXT, image TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT, end_reason TEXT,
    env TEXT NOT NULL, cwd TEXT NOT NULL, limits TEXT NOT NULL, idle_timeout_s INTEGER NOT NULL,
    last_activity_at TEXT
);
CREATE INDEX IF NOT EXISTS sessions_tenant ON sessions (tenant, created_at);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, tenant TEXT NOT NULL, command TEXT NOT NULL,
    cwd TEXT NOT NULL, pid INTEGER, background INTEGER NOT NULL, status TEXT NOT NULL,
    exit_code INTEGER, signal TEXT, end_reason TEXT, started_at TEXT NOT NULL, ended_at TEXT,
    seq INTEGER NOT NULL, kind TEXT NOT NULL DEFAULT 'command'
);
CREATE INDEX IF NOT EXISTS commands_session ON commands (session_id, seq);
"""

JSON_COLUMNS = ("env", "limits")
CHECKPOINT_EVERY = 500  # calls between two checkpoints of the write-ahead log
MAX_BATCH = 16  # calls answered together; more would be a long stall of the event loop


class SQLiteStore(SQLiteJobs):
    """The default store: a single SQLite file in WAL mode."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaser-db")
        self._seq = 0
        # Calls waiting for the store's thread. They go over in batches: the first call
        # of a batch sends the thread one job that runs up to MAX_BATCH calls queued by
        # then (writes that could not be done at once first), and one wake-up of the
        # event loop answers them all (a hop per call cost more than most calls, under
        # concurrent requests).
        self._queued: list[Call] = []
        self._urgent: list[Call] = []  # writes: ahead of queued reads
        self._queue_lock = threading.Lock()
        self._db_lock = threading.Lock()  # one user of the connection at a time
        self._calls = 0

    async def _run(self, fn: Callable[[sqlite3.Connection], T], urgent: bool = False) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._queue_lock:
            (self._urgent if urgent else self._queued).append((fn, fut))
            first = len(self._queued) + len(self._urgent) == 1
        if first:
            self._pool.submit(self._run_queued, loop)
        return await fut

    def _run_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store's thread: run a batch of what is queued (writes first, then in
        order); answer it on the loop at once; leave the rest for the next batch."""
        with self._queue_lock:
            batch: list[Call] = []
            while len(batch) < MAX_BATCH and (self._urgent or self._queued):
                batch.append((self._urgent or self._queued).pop(0))
            more = bool(self._urgent or self._queued)
        if more:
            self._pool.submit(self._run_queued, loop)
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for fn, fut in batch:
            try:
                done.append((fut, self._call(fn), None))
            except BaseException as e:  # noqa: BLE001 - the caller's to raise
                done.append((fut, None, e))
        loop.call_soon_threadsafe(_answer, done)

    async def _write(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """A small write (one row): done at once on the event loop when the connection
        is free, else queued for the store's thread. In WAL mode with no fsync on commit
        it takes tens of microseconds, less than the hop to the thread and back, and
        that hop, taken twice per command, had halved the commands a server can run
        per second (the thread and the loop trade the GIL). Checkpoints, which do sync
        to disk, run on the thread (`_checkpoint`)."""
        if not self._write_now(fn):
            await self._run(fn, urgent=True)

    def _write_now(self, fn: Callable[[sqlite3.Connection], object]) -> bool:
        """`fn` done now when the connection is free; False (nothing done) when not."""
        if self._db is None or not self._db_lock.acquire(blocking=False):
            return False
        try:
            self._call_locked(fn)
        finally:
            self._db_lock.release()
        return True

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._db_lock:
            return self._call_locked(fn)

    def _call_locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None
        self._calls += 1
        if self._calls % CHECKPOINT_EVERY == 0:
            with contextlib.suppress(RuntimeError):  # closing: the close checkpoints
                self._pool.submit(self._checkpoint)
        try:
            with self._db:
                return fn(self._db)
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e):
                raise StorageFull("the server's disk is full: state cannot be "
                                  "recorded; try again once space is freed") from None
            raise

    def _checkpoint(self) -> None:
        """Move the write-ahead log into the database (on the store's thread: it syncs
        to disk, which the event loop must never wait for)."""
        with self._db_lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def open(self) -> None:
        def connect() -> None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # ours run on this thread
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            db.executescript(JOB_SCHEMA)
            cols = {r[1] for r in db.execute("PRAGMA table_info(workspaces)")}
            if "last_used_at" not in cols:  # added after the first release
                db.execute("ALTER TABLE workspaces ADD COLUMN last_used_at TEXT")
            if "kind" not in {r[1] for r in db.execute("PRAGMA table_info(commands)")}:
                db.execute("ALTER TABLE commands ADD COLUMN kind TEXT NOT NULL DEFAULT 'command'")
            self._seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM commands").fetchone()[0]
            self._db = db
            # Private even when an older version created them before it set its umask.
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{self.path}{suffix}", 0o600)

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        if self._db is not None:
            db = self._db

            def close() -> None:
                with self._db_lock:
                    self._db = None
                    db.close()  # the last connection checkpoints the log

            await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)

    # -- keys -------------------------------------------------------------------------

    async def add_key(self, key: KeyRecord) -> None:
        row = astuple(key)
        await self._run(lambda db: db.execute(
            "INSERT INTO keys (id, name, hash, tenant, admin, created_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", row))

    async def key_by_hash(self, digest: str) -> KeyRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT * FROM keys WHERE hash = ?", (digest,)).fetchone())
        return _key(row) if row else None

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT * FROM keys ORDER BY created_at").fetchall())
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str, when: str) -> KeyRecord | None:
        def revoke(db: sqlite3.Connection) -> sqlite3.Row | None:
            db.execute("UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                       (when, key_id))
            return db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()  # type: ignore[no-any-return]

        row = await self._run(revoke)
        return _key(row) if row else None

    async def tenant_limits(self) -> dict[str, dict[str, Any]]:
        rows = await self._run(lambda db: db.execute("SELECT * FROM tenants").fetchall())
        return {r["tenant"]: json.loads(r["limits"]) for r in rows}

    async def set_tenant_limits(self, tenant: str, limits: dict[str, Any]) -> None:
        data = json.dumps(limits)
        await self._run(lambda db: db.execute(
            "INSERT INTO tenants (tenant, limits) VALUES (?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits", (tenant, data)))

    async def get_key(self, key_id: str) -> KeyRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone())
        return _key(row) if row else None

    # -- workspaces -------------------------------------------------------------------

    async def workspace(self, tenant: str, name: str, create_at: str | None) -> WorkspaceRecord | None:
        def get(db: sqlite3.Connection) -> sqlite3.Row | None:
            q = "SELECT * FROM workspaces WHERE tenant = ? AND name = ?"
            row = db.execute(q, (tenant, name)).fetchone()
            if row is None and create_at is not None:
                # uid 0 until the core gives it one from this data dir's uid block
                db.execute("INSERT INTO workspaces (tenant, name, created_at) VALUES (?, ?, ?)",
                           (tenant, name, create_at))
                row = db.execute(q, (tenant, name)).fetchone()
            return row  # type: ignore[no-any-return]

        row = await self._run(get)
        if row is None:
            return None
        return _workspace(row)

    async def all_workspaces(self) -> list[WorkspaceRecord]:
        rows = await self._run(lambda db: db.execute("SELECT * FROM workspaces").fetchall())
        return [_workspace(r) for r in rows]

    async def list_workspaces(self, tenant: str) -> list[WorkspaceRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT * FROM workspaces WHERE tenant = ? ORDER BY name", (tenant,)).fetchall())
        return [_workspace(r) for r in rows]

    async def touch_workspace(self, workspace_id: int, when: str) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE workspaces SET last_used_at = ? WHERE id = ?", (when, workspace_id)))

    async def delete_workspace(self, workspace_id: int) -> None:
        await self._run(lambda db: db.execute("DELETE FROM workspaces WHERE id = ?",
                                              (workspace_id,)))

    async def set_workspace_uid(self, workspace_id: int, uid: int) -> None:
        await self._run(lambda db: db.execute("UPDATE workspaces SET uid = ? WHERE id = ?",
                                              (uid, workspace_id)))

    # -- sessions ---------------------------------------------------------------------

    async def insert_session(self, row: Row) -> None:
        await self._insert("sessions", row)

    async def update_session(self, session_id: str, **fields: Any) -> None:
        await self._update("sessions", session_id, fields)

    async def get_session(self, tenant: str, session_id: str) -> Row | None:
        row = await self._run(lambda db: db.execute(
            "SELECT * FROM sessions WHERE id = ? AND tenant = ?", (session_id, tenant)).fetchone())
        return _row(row)

    async def list_sessions(self, tenant: str, status: str | None = None) -> list[Row]:
        sql, args = "SELECT * FROM sessions WHERE tenant = ?", [tenant]
        if status:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT 1000"
        return await self._run(lambda db: _rows(db.execute(sql, args).fetchall()))

    async def session_tenants(self, session_ids: list[str]) -> dict[str, str]:
        def find(db: sqlite3.Connection) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(session_ids), 500):
                batch = session_ids[i:i + 500]
                marks = ", ".join("?" for _ in batch)
                out.update(db.execute(f"SELECT id, tenant FROM sessions WHERE id IN ({marks})",
                                      batch).fetchall())
            return out

        return await self._run(find)

    # -- commands ---------------------------------------------------------------------

    async def insert_command(self, row: Row) -> None:
        self._seq += 1
        await self._insert("commands", {**row, "seq": self._seq}, now=True)

    async def update_command(self, command_id: str, **fields: Any) -> None:
        await self._update("commands", command_id, fields, now=True)

    def update_command_now(self, command_id: str, **fields: Any) -> bool:
        sql, args = _update_sql("commands", command_id, fields)
        try:
            return self._write_now(lambda db: db.execute(sql, args))
        except StorageFull:
            return False  # the caller's retrying path takes it from here

    async def get_command(self, tenant: str, session_id: str, command_id: str) -> Row | None:
        row = await self._run(lambda db: db.execute(
            "SELECT * FROM commands WHERE id = ? AND session_id = ? AND tenant = ?",
            (command_id, session_id, tenant)).fetchone())
        return _row(row)

    async def command_session(self, tenant: str, command_id: str) -> str | None:
        row = await self._run(lambda db: db.execute(
            "SELECT session_id FROM commands WHERE id = ? AND tenant = ?",
            (command_id, tenant)).fetchone())
        return None if row is None else str(row[0])

    async def list_commands(self, tenant: str, session_id: str, limit: int = 1000) -> list[Row]:
        # Rows made into dicts on the store's thread: a thousand of them on the event loop
        # would hold up every other request.
        return await self._run(lambda db: _rows(db.execute(
            "SELECT * FROM commands WHERE session_id = ? AND tenant = ? ORDER BY seq DESC LIMIT ?",
            (session_id, tenant, limit)).fetchall()))

    async def forget_ended_before(self, cutoff: str) -> list[str]:
        def forget(db: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM sessions WHERE status = 'stopped' AND ended_at < ?", (cutoff,))]
            for i in range(0, len(ids), 500):
                batch = ids[i:i + 500]
                marks = ", ".join("?" for _ in batch)
                db.execute(f"DELETE FROM commands WHERE session_id IN ({marks})", batch)
                db.execute(f"DELETE FROM sessions WHERE id IN ({marks})", batch)
            return ids

        return await self._run(forget)

    async def end_all_running(self, when: str) -> tuple[int, int]:
        def end(db: sqlite3.Connection) -> tuple[int, int]:
            s = db.execute("UPDATE sessions SET status = 'stopped', ended_at = ?, "
                           "end_reason = 'server_restart' WHERE status = 'running'", (when,))
            c = db.execute("UPDATE commands SET status = 'killed', signal = 'KILL', ended_at = ?, "
                           "end_reason = 'server_restart' WHERE status = 'running'", (when,))
            return s.rowcount, c.rowcount

        return await self._run(end)

    # -- helpers ----------------------------------------------------------------------

    async def _insert(self, table: str, row: Row, now: bool = False) -> None:
        """Insert `row`; `now`: on the event loop when the connection is free (`_write`)."""
        values = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in row.items()}
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        await self._execute(sql, list(values.values()), now)

    async def _update(self, table: str, row_id: str, fields: Row, now: bool = False) -> None:
        if not fields:
            return
        await self._execute(*_update_sql(table, row_id, fields), now)

    async def _execute(self, sql: str, args: list[Any], now: bool) -> None:
        def execute(db: sqlite3.Connection) -> None:
            db.execute(sql, args)

        await (self._write if now else self._run)(execute)


def _answer(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, error in done:
        if fut.cancelled():  # its caller went away; the call ran all the same
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(row["id"], row["name"], row["hash"], row["tenant"], bool(row["admin"]),
                     row["created_at"], row["revoked_at"])


def _workspace(row: sqlite3.Row) -> WorkspaceRecord:
    return WorkspaceRecord(row["id"], row["tenant"], row["name"], row["uid"], row["created_at"],
                           row["last_used_at"] if "last_used_at" in row.keys() else None)


def _update_sql(table: str, row_id: str, fields: Row) -> tuple[str, list[Any]]:
    values = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()}
    sets = ", ".join(f"{k} = ?" for k in values)
    return f"UPDATE {table} SET {sets} WHERE id = ?", [*values.values(), row_id]


def _rows(rows: list[sqlite3.Row]) -> list[Row]:
    return [r for r in map(_row, rows) if r is not None]


def _row(row: sqlite3.Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    for k in JSON_COLUMNS:
        if k in out and isinstance(out[k], str):
            out[k] = json.loads(out[k])
    if "background" in out:
        out["background"] = bool(out["background"])
    out.pop("seq", None)
    return out
