"""A session's terminals: opening them, attaching clients to them (and to `exec` mode's
plain commands), and the single-use tickets browsers open them with.

Nothing here knows WebSockets: a transport gets an `Attachment`, sends its `hello`,
sends what `frames()` yields, and hands it what the client sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from chaser.config import Settings
from chaser.core.commands import CommandState, RunningCommand
from chaser.core.execution import BASE_ENV, Executor
from chaser.core.sessions import LiveSession, SessionService
from chaser.core.shells import HUMAN_ENV, AgentMarkers, shell_argv
from chaser.core.terminal import Frame, TerminalCommand
from chaser.core.util import new_id
from chaser.errors import BadRequest, Conflict, OverLimit, Unauthorized
from chaser.models import ExitEvent, OutputEvent, SessionExecRequest
from chaser.runtime.base import ProcessSpec
from pydantic import ValidationError

MODES = ("human", "agent", "exec")
MAX_SIZE = 1000  # columns or rows
TICKET_TTL_S = 60.0
MAX_TICKETS = 10_000  # outstanding on the server; a tenant holds at most:
MAX_TICKETS_PER_TENANT = 100
AGENT_COLS, AGENT_ROWS = 200, 50  # wide: tools programs read wrap less
MAX_LINE = 4000  # a canonical terminal takes 4095 bytes a line
MAX_ATTACHED_PER_TENANT = 256  # WebSocket clients of one tenant's terminals at once


@dataclass(frozen=True)
class ShellRun:
    """One command line run in a session's shell: its output and how it ended."""

    pty_id: str
    session_id: str
    exit_code: int | None  # None when the shell itself ended (`exit`)
    output: str
    interrupted: bool  # it ran past its timeout and was interrupted (^C)
    new_shell: bool  # this call started the shell: state from earlier calls is gone
    output_offset: int  # where the output starts in the shell's log
    output_size: int
    output_truncated: bool


@dataclass(frozen=True)
class TerminalOpen:
    """What a client asked for: a new terminal, or (`pty_id`) one to reattach to."""

    mode: str = "human"
    cols: int | None = None
    rows: int | None = None
    shell: str | None = None
    cwd: str | None = None
    command: str | None = None  # exec mode
    pty_id: str | None = None
    view: bool = False
    offset: int | None = None  # replay from here; default: the scrollback


@dataclass(frozen=True)
class Ticket:
    """What a terminal ticket stands for: the key it was taken with (checked again when
    it is used: a ticket of a key revoked since opens nothing), for one session."""

    key_id: str
    tenant: str
    session_id: str
    expires: float  # time.monotonic()


def check_size(cols: object, rows: object) -> tuple[int, int]:
    """A terminal size as asked, or BadRequest."""
    if not (isinstance(cols, int) and isinstance(rows, int) and not isinstance(cols, bool)
            and not isinstance(rows, bool) and 1 <= cols <= MAX_SIZE and 1 <= rows <= MAX_SIZE):
        raise BadRequest(f"a terminal's size is 1-{MAX_SIZE} columns and rows", "invalid_size")
    return cols, rows


class Attachment:
    """One client on a terminal (or on an exec-mode command)."""

    def __init__(self, cmd: RunningCommand | None, hello: dict[str, object],
                 frames: AsyncIterator[Frame], view: bool, live: LiveSession | None) -> None:
        self.cmd = cmd
        self.hello = hello
        self.frames = frames
        self.view = view
        self.live = live
        self.on_detach: Callable[[], None] | None = None  # gives back its place

    @property
    def terminal(self) -> TerminalCommand | None:
        return self.cmd if isinstance(self.cmd, TerminalCommand) else None

    def _writable(self) -> RunningCommand:
        if self.cmd is None:
            raise Conflict("the terminal has ended", "command_finished")
        if self.view:
            raise Conflict("this client is attached read-only (view=true)", "read_only")
        if self.live is not None:
            self.live.touch()
        return self.cmd

    async def send(self, data: bytes) -> None:
        """Keys (or stdin) from the client."""
        cmd = self._writable()
        if self.terminal is not None:
            await self.terminal.type(data)
        else:
            await cmd.stdin_room()
            cmd.write_stdin(data)

    def resize(self, cols: object, rows: object) -> None:
        self._writable()
        if self.terminal is None:
            raise BadRequest("an exec-mode command has no terminal to resize", "no_terminal")
        self.terminal.resize(*check_size(cols, rows))

    def eof(self) -> None:
        cmd = self._writable()
        if self.terminal is not None:  # a terminal's end of input is ^D, as typed
            raise BadRequest("a terminal takes ^D (\\x04) for end of input", "no_eof")
        cmd.write_stdin(b"", eof=True)

    def close_for_good(self) -> None:
        """End the terminal (or command) and its whole process tree."""
        cmd = self._writable()
        if self.terminal is not None:
            self.terminal.end("pty_closed")
        elif cmd.running:
            cmd.kill(signal.SIGKILL, reason="pty_closed")

    async def detach(self) -> None:
        """The client is gone: stop following (the grace period starts)."""
        if self.on_detach is not None:
            self.on_detach()
            self.on_detach = None
        aclose = getattr(self.frames, "aclose", None)
        if aclose is not None:
            await aclose()


class TerminalService:
    """Opens and finds a session's terminals."""

    def __init__(self, settings: Settings, sessions: SessionService, executor: Executor) -> None:
        self.settings = settings
        self.sessions = sessions
        self.executor = executor
        self._tickets: dict[str, Ticket] = {}  # by the ticket's hash
        self._shells: dict[str, TerminalCommand] = {}  # session id -> its MCP shell
        self._attached: Counter[str] = Counter()  # tenant -> clients attached now
        self._shell_locks: dict[str, asyncio.Lock] = {}

    async def run_in_shell(self, tenant: str, session_id: str, command: str,
                           timeout_s: float, max_bytes: int) -> ShellRun:
        """Run a command line in the session's agent-mode shell, which keeps its state
        (cwd, variables, functions) from one call to the next (the MCP `shell` tool)."""
        if "\x00" in command:
            raise BadRequest("the command holds a NUL character, which no shell can be given",
                             "invalid_request")
        live = await self.sessions.require_live(tenant, session_id)
        lock = self._shell_locks.setdefault(live.id, asyncio.Lock())
        async with lock:  # one command at a time: a shell reads one line at a time
            term = self._shells.get(live.id)
            new_shell = term is None or not term.running
            if new_shell:
                opened = await self.executor.launch(live, lambda: self._begin(
                    live, TerminalOpen(mode="agent"), AGENT_COLS, AGENT_ROWS), foreground=False)
                assert isinstance(opened, TerminalCommand)
                term = self._shells[live.id] = opened
                term.keep()
                self.executor.tasks.spawn(self._forget_shell(live.id, term))
            assert term is not None
            live.touch()
            deadline = asyncio.get_running_loop().time() + timeout_s
            *collect, last = typed_lines(command)
            for line in collect:
                await term.run_line(line, max(deadline - asyncio.get_running_loop().time(), 0.1))
            run = await term.run_line(last, max(deadline - asyncio.get_running_loop().time(), 0.1))
        size = run.end - run.start
        start, data = await asyncio.to_thread(term.output.read_bytes, run.start,
                                              min(size, max_bytes))
        return ShellRun(pty_id=term.state.id, session_id=live.id, exit_code=run.exit_code,
                        output=data.decode(errors="replace").replace("\r\n", "\n"),
                        interrupted=run.interrupted, new_shell=new_shell,
                        output_offset=start, output_size=size,
                        output_truncated=start > run.start or len(data) < size)

    async def _forget_shell(self, session_id: str, term: TerminalCommand) -> None:
        await term.finished.wait()
        if self._shells.get(session_id) is term:
            del self._shells[session_id]
            self._shell_locks.pop(session_id, None)

    def reserve(self, tenant: str) -> Callable[[], None]:
        """A place for one more terminal connection of `tenant` (OverLimit past
        `MAX_ATTACHED_PER_TENANT`), taken before the upgrade; call what it returns, once,
        when the connection ends."""
        if self._attached[tenant] >= MAX_ATTACHED_PER_TENANT:
            raise OverLimit(f"this key has {MAX_ATTACHED_PER_TENANT} terminal connections "
                            "open already", "too_many_clients", retry_after=5)
        self._attached[tenant] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._attached[tenant] -= 1
                if self._attached[tenant] <= 0:
                    del self._attached[tenant]

        return release

    async def open(self, tenant: str, session_id: str, req: TerminalOpen) -> Attachment:
        """A new terminal (or exec-mode command), or a client reattaching to one; the
        caller detaches it when the client leaves."""
        if req.mode not in MODES:
            raise BadRequest(f"mode must be one of {', '.join(MODES)}", "invalid_mode")
        return await self._open(tenant, session_id, req)

    async def _open(self, tenant: str, session_id: str, req: TerminalOpen) -> Attachment:
        if req.pty_id is not None:
            return await self._reattach(tenant, session_id, req)
        live = await self.sessions.require_live(tenant, session_id)
        if req.mode == "exec":
            return await self._exec(live, req)
        agent = req.mode == "agent"
        cols, rows = check_size(req.cols if req.cols is not None else AGENT_COLS if agent else 80,
                                req.rows if req.rows is not None else AGENT_ROWS if agent else 24)
        if req.shell not in (None, "sh", "bash"):
            raise BadRequest("shell must be bash or sh", "invalid_shell")
        term = await self.executor.launch(
            live, lambda: self._begin(live, req, cols, rows), foreground=False)
        assert isinstance(term, TerminalCommand)
        return self._attach(term, live, 0, False)

    async def _begin(self, live: LiveSession, req: TerminalOpen, cols: int, rows: int) -> TerminalCommand:
        markers = AgentMarkers() if req.mode == "agent" else None
        argv = shell_argv(req.mode, req.shell)
        cwd = req.cwd or str(live.row["cwd"])
        mode_env = markers.env() if markers is not None else HUMAN_ENV
        env = {**BASE_ENV, "PWD": cwd, **live.env, **mode_env}
        state = CommandState(id=new_id("cmd"), session_id=live.id, tenant=live.tenant,
                             command=" ".join(argv) if req.shell else f"{req.mode} terminal",
                             cwd=cwd, background=True, kind="pty")
        term = TerminalCommand(state, self.executor.new_log(live.id, state.id), req.mode,
                               markers, self.settings.pty_grace_s)
        await self.executor.prepare_log(term, "it was not started")
        spec = ProcessSpec(argv=argv, env=env, cwd=cwd)
        # Agent mode: echo off, so the transcript holds output, not a copy of the input.
        await term.start_tty(lambda: live.sandbox.spawn_tty(spec, cols, rows,
                                                            echo=req.mode != "agent"),
                             cols=cols, rows=rows)
        return term

    async def _exec(self, live: LiveSession, req: TerminalOpen) -> Attachment:
        if not req.command:
            raise BadRequest("exec mode needs a command (command= or a first exec frame)",
                             "missing_command")
        try:
            exec_req = SessionExecRequest(command=req.command, cwd=req.cwd, background=True)
        except ValidationError as e:
            raise BadRequest("exec mode: " + "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3]),
                "invalid_request") from None
        cmd = await self.executor.start_in_session(live, exec_req)
        return await self._attach_command(cmd, live, 0, False)

    async def _reattach(self, tenant: str, session_id: str, req: TerminalOpen) -> Attachment:
        assert req.pty_id is not None
        live = self.sessions.get_live(tenant, session_id)
        cmd = live.commands.get(req.pty_id) if live is not None else None
        if isinstance(cmd, TerminalCommand) and cmd.running:
            start = req.offset if req.offset is not None else \
                cmd.output.size - self.settings.pty_scrollback_bytes
            return self._attach(cmd, live, max(start, 0), req.view)
        if live is not None and cmd is not None and cmd.running:  # an exec-mode command
            return await self._attach_command(cmd, live, req.offset or 0, req.view)
        # Ended (or never ours): its transcript and how it ended, as any command's.
        events = await self.executor.events(tenant, session_id, req.pty_id, req.offset or 0)
        hello: dict[str, object] = {"type": "hello", "pty_id": req.pty_id, "mode": req.mode,
                                    "offset": req.offset or 0, "view": True, "cols": None,
                                    "rows": None}
        return Attachment(None, hello, _frames_of(events), True, None)

    def _attach(self, term: TerminalCommand, live: LiveSession | None, start: int,
                view: bool) -> Attachment:
        token = term.attach(start, view)
        hello: dict[str, object] = {"type": "hello", "pty_id": term.state.id, "mode": term.mode,
                                    "cols": term.cols, "rows": term.rows,
                                    "offset": max(start, term.output.start), "view": view}
        att = Attachment(term, hello, term.follow(token), view, live)
        att.on_detach = lambda: term.detach(token)  # the frames may never have been read
        return att

    async def _attach_command(self, cmd: RunningCommand, live: LiveSession, start: int,
                              view: bool) -> Attachment:
        events = await self.executor.events(live.tenant, live.id, cmd.state.id, start)
        hello: dict[str, object] = {"type": "hello", "pty_id": cmd.state.id, "mode": "exec",
                                    "cols": None, "rows": None, "offset": start, "view": view}
        return Attachment(cmd, hello, _frames_of(events), view, live)

    # -- tickets ----------------------------------------------------------------------

    def ticket(self, key_id: str, tenant: str, session_id: str) -> tuple[str, float]:
        """A single-use ticket that opens a terminal on this session for `TICKET_TTL_S`."""
        now = time.monotonic()
        if len(self._tickets) >= MAX_TICKETS // 2:
            self._tickets = {h: t for h, t in self._tickets.items() if t.expires > now}
        held = sum(1 for t in self._tickets.values() if t.tenant == tenant)
        if held >= MAX_TICKETS_PER_TENANT or len(self._tickets) >= MAX_TICKETS:
            raise OverLimit("too many terminal tickets are outstanding; use them or let them "
                            f"expire ({int(TICKET_TTL_S)} s)", "too_many_tickets",
                            retry_after=int(TICKET_TTL_S))
        ticket = "pty_" + secrets.token_urlsafe(24)
        self._tickets[_digest(ticket)] = Ticket(key_id, tenant, session_id, now + TICKET_TTL_S)
        return ticket, TICKET_TTL_S

    def take(self, ticket: str) -> Ticket | None:
        """Use a ticket up, whatever becomes of the request it came with (a refused one
        included): what it stands for, or None when it is unknown or used."""
        return self._tickets.pop(_digest(ticket), None)

    @staticmethod
    def check(taken: Ticket | None, session_id: str) -> Ticket:
        """A ticket `take` gave, if it opens a terminal on this session now (else
        Unauthorized: unknown, used, expired or for another session)."""
        if taken is None or taken.expires < time.monotonic() or taken.session_id != session_id:
            raise Unauthorized("the terminal ticket is unknown, used, expired or for "
                               "another session")
        return taken


def typed_lines(command: str) -> list[str]:
    """What is typed for an MCP shell command: printable ASCII lines of at most
    `MAX_LINE` bytes, whatever the command holds (several lines, an unbalanced quote,
    control characters the terminal would take for keys, lines longer than it takes).
    printf, a builtin of bash and sh, turns the octal escapes back into the command's
    bytes, and eval runs them in the shell itself, so its state carries over and its
    syntax errors are reported as such. The last line is the command; the ones before
    (a long command's) only collect it. The x keeps the newlines a command substitution
    would strip off its end."""
    var = "__chaser_cmd"
    escaped = "".join(f"\\{b:03o}" for b in command.encode())
    whole = f"{var}=$(printf '{escaped}'; printf x); eval \"${{{var}%x}}\""
    if len(whole) <= MAX_LINE:
        return [whole]
    per = (MAX_LINE - 100) // 4 * 4  # whole escapes a line
    lines = [f"{var}="]
    for i in range(0, len(escaped), per):
        lines.append(f"{var}=${{{var}}}$(printf '{escaped[i:i + per]}'; printf x); "
                     f"{var}=${{{var}%x}}")
    return [*lines, f'eval "${var}"']


def _digest(ticket: str) -> str:
    # Kept hashed, as keys are: a dump of the server's memory lends nobody a terminal.
    return hashlib.sha256(ticket.encode()).hexdigest()


async def _frames_of(events: AsyncIterator[object]) -> AsyncIterator[Frame]:
    """A command's output events as terminal frames: bytes, then the exit."""
    async for ev in events:
        if isinstance(ev, OutputEvent):
            yield base64.b64decode(ev.data_b64) if ev.data_b64 else ev.data.encode()
        else:
            assert isinstance(ev, ExitEvent)
            yield {"type": "exit", "exit_code": ev.exit_code, "signal": ev.signal,
                   "status": ev.status}
