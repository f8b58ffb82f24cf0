"""Running commands: one-shot exec, session exec, and everything done to a command after.

Nothing here knows HTTP: the transports (REST, SSE, MCP, CLI through the SDK) all call
these methods and shape what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chaser.config import Settings
from chaser.core.commands import CommandState, RunningCommand
from chaser.core.logs import EPHEMERAL_DIR
from chaser.core.output import STREAM_NAMES, OutputLog, delete_files_later
from chaser.core.quotas import Grant
from chaser.core.telemetry import Telemetry
from chaser.core.sessions import LiveSession, SessionService
from chaser.core.util import new_id, parse_signal
from chaser.errors import (
    ServiceError,
    Conflict,
    NotFound,
    OverLimit,
    SandboxFailed,
    StorageFull,
    Unavailable,
)
from chaser.models import (
    DEFAULT_FOREGROUND_TIMEOUT_MS,
    BackgroundStarted,
    Command,
    CommandRequest,
    ExecRequest,
    ExecResult,
    ExitEvent,
    OutputEvent,
    SessionExecRequest,
    StdinRequest,
    StdinResult,
)
from chaser.runtime.base import ProcessSpec, Runtime, SandboxSpec
from chaser.store.base import Row, Store
from chaser.tasks import TaskSet

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/home/user",
    "USER": "user",
    "LOGNAME": "user",
    "SHELL": "/bin/bash",
    "HOSTNAME": "sandbox",
    "LANG": "C.UTF-8",
}
SHELLS = {"sh": "/bin/sh", "bash": "/bin/bash"}
STREAM_READ_BYTES = 1024 * 1024
KILL_SETTLE_S = 2.0
IDLE_FLUSH_S = 1.0

Event = OutputEvent | ExitEvent


class Executor:
    """Starts commands and answers for them afterwards."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime,
                 sessions: SessionService) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.sessions = sessions
        self.telemetry: Telemetry | None = None
        self.tasks = TaskSet("commands")  # each started command's run, until it ends
        self.stdin_streams = 0  # raw bodies being fed to stdin now (a metric)
        self._stdin_by_tenant: Counter[str] = Counter()

    # -- starting ---------------------------------------------------------------------

    @staticmethod
    def process_spec(req: CommandRequest, env: dict[str, str], cwd: str) -> ProcessSpec:
        # PWD as the cwd was asked (`/var/tmp`, not the `/tmp` it links to), as a login
        # shell, `docker exec -w` and a one-shot run's bwrap --chdir all leave it.
        return ProcessSpec(argv=[SHELLS[req.shell], "-c", req.command],
                           env={**BASE_ENV, "PWD": cwd, **env, **(req.env or {})}, cwd=cwd)

    async def start_in_session(self, live: LiveSession, req: SessionExecRequest) -> RunningCommand:
        """Start a command in a running session and record it."""
        return await self.launch(live, lambda: self._begin(live, req),
                                 foreground=not req.background)

    async def launch(self, live: LiveSession, begin: Callable[[], Awaitable[RunningCommand]],
                     *, foreground: bool) -> RunningCommand:
        """Start what `begin` starts (a command, a terminal) as one of the session's
        commands: counted against its limits, recorded, run to its end and stored."""
        if len(live.running_commands()) + live.starting >= self.settings.max_running_commands_per_session:
            raise OverLimit("too many commands are running in this session", "too_many_commands")
        grant = self.sessions.ledger.admit(live.tenant, commands=1)
        live.starting += 1
        # Started to its end whatever becomes of the request: cancelled half-way, a
        # process could be up with no record, no reaper and no charge. A foreground
        # command whose request left meanwhile is ended once it is recorded.
        return await self.tasks.carry(self._start_charged(live, begin, grant),
                                      orphaned=RunningCommand.abandon if foreground else None)

    async def _start_charged(self, live: LiveSession, begin: Callable[[], Awaitable[RunningCommand]],
                             grant: Grant) -> RunningCommand:
        try:
            live.touch()
            return await self._track(live, await begin(), grant)
        except BaseException:
            grant.release()
            raise
        finally:
            live.starting -= 1

    async def _begin(self, live: LiveSession, req: SessionExecRequest) -> RunningCommand:
        cwd = req.cwd or str(live.row["cwd"])
        state = CommandState(id=new_id("cmd"), session_id=live.id, tenant=live.tenant,
                             command=req.command, cwd=cwd, background=req.background)
        cmd = RunningCommand(state, self.new_log(live.id, state.id))
        if req.background:
            await self.prepare_log(cmd, "it was not started")
        spec = self.process_spec(req, live.env, cwd)
        timeout = req.timeout_ms if req.background else (req.timeout_ms or DEFAULT_FOREGROUND_TIMEOUT_MS)
        await cmd.start(lambda io: live.sandbox.spawn(spec, io), stdin_pipe=req.background,
                        stdin_text=req.stdin_bytes(), timeout_ms=timeout)
        return cmd

    @staticmethod
    async def prepare_log(cmd: RunningCommand, then: str) -> None:
        """Make a command's log on disk before it starts (off the event loop)."""
        try:
            await asyncio.to_thread(cmd.output.prepare)
        except OSError as e:
            raise _unrecordable(e, then) from None

    async def _track(self, live: LiveSession, cmd: RunningCommand, grant: Grant) -> RunningCommand:
        """A started command into the session's live map and the store, run to its end."""
        state = cmd.state
        live.commands[state.id] = cmd
        # Recorded while it runs (a short command is done by the time the row is), and
        # answered for only once recorded: a command nobody can look up must not go on.
        recorded = asyncio.ensure_future(self.store.insert_command(state.row()))

        def on_end(c: RunningCommand) -> None:
            grant.release()
            live.touch()
            s = c.state
            if (recorded.done() and not recorded.cancelled() and recorded.exception() is None
                    and self.store.update_command_now(
                        s.id, status=s.status, exit_code=s.exit_code, signal=s.signal,
                        end_reason=s.end_reason, ended_at=s.ended_at)):
                live.commands.pop(s.id, None)  # stored: the answer need not wait a turn
                return
            c.saved = self.tasks.spawn(self._save_end(live, c, recorded))

        self.tasks.spawn(cmd.run(on_end))
        try:
            await asyncio.shield(recorded)
        except Exception:
            # Not recorded, so not run: its run still reaps it and closes its pipes.
            with contextlib.suppress(Conflict):
                cmd.kill(signal.SIGKILL, reason="storage_full")
            raise
        return cmd

    async def _save_end(self, live: LiveSession, cmd: RunningCommand,
                        recorded: asyncio.Future[None]) -> None:
        """Store how a command ended, then take it out of the live map: the row first,
        so a reader never finds neither. On a full disk the command stays readable from
        memory until its end is stored."""
        s = cmd.state
        if not await _succeeded(recorded):  # never recorded: nobody can look it up
            live.commands.pop(s.id, None)
            return
        await self.sessions.save(lambda: self.store.update_command(
            s.id, status=s.status, exit_code=s.exit_code, signal=s.signal,
            end_reason=s.end_reason, ended_at=s.ended_at),
            then=lambda: live.commands.pop(s.id, None))

    async def start(self, tenant: str, session_id: str,
                    req: SessionExecRequest) -> BackgroundStarted:
        """A background command in the session: returns once it started."""
        live = await self.sessions.require_live(tenant, session_id)
        cmd = await self.start_in_session(live, req.model_copy(update={"background": True}))
        return BackgroundStarted(command_id=cmd.state.id, pid=cmd.state.pid,
                                 session_id=live.id, started_at=cmd.state.started_at)

    async def run(self, tenant: str, session_id: str, req: SessionExecRequest) -> ExecResult:
        """A foreground command in the session: returns once it ended."""
        live = await self.sessions.require_live(tenant, session_id)
        cmd = await self.start_in_session(live, req.model_copy(update={"background": False}))
        try:
            await cmd.finished.wait()
            if cmd.saved is not None:
                # Answered once its end is stored (or kept to store, on a full disk): a
                # crash right after the answer must not leave a row that says otherwise.
                await asyncio.shield(cmd.saved)
        except asyncio.CancelledError:
            cmd.abandon()
            raise
        if self.telemetry is not None:
            self.telemetry.exec_seconds.labels("session").observe(
                (cmd.ended_mono or time.monotonic()) - cmd.started_mono)
        _check_recorded(cmd)
        return self._result(cmd, req.max_output_bytes, live.id)

    async def exec(self, tenant: str, req: ExecRequest) -> ExecResult:
        """`POST /v1/exec`: in the workspace's session, or in a one-shot sandbox."""
        started = time.monotonic()
        result = await self._exec(tenant, req)
        if self.telemetry is not None:
            self.telemetry.exec_seconds.labels("workspace" if req.workspace else "one_shot") \
                .observe(time.monotonic() - started)
        return result

    async def _exec(self, tenant: str, req: ExecRequest) -> ExecResult:
        if req.workspace:
            live = await self.sessions.for_workspace(tenant, req.workspace, req.limits, req.image)
            body = req.model_dump(exclude={"workspace", "ephemeral", "image", "limits"})
            return await self.run(tenant, live.id, SessionExecRequest(**body))
        return await self._ephemeral(tenant, req)

    async def _ephemeral(self, tenant: str, req: ExecRequest) -> ExecResult:
        image = await self.sessions.images.choose(req.image, tenant)
        cmd_id = new_id("cmd")
        cwd = req.cwd or image.working_dir or "/workspace"
        state = CommandState(id=cmd_id, session_id="", tenant="", command=req.command, cwd=cwd,
                             background=False)
        cmd = RunningCommand(state, self.new_log(EPHEMERAL_DIR, cmd_id))
        limits = self.sessions.limits_for(req.limits)
        group, group_limits = self.sessions.ledger.group(tenant)
        spec = SandboxSpec(name="eph_" + cmd_id.removeprefix("cmd_"), image=image.key,
                           rootfs=image.rootfs,
                           limits=self.sessions.resource_limits(limits), group=group,
                           group_limits=group_limits, disk_mb=limits.disk_mb)
        pspec = self.process_spec(req, image.env, cwd)
        self.sessions.images.hold(image, tenant)  # until the run ends (in start_and_run)
        try:
            grant = self.sessions.ledger.admit(tenant, sandboxes=1, commands=1,
                                               memory_mb=limits.memory_mb or 0)
        except BaseException:
            self.sessions.images.release(image, tenant)
            raise
        # Start and run as one task of its own that holds the grant to the end: a request
        # that leaves, even half-way through the start, ends the command, and its
        # sandbox still counts until it is gone.
        async def start_and_run() -> None:
            try:
                async with self.sessions.starts.turn(tenant):
                    if cmd.abandoned:  # its request left while it waited: start nothing
                        return
                    await cmd.start(lambda io: self.runtime.run_once(spec, pspec, io),
                                    stdin_pipe=False, stdin_text=req.stdin_bytes(),
                                    timeout_ms=req.timeout_ms or DEFAULT_FOREGROUND_TIMEOUT_MS)
                await cmd.run()
            finally:
                grant.release()
                self.sessions.images.release(image, tenant)

        try:
            try:
                await self.tasks.carry(start_and_run())
            except asyncio.CancelledError:
                cmd.abandon()  # ended now, or as soon as its start is through
                raise
            _check_recorded(cmd)
            if cmd.exit_status is not None and cmd.exit_status.setup_failed:
                raise _setup_error(cmd.output.read_bytes(0, 1000)[1].decode(errors="replace"))
            result = self._result(cmd, req.max_output_bytes, None)
            result.command_id = None
            return result
        finally:
            cmd.output.delete()  # closed first: output still arriving is dropped

    def new_log(self, session_id: str, command_id: str) -> OutputLog:
        log = OutputLog(self.settings.logs_dir / session_id / command_id,
                        max_bytes=self.settings.max_log_bytes)
        log.discard = delete_files_later  # a roll never waits on an unlink
        return log

    @staticmethod
    def _result(cmd: RunningCommand, max_bytes: int, session_id: str | None) -> ExecResult:
        s = cmd.state
        start, data = cmd.output.read_bytes(0, max_bytes)
        size = cmd.output.size
        return ExecResult(
            exit_code=s.exit_code, output=data.decode(errors="replace"),
            output_truncated=start > 0 or start + len(data) < size, status=s.status,  # type: ignore[arg-type]
            signal=s.signal, timed_out=s.status == "timed_out",
            duration_ms=int(((cmd.ended_mono or time.monotonic()) - cmd.started_mono) * 1000),
            session_id=session_id, command_id=s.id, output_offset=start, output_size=size)

    # -- looking at commands ----------------------------------------------------------

    async def _find(self, tenant: str, session_id: str, command_id: str) -> tuple[Row, RunningCommand | None]:
        live = self.sessions.get_live(tenant, session_id)
        cmd = live.commands.get(command_id) if live else None
        if cmd is not None:
            return cmd.state.row(), cmd
        row = await self.store.get_command(tenant, session_id, command_id)
        if row is None:
            await self.sessions.get_row(tenant, session_id)
            raise NotFound(f"command {command_id} not found in session {session_id}")
        return row, None

    async def _log(self, row: Row, cmd: RunningCommand | None) -> OutputLog:
        if cmd is not None:
            return cmd.output
        return await asyncio.to_thread(OutputLog.load,
                                       self.settings.logs_dir / row["session_id"] / row["id"])

    async def list_commands(self, tenant: str, session_id: str) -> list[Command]:
        await self.sessions.get_row(tenant, session_id)
        live = self.sessions.get_live(tenant, session_id)
        rows = await self.store.list_commands(tenant, session_id)
        out = []
        for row in rows:
            cmd = live.commands.get(row["id"]) if live else None
            out.append(_command(cmd.state.row() if cmd else row))
        return out

    async def session_of(self, tenant: str, command_id: str) -> str:
        """The session of a tenant's command, by the command's id alone."""
        for live in self.sessions.live.values():
            if live.tenant == tenant and command_id in live.commands:
                return live.id
        session_id = await self.store.command_session(tenant, command_id)
        if session_id is None:
            raise NotFound(f"command {command_id} not found")
        return session_id

    async def get_command(self, tenant: str, session_id: str, command_id: str,
                          offset: int = 0, limit: int = 1024 * 1024) -> Command:
        row, cmd = await self._find(tenant, session_id, command_id)
        log = await self._log(row, cmd)
        # The size first: output written between the two would otherwise show as a size
        # past bytes that were not read (an empty page of a log that is not empty).
        size = log.size
        start, data = await asyncio.to_thread(log.read_bytes, offset, limit)
        if data:
            size = max(size, start + len(data))
        return _command(row, output=data.decode(errors="replace"), output_offset=start,
                        output_size=size, output_start=log.start, next_offset=start + len(data),
                        output_truncated=start > offset or start + len(data) < size)

    async def events(self, tenant: str, session_id: str, command_id: str,
                     offset: int = 0) -> AsyncIterator[Event]:
        """Output from `offset` as it is produced, then the exit; resumable by offset."""
        row, cmd = await self._find(tenant, session_id, command_id)
        return self._follow(await self._log(row, cmd), cmd, row, offset)

    async def _follow(self, log: OutputLog, cmd: RunningCommand | None, row: Row,
                      pos: int) -> AsyncIterator[Event]:
        pos = max(pos, 0)
        flush = False
        while True:
            pos = max(pos, log.start)  # bytes a chatty command's log dropped are skipped
            # The size is taken before the (threaded) read: bytes appended while it runs
            # must wake the wait below, not be waited past.
            seen = log.size
            chunks = await asyncio.to_thread(log.read, pos, STREAM_READ_BYTES)
            if chunks and not flush and not (log.closed and chunks[-1].end >= log.size):
                chunks = _hold_partial_char(chunks)
            flush = False
            if chunks:
                for c in chunks:
                    yield _output_event(c.offset, c.stream, c.data)
                    pos = c.end
                continue
            if log.closed and pos >= log.size:
                break
            # Wait for bytes past everything seen, a held-back partial character included;
            # a character still incomplete after a quiet spell is sent as it is.
            flush = not await log.wait_for(max(pos, seen), IDLE_FLUSH_S)
        if cmd is not None:
            await cmd.finished.wait()
            row = cmd.state.row()
        yield ExitEvent(status=row["status"], exit_code=row["exit_code"], signal=row["signal"],
                        end_reason=row["end_reason"])

    # -- acting on commands -----------------------------------------------------------

    async def _running(self, tenant: str, session_id: str, command_id: str) -> RunningCommand:
        """A command still running (409 once it ended); acting on it is session activity."""
        _, cmd = await self._find(tenant, session_id, command_id)
        if cmd is None:
            raise Conflict(f"command {command_id} has already finished", "command_finished")
        live = self.sessions.get_live(tenant, session_id)
        if live is not None:
            live.touch()
        return cmd

    async def stdin(self, tenant: str, session_id: str, command_id: str, req: StdinRequest) -> StdinResult:
        cmd = await self._running(tenant, session_id, command_id)
        n = cmd.write_stdin(req.data(), eof=req.eof)
        return StdinResult(bytes=n)

    async def stdin_stream(self, tenant: str, session_id: str, command_id: str,
                           chunks: AsyncIterator[bytes], eof: bool,
                           gone: Callable[[], Awaitable[None]] | None = None) -> StdinResult:
        """Stream bytes of any length to the command's stdin, as fast as it reads them
        (the request body is read no faster), then close it when `eof`; `gone` returns
        when the writer has left (a wait for the command then ends)."""
        cmd = await self._running(tenant, session_id, command_id)
        # Each stream holds a client connection and its buffers for as long as the
        # command takes to read: bounded per tenant so one cannot hold the server's.
        cap = self.settings.stdin_streams_per_tenant
        if self._stdin_by_tenant[tenant] >= cap:
            raise OverLimit(f"this tenant is streaming to {cap} commands' stdin already "
                            "(stdin_streams_per_tenant); end one first",
                            "too_many_stdin_streams", retry_after=1)
        self.stdin_streams += 1
        self._stdin_by_tenant[tenant] += 1
        try:
            return StdinResult(bytes=await cmd.feed_stdin(chunks, eof, gone))
        finally:
            self.stdin_streams -= 1
            self._stdin_by_tenant[tenant] -= 1
            if not self._stdin_by_tenant[tenant]:
                del self._stdin_by_tenant[tenant]

    async def kill(self, tenant: str, session_id: str, command_id: str, sig: str | int) -> Command:
        signum = parse_signal(sig)
        cmd = await self._running(tenant, session_id, command_id)
        cmd.kill(signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cmd.finished.wait(), KILL_SETTLE_S)
        return _command(cmd.state.row())


def _check_recorded(cmd: RunningCommand) -> None:
    """A foreground command whose output could not be recorded was ended: say so."""
    if cmd.output.failure is not None:
        raise _unrecordable(cmd.output.failure, "so the command was ended (its whole tree)")


def _unrecordable(error: OSError, then: str) -> ServiceError:
    """The error for output that cannot be recorded: a full disk (507), or a server out
    of file descriptors for now (503, to retry)."""
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return Unavailable(f"the server is out of file descriptors: the command's output "
                           f"could not be recorded, {then}; try again later", retry_after=5)
    return StorageFull(f"the server's disk is full: the command's output could not be "
                       f"recorded ({error.strerror}), {then}; try again once space is freed")


def _setup_error(reason: str) -> ServiceError:
    """The error for a one-shot sandbox that could not be set up (`reason`: the runtime's
    words). A cwd is entered inside the sandbox, so every missing one answers the same."""
    if reason.startswith("bwrap: Can't chdir"):
        return Conflict("cwd does not exist in the sandbox or is not a directory",
                        "invalid_cwd")
    return SandboxFailed(f"the sandbox could not be set up: {reason.strip()[:300]}")


async def _succeeded(work: asyncio.Future[None]) -> bool:
    """Whether `work` ends without an error (its error is the caller's to report)."""
    try:
        await work
    except Exception:  # noqa: BLE001 - reported where it was awaited first
        return False
    return True


def _command(row: Row, **extra: Any) -> Command:
    fields = {k: v for k, v in row.items() if k in Command.model_fields}
    return Command(**{**fields, **extra})


def _output_event(offset: int, stream: int, data: bytes) -> OutputEvent:
    try:
        return OutputEvent(offset=offset, stream=STREAM_NAMES[stream],  # type: ignore[arg-type]
                           data=data.decode(), end=offset + len(data))
    except UnicodeDecodeError:
        return OutputEvent(offset=offset, stream=STREAM_NAMES[stream],  # type: ignore[arg-type]
                           data=data.decode(errors="replace"), end=offset + len(data),
                           data_b64=base64.b64encode(data).decode())


def _incomplete_utf8_tail(data: bytes) -> int:
    """How many bytes at the end start a UTF-8 character that is not complete yet."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # a lead byte (or ASCII)
            need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
            return back if need > back else 0
    return 0


def _hold_partial_char(chunks: list[Any]) -> list[Any]:
    """Keep a character split across writes (or reads) whole: hold its first bytes back
    until the rest is read."""
    last = chunks[-1]
    cut = _incomplete_utf8_tail(last.data)
    if not cut:
        return chunks
    if cut == len(last.data):
        return chunks[:-1]
    return [*chunks[:-1], type(last)(last.offset, last.stream, last.data[:-cut])]
