"""One attempt of a job: a sandbox, the command (or the pipeline's steps), the outcome.

Commands run through the core's `Executor` in a session, exactly as a session's
background commands do: the same sandbox, limits, fair share and output logs, so an
attempt's output is read and streamed as any command's. A workspace job runs in the
workspace's session (the one `/v1/exec` uses); an ephemeral job gets a private session
that is stopped when the attempt ends. Every write about the attempt is fenced
(`chaser.store.jobs`): a runner that lost its claim stops and records nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chaser.core.commands import RunningCommand
from chaser.core.execution import Executor
from chaser.core.sessions import LiveSession, SessionService
from chaser.core.util import now_iso
from chaser.errors import Conflict, OverLimit, ServiceError, Unavailable
from chaser.jobs.models import JobCreate, PipelineStep
from chaser.jobs.policy import AttemptEnd
from chaser.models import SessionCreate, SessionExecRequest
from chaser.store.base import Row, Store

EPHEMERAL_IDLE_S = 600


class LostClaim(Exception):
    """The job is no longer this runner's (its lease passed to another server)."""


class NoCapacity(Exception):
    """The tenant or the server cannot start a sandbox or a command now: not an attempt."""


class AttemptRunner:
    """Runs attempt `number` of the job in `row`, claimed by `owner`."""

    def __init__(self, store: Store, sessions: SessionService, executor: Executor,
                 row: Row, owner: str, previous_steps: list[Row]) -> None:
        self.store = store
        self.sessions = sessions
        self.executor = executor
        self.row = row
        self.job_id: str = row["id"]
        self.tenant: str = row["tenant"]
        self.number: int = row["attempt"]
        self.owner = owner
        self.spec = JobCreate.model_validate(row["request"])
        self.previous_steps = previous_steps
        self.current: RunningCommand | None = None
        self.stop_reason: str | None = None  # "cancelled" | "lost" | "shutdown"
        self.started = time.monotonic()
        self._ephemeral: LiveSession | None = None

    # -- control ----------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """End the attempt now: its running command's whole tree is killed."""
        if self.stop_reason is None:
            self.stop_reason = reason
        cmd = self.current
        if cmd is not None and cmd.running:
            with contextlib.suppress(Conflict):
                cmd.kill(signal.SIGKILL, reason="job_" + reason)

    # -- running ----------------------------------------------------------------------

    async def run(self) -> AttemptEnd:
        """The attempt from sandbox to outcome; raises NoCapacity before anything ran."""
        try:
            live = await self._session()
        except (OverLimit, Unavailable) as e:
            if isinstance(e, OverLimit) or e.code == "no_capacity":
                raise NoCapacity(e.message) from None
            return AttemptEnd("infrastructure", end_reason="sandbox_failed")
        except ServiceError as e:
            return AttemptEnd("infrastructure", end_reason=f"sandbox_failed: {e.message}"[:200])
        try:
            if self.spec.kind == "pipeline.run":
                return await self._pipeline(live)
            return await self._exec(live)
        finally:
            if self._ephemeral is not None:
                await self.sessions.stop(self._ephemeral, "job_ended")

    async def _session(self) -> LiveSession:
        spec = self.spec
        if spec.workspace:
            return await self.sessions.for_workspace(self.tenant, spec.workspace, spec.limits,
                                                     spec.image)
        live = await self.sessions.start(self.tenant, SessionCreate(image=spec.image,
                                                                    limits=spec.limits),
                                         idle_timeout_s=EPHEMERAL_IDLE_S)
        self._ephemeral = live
        return live

    async def _exec(self, live: LiveSession) -> AttemptEnd:
        spec = self.spec
        assert spec.command is not None
        req = self._request(spec.command, spec.env, spec.cwd, spec.timeout_ms)
        cmd, bound = await self._start(live, req, lambda c: self._fenced(
            self.store.update_attempt(self.job_id, self.number, self.owner,
                                      session_id=live.id, command_id=c.state.id)))
        if cmd is None:
            return self._stopped_end()
        await self._wait(cmd)
        return self._end_of(cmd, bound)

    async def _pipeline(self, live: LiveSession) -> AttemptEnd:
        steps = self.spec.steps or []
        resume = self.row.get("resume_step") or 0
        await self._fenced(self.store.update_attempt(self.job_id, self.number, self.owner,
                                                     session_id=live.id))
        for i, step in enumerate(steps):  # every step is listed from the start
            reused = self._reused(i) if i < resume else None
            await self._put_step(reused or {"idx": i, "name": _name(step, i),
                                            "status": "pending", "tries": 0})
        failed: AttemptEnd | None = None
        for i, step in enumerate(steps):
            if i < resume and self._reused(i) is not None:
                continue
            if failed is not None or self.stop_reason is not None:
                await self._put_step({"idx": i, "name": _name(step, i),
                                      "status": "cancelled" if self.stop_reason else "skipped",
                                      "tries": 0})
                continue
            end = await self._step(live, i, step)
            if end.outcome != "succeeded" and not (step.continue_on_error
                                                   and end.outcome in ("exit_nonzero", "timeout")):
                failed = end
                failed.failed_step = i
        if failed is not None:
            return failed
        return AttemptEnd("succeeded", exit_code=0, end_reason="exit")

    async def _step(self, live: LiveSession, i: int, step: PipelineStep) -> AttemptEnd:
        spec = self.spec
        tries = step.retry.max_attempts if step.retry else 1
        env = {**(spec.env or {}), **(step.env or {})}
        end = AttemptEnd("infrastructure")
        for t in range(1, tries + 1):
            started, mono = now_iso(), time.monotonic()
            req = self._request(step.command, env, step.cwd or spec.cwd,
                                _least(step.timeout_ms, self._attempt_left_ms()))
            base = {"idx": i, "name": _name(step, i), "tries": t, "started_at": started}
            cmd, bound = await self._start(live, req, lambda c: self._put_step(
                {**base, "status": "running", "session_id": live.id, "command_id": c.state.id}))
            if cmd is None:
                return self._stopped_end()
            await self._wait(cmd)
            end = self._end_of(cmd, bound)
            final = (end.outcome in ("succeeded", "cancelled", "deadline")
                     or self.stop_reason is not None or t == tries)
            status = "succeeded" if end.outcome == "succeeded" else (
                "cancelled" if end.outcome == "cancelled" else "failed")
            if not final:
                status = "running"  # tried again: the step goes on
            await self._put_step({**base, "status": status, "exit_code": end.exit_code,
                                  "end_reason": end.end_reason, "ended_at": now_iso(),
                                  "duration_ms": int((time.monotonic() - mono) * 1000),
                                  "session_id": live.id, "command_id": cmd.state.id})
            if final:
                return end
            if t < tries and step.retry is not None and step.retry.backoff_ms:
                await asyncio.sleep(step.retry.backoff_ms / 1000)
        return end

    # -- pieces -----------------------------------------------------------------------

    def _request(self, command: str, env: dict[str, str] | None, cwd: str | None,
                 timeout_ms: int | None) -> SessionExecRequest:
        # No timeout asked: the server's default, so no job holds a worker forever.
        default_ms = self.executor.settings.job_default_timeout_s * 1000
        return SessionExecRequest(command=command, env=env or None, cwd=cwd,
                                  timeout_ms=timeout_ms or default_ms, shell=self.spec.shell,
                                  background=True)

    async def _start(self, live: LiveSession, req: SessionExecRequest,
                     recorded: Callable[[RunningCommand], Awaitable[object]],
                     ) -> tuple[RunningCommand | None, str]:
        """Start a command with the attempt's bounds; (the command or None when the
        attempt was stopped first, which bound its timeout is: "timeout"/"deadline")."""
        if self.stop_reason is not None:
            return None, "timeout"
        bound = "timeout"
        left = self._deadline_left_ms()
        if left is not None and (req.timeout_ms is None or left < req.timeout_ms):
            req, bound = req.model_copy(update={"timeout_ms": max(1, left)}), "deadline"
        try:
            cmd = await self.executor.start_in_session(live, req)
        except (OverLimit, Unavailable) as e:
            raise NoCapacity(e.message) from None
        self.current = cmd
        if self.stop_reason is not None:  # stopped while it started
            self.stop(self.stop_reason)
        await recorded(cmd)
        return cmd, bound

    async def _wait(self, cmd: RunningCommand) -> None:
        await cmd.finished.wait()
        if cmd.saved is not None:
            await asyncio.shield(cmd.saved)

    def _end_of(self, cmd: RunningCommand, bound: str) -> AttemptEnd:
        s = cmd.state
        if self.stop_reason is not None:
            return self._stopped_end(s.exit_code, s.signal)
        if s.status == "exited":
            ok = s.exit_code == 0
            return AttemptEnd("succeeded" if ok else "exit_nonzero", s.exit_code, None, "exit")
        if s.status == "timed_out":
            return AttemptEnd(bound, None, s.signal, bound)
        if s.end_reason in ("signal", None):  # the command's own death (a crash, OOM)
            return AttemptEnd("exit_nonzero", None, s.signal, "signal")
        return AttemptEnd("infrastructure", None, s.signal, s.end_reason)

    def _stopped_end(self, code: int | None = None, sig: str | None = None) -> AttemptEnd:
        if self.stop_reason == "cancelled":
            return AttemptEnd("cancelled", code, sig, "cancelled")
        return AttemptEnd("infrastructure", code, sig, "server_" + (self.stop_reason or "stop"))

    def _attempt_left_ms(self) -> int | None:
        if self.spec.timeout_ms is None:
            return None
        return max(1, self.spec.timeout_ms - int((time.monotonic() - self.started) * 1000))

    def _deadline_left_ms(self) -> int | None:
        deadline = self.row.get("deadline")
        if deadline is None:
            return None
        return int((float(deadline) - time.time()) * 1000)

    def _reused(self, i: int) -> Row | None:
        for r in self.previous_steps:
            if r["idx"] == i and r["status"] == "succeeded":
                return {k: v for k, v in r.items() if k not in ("job_id", "attempt")} | {
                    "reused_from_attempt": r.get("reused_from_attempt") or r["attempt"]}
        return None

    async def _put_step(self, row: Row) -> None:
        await self._fenced(self.store.put_step(self.job_id, self.number, self.owner, row))

    async def _fenced(self, write: Awaitable[bool]) -> None:
        if not await write:
            self.stop("lost")
            raise LostClaim(self.job_id)


def _name(step: PipelineStep, i: int) -> str:
    return step.name or f"step {i + 1}"


def _least(*values: int | None) -> int | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


def describe(end: AttemptEnd) -> dict[str, Any]:
    """The attempt row's fields for an end."""
    return {"status": end.attempt_status, "exit_code": end.exit_code, "signal": end.signal,
            "end_reason": end.end_reason}
