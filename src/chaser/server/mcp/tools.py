"""The MCP tools: each a few lines over the core (`chaser.core`), never the runtime.

A tool gets the caller (core + tenant) and its validated arguments, and returns text
for the model plus a result model that becomes `structuredContent`. Core errors
(`chaser.errors.ServiceError`) are turned into `isError` results by the dispatcher.
Choosing a session, running commands and reading or writing files are the core's
(`SessionService.choose`, `Executor`, `FileService` over the files API); tools shape the answers for a
model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel

from chaser.core.service import Chaser
from chaser.errors import BadRequest
from chaser.models import (
    BackgroundStarted,
    Command,
    CommandList,
    ExecRequest,
    ExecResult,
    SessionExecRequest,
    SessionList,
    StdinRequest,
    StdinResult,
)
from chaser.jobs.models import FINAL_STATUSES, Job, JobCreate
from chaser.server.mcp import schemas as s

@dataclass(frozen=True)
class ToolContext:
    """Who calls a tool: the core and the tenant of the request's API key."""

    core: Chaser
    tenant: str


@dataclass
class ToolOutput:
    """What a tool returns: text blocks for the model and the structured result."""

    texts: list[str]
    data: BaseModel


ToolFn = Callable[[ToolContext, Any], Awaitable[ToolOutput]]


@dataclass(frozen=True)
class ToolSpec:
    """One tool as advertised by `tools/list` and dispatched by `tools/call`."""

    name: str
    title: str
    description: str
    args: type[s.Args]
    result: type[BaseModel]
    run: ToolFn
    hints: dict[str, bool] = field(default_factory=dict)


# -- sessions as tools see them ---------------------------------------------------------


async def _session_id(c: ToolContext, target: s.Target, image: str | None = None, *,
                      provision: bool = True) -> str:
    """The session a tool acts in: the given one, the workspace's, or a new private one."""
    live = await c.core.sessions.choose(c.tenant, session_id=target.session_id,
                                        workspace=target.workspace, image=image,
                                        provision=provision)
    return live.id


def _status(cmd: Command | ExecResult) -> str:
    if cmd.status == "running":
        return f"running (pid {cmd.pid})" if isinstance(cmd, Command) else "running"
    if cmd.status == "exited":
        return f"exit code: {cmd.exit_code}"
    if cmd.status == "timed_out":
        return f"timed out and killed (signal {cmd.signal})"
    return f"killed by signal {cmd.signal}"


# -- terminal and background commands ---------------------------------------------------


async def terminal(c: ToolContext, a: s.TerminalArgs) -> ToolOutput:
    run: dict[str, Any] = {"command": a.command, "cwd": a.cwd, "env": a.env, "shell": a.shell,
                           "timeout_ms": a.timeout_ms, "max_output_bytes": a.max_output_bytes}
    res: ExecResult
    if a.ephemeral:
        if a.session_id or a.workspace:
            raise BadRequest("ephemeral: true runs in a throw-away sandbox; leave out session_id "
                             "and workspace")
        res = await c.core.executor.exec(c.tenant, ExecRequest(ephemeral=True, image=a.image, **run))
    elif a.workspace and not a.session_id:
        res = await c.core.executor.exec(c.tenant, ExecRequest(workspace=a.workspace, image=a.image,
                                                               **run))
    else:
        sid = await _session_id(c, a, a.image)
        res = await c.core.executor.run(c.tenant, sid, SessionExecRequest(**run))
    shown = min(a.max_output_bytes, max(res.output_size - res.output_offset, 0))
    result = s.TerminalResult(**res.model_dump(),
                              next_offset=res.output_offset + shown if res.output_truncated else None)
    text = res.output
    if text and not text.endswith("\n"):
        text += "\n"
    if res.output_truncated:
        text += f"[output truncated: showing bytes {res.output_offset}-{result.next_offset} of " \
                f"{res.output_size}. "
        text += (f"Call read_output with session_id={res.session_id}, command_id={res.command_id}, "
                 f"offset={result.next_offset} for more.]\n" if res.command_id else
                 "An ephemeral run keeps no output: redirect it to a file in a session instead.]\n")
    text += _status(res) + "\n"
    text += (f"session_id: {res.session_id} (pass it to the next call to reuse this sandbox)"
             if res.session_id else "(ephemeral sandbox: removed after the command)")
    return ToolOutput([text], result)


async def shell(c: ToolContext, a: s.ShellArgs) -> ToolOutput:
    sid = await _session_id(c, a)
    run = await c.core.terminals.run_in_shell(c.tenant, sid, a.command, a.timeout_ms / 1000,
                                              a.max_output_bytes)
    result = s.ShellResult(session_id=run.session_id, pty_id=run.pty_id, exit_code=run.exit_code,
                           output=run.output, output_truncated=run.output_truncated,
                           interrupted=run.interrupted, new_shell=run.new_shell)
    text = "[a new shell: nothing of earlier calls' state (cwd, variables) is in it]\n" \
        if run.new_shell else ""
    text += run.output if not run.output or run.output.endswith("\n") else run.output + "\n"
    if run.output_truncated:
        text += f"[output truncated to {a.max_output_bytes} bytes of {run.output_size}]\n"
    if run.interrupted:
        text += f"[interrupted after {a.timeout_ms} ms (Ctrl-C)]\n"
    text += (f"exit code: {run.exit_code}" if run.exit_code is not None else
             "the shell exited (the next call starts a new one)")
    text += f"\nsession_id: {run.session_id} (pass it again to keep this shell's state)"
    return ToolOutput([text], result)


async def start_command(c: ToolContext, a: s.StartArgs) -> ToolOutput:
    sid = await _session_id(c, a, a.image)
    req = SessionExecRequest(command=a.command, cwd=a.cwd, env=a.env, shell=a.shell, background=True)
    started = await c.core.executor.start(c.tenant, sid, req)
    return ToolOutput([f"started command_id: {started.command_id} (pid {started.pid}) in "
                       f"session_id: {sid}. Read its output with read_output, write to its stdin "
                       "with send_input, stop it with send_signal."], started)


async def read_output(c: ToolContext, a: s.ReadOutputArgs) -> ToolOutput:
    ex = c.core.executor
    cmd = await ex.get_command(c.tenant, a.session_id, a.command_id, a.offset, a.limit)
    if a.wait_ms and cmd.status == "running" and cmd.next_offset >= cmd.output_size:
        events = await ex.events(c.tenant, a.session_id, a.command_id, cmd.next_offset)
        try:
            with anyio.move_on_after(a.wait_ms / 1000):
                await anext(events)  # the first new output, or the exit
        except StopAsyncIteration:
            pass
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        cmd = await ex.get_command(c.tenant, a.session_id, a.command_id, a.offset, a.limit)
    text = cmd.output or ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"[{_status(cmd)}; output bytes {cmd.output_offset}-{cmd.next_offset} of {cmd.output_size}"
    if cmd.output_offset > a.offset:
        text += f"; bytes before {cmd.output_offset} were dropped (log limit)"
    if cmd.next_offset < cmd.output_size:
        text += f"; more output: call read_output with offset={cmd.next_offset}"
    elif cmd.status == "running":
        text += f"; for new output call read_output with offset={cmd.next_offset} (wait_ms waits)"
    return ToolOutput([text + "]"], cmd)


async def send_input(c: ToolContext, a: s.SendInputArgs) -> ToolOutput:
    if a.input is None and not a.eof:
        raise BadRequest("give input (text) and/or eof: true")
    res = await c.core.executor.stdin(c.tenant, a.session_id, a.command_id,
                                      StdinRequest(input=a.input, eof=a.eof))
    closed = " and closed stdin" if a.eof else ""
    return ToolOutput([f"wrote {res.bytes} bytes to the stdin of {a.command_id}{closed}"], res)


async def send_signal(c: ToolContext, a: s.SendSignalArgs) -> ToolOutput:
    cmd = await c.core.executor.kill(c.tenant, a.session_id, a.command_id, a.signal)
    return ToolOutput([f"sent {a.signal} to {a.command_id}: {_status(cmd)}"], cmd)


async def list_commands(c: ToolContext, a: s.ListCommandsArgs) -> ToolOutput:
    cmds = await c.core.executor.list_commands(c.tenant, a.session_id)
    lines = [f"{x.id}  {_status(x)}  {'background' if x.background else 'foreground'}  "
             f"{x.command if len(x.command) <= 100 else x.command[:97] + '...'}" for x in cmds]
    return ToolOutput(["\n".join(lines) or f"no commands in session {a.session_id}"],
                      CommandList(commands=cmds))


# -- sessions ---------------------------------------------------------------------------


async def list_sessions(c: ToolContext, a: s.ListSessionsArgs) -> ToolOutput:
    sessions = await c.core.sessions.list(c.tenant, a.status)
    lines = [f"{x.id}  {x.status}  workspace={x.workspace or '-'}  image={x.image}  "
             f"created {x.created_at}" for x in sessions]
    return ToolOutput(["\n".join(lines) or "no sessions"], SessionList(sessions=sessions))


async def stop_session(c: ToolContext, a: s.StopSessionArgs) -> ToolOutput:
    stopped = await c.core.sessions.delete(c.tenant, a.session_id)
    res = s.StopSessionResult(session_id=stopped.id, status=stopped.status,
                              end_reason=stopped.end_reason)
    return ToolOutput([f"session {res.session_id} is {res.status}"], res)


# -- files --------------------------------------------------------------------------------


async def read_file(c: ToolContext, a: s.ReadFileArgs) -> ToolOutput:
    sid = await _session_id(c, a, provision=False)
    chunk = await c.core.files.read(c.tenant, sid, a.path, a.offset, a.limit)
    data, size = chunk.data, chunk.size
    more = a.offset + len(data) < size
    text, used = _utf8_prefix(data, cut_ok=more)
    next_offset = a.offset + used
    result = s.ReadFileResult(path=a.path, session_id=sid, size=size, offset=a.offset,
                              next_offset=next_offset, truncated=next_offset < size,
                              encoding="utf-8" if text is not None else "base64",
                              content=text if text is not None else base64.b64encode(data).decode())
    notes = []
    if text is None:
        notes.append(f"[not UTF-8 text: {len(data)} bytes, base64-encoded]\n{result.content}")
    if result.truncated:
        notes.append(f"[showing bytes {a.offset}-{next_offset} of {size}; call read_file with "
                     f"offset={next_offset} for more]")
    return ToolOutput(([text] if text is not None else []) + notes or [""], result)


def _utf8_prefix(data: bytes, *, cut_ok: bool) -> tuple[str | None, int]:
    """Decode as UTF-8; a character cut at the end of a partial read is left for the next."""
    try:
        return data.decode(), len(data)
    except UnicodeDecodeError as e:
        if cut_ok and e.reason == "unexpected end of data" and e.start >= len(data) - 3:
            try:
                return data[:e.start].decode(), e.start
            except UnicodeDecodeError:
                pass
        return None, len(data)


async def write_file(c: ToolContext, a: s.WriteFileArgs) -> ToolOutput:
    if (a.content is None) == (a.content_b64 is None):
        raise BadRequest("give exactly one of content (text) or content_b64 (base64 bytes)")
    if a.content is not None:
        data = a.content.encode()
    else:
        try:
            data = base64.b64decode(a.content_b64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("content_b64 is not valid base64") from None
    sid = await _session_id(c, a, provision=False)
    size = await c.core.files.write(c.tenant, sid, a.path, data, append=a.append)
    res = s.WriteFileResult(path=a.path, session_id=sid, bytes_written=len(data), size=size)
    verb = "appended" if a.append else "wrote"
    return ToolOutput([f"{verb} {len(data)} bytes to {a.path} (now {res.size} bytes) in session "
                       f"{sid}"], res)


# -- jobs -------------------------------------------------------------------------------


async def submit_job(c: ToolContext, a: s.SubmitJobArgs) -> ToolOutput:
    kind = "pipeline.run" if a.steps is not None else "sandbox.exec"
    req = JobCreate.model_validate({k: v for k, v in {
        "kind": kind, "command": a.command, "steps": a.steps, "workspace": a.workspace,
        "ephemeral": None if a.workspace else True, "image": a.image, "env": a.env,
        "timeout_ms": a.timeout_ms, "retry": {"max_attempts": a.max_attempts},
        "idempotency_key": a.idempotency_key, "labels": a.labels}.items() if v is not None})
    job, _ = await c.core.jobs.submit(c.tenant, req)
    return await _job_answer(c, job.id, None, a.wait_ms, s.DEFAULT_TOOL_OUTPUT_BYTES)


async def get_job(c: ToolContext, a: s.GetJobArgs) -> ToolOutput:
    return await _job_answer(c, a.job_id, a.attempt, a.wait_ms, a.max_output_bytes)


async def _job_answer(c: ToolContext, job_id: str, attempt: int | None, wait_ms: int,
                      max_bytes: int) -> ToolOutput:
    job = await c.core.jobs.get(c.tenant, job_id)
    until = time.monotonic() + wait_ms / 1000
    while job.status not in FINAL_STATUSES and time.monotonic() < until:
        await asyncio.sleep(min(0.2, max(0.0, until - time.monotonic())))
        job = await c.core.jobs.get(c.tenant, job_id)
    text = f"job {job.id} ({job.kind}) is {job.status}"
    if job.exit_code is not None:
        text += f", exit code {job.exit_code}"
    text += f"; {len(job.attempts)} attempt(s)"
    if job.attempts:
        logs = await c.core.jobs.logs(c.tenant, job.id, attempt)
        out = "".join((f"==> step {e.name}\n" if e.step is not None else "") + e.output
                      for e in logs.entries)
        if len(out.encode()) > max_bytes:
            out = "[earlier output cut]\n" + out.encode()[-max_bytes:].decode(errors="ignore")
        text += f"\noutput of attempt {logs.attempt}:\n{out}"
    if job.status not in FINAL_STATUSES:
        text += f"\n[not finished: call get_job with job_id={job.id} and wait_ms to wait]"
    return ToolOutput([text], job)


_RO = {"read_only_hint": True}
_DESTRUCTIVE = {"read_only_hint": False, "destructive_hint": True}

TOOLS: dict[str, ToolSpec] = {t.name: t for t in (
    ToolSpec("terminal", "Run a command", (
        "Run a shell command in a Linux sandbox and wait for it to finish. Returns its output "
        "(stdout and stderr interleaved), then its exit code, and the session_id of the "
        "sandbox. Pass that session_id to later calls to keep files, the working tree and "
        "running processes. With workspace instead, the command runs in that persistent "
        "workspace's sandbox (started on first use, reused after). With neither, a new private "
        "sandbox is started; with ephemeral: true a throw-away one that is removed afterwards. "
        "A non-zero exit code is a normal result. Long output is truncated; page through it "
        "with read_output. For servers and other long-running processes use start_command."),
        s.TerminalArgs, s.TerminalResult, terminal, {**_DESTRUCTIVE, "open_world_hint": True}),
    ToolSpec("shell", "Run in a persistent shell", (
        "Run a command line in the session's persistent bash shell and wait for it to finish: "
        "unlike terminal, state carries over between calls (cd, exported and plain "
        "variables, functions, aliases), as in a terminal you keep open. Returns the output "
        "(no prompt, no echo of the command) and the exit code. Runs in session_id, or in "
        "workspace's session, or in a new private session whose session_id comes back. A "
        "command past timeout_ms is interrupted with Ctrl-C; the shell stays."),
        s.ShellArgs, s.ShellResult, shell, {**_DESTRUCTIVE, "open_world_hint": True}),
    ToolSpec("start_command", "Start a background command", (
        "Start a long-running command (a dev server, a watcher, an interactive program) in the "
        "background and return at once with its command_id and pid. Runs in session_id, or in "
        "workspace's session, or in a new private session. Its stdin stays open for "
        "send_input. Follow it with read_output; stop it with send_signal."),
        s.StartArgs, BackgroundStarted, start_command, {**_DESTRUCTIVE, "open_world_hint": True}),
    ToolSpec("read_output", "Read a command's output", (
        "Read a command's status and output from a byte offset (0 for the start; next_offset "
        "of the previous read to continue). With wait_ms, waits for new output or the exit "
        "of a running command before answering."), s.ReadOutputArgs, Command, read_output, _RO),
    ToolSpec("send_input", "Send stdin", (
        "Write text to a background command's stdin (add \\n to end a line); eof: true closes "
        "stdin."), s.SendInputArgs, StdinResult, send_input, {"read_only_hint": False}),
    ToolSpec("send_signal", "Signal a command", (
        "Send a signal (default TERM; INT, KILL, HUP, ... or a number) to a command's whole "
        "process group and report its status."), s.SendSignalArgs, Command, send_signal,
        _DESTRUCTIVE),
    ToolSpec("list_commands", "List commands", (
        "List the commands of a session, newest first, with status, exit code and pid."),
        s.ListCommandsArgs, CommandList, list_commands, _RO),
    ToolSpec("read_file", "Read a file", (
        "Read a file in a session's sandbox (session_id, or workspace). Text comes back as "
        "text, other bytes base64-encoded. Large files are read in pages: offset and limit "
        "are byte counts; next_offset says where to continue."),
        s.ReadFileArgs, s.ReadFileResult, read_file, _RO),
    ToolSpec("write_file", "Write a file", (
        "Create or replace a file in a session's sandbox (session_id, or workspace), making "
        "parent directories as needed; append: true appends. Give content as text, or "
        "content_b64 for bytes."), s.WriteFileArgs, s.WriteFileResult, write_file, _DESTRUCTIVE),
    ToolSpec("list_sessions", "List sessions", (
        "List this API key's sandbox sessions, newest first (status running or stopped)."),
        s.ListSessionsArgs, SessionList, list_sessions, _RO),
    ToolSpec("submit_job", "Submit a job", (
        "Queue a durable, retriable job: one command (command) or pipeline steps (steps) "
        "in a workspace's sandbox, or a private one without workspace. It survives server "
        "restarts and is retried up to max_attempts. Returns the job at once, or after "
        "waiting up to wait_ms for it to finish; follow it with get_job."),
        s.SubmitJobArgs, Job, submit_job, {**_DESTRUCTIVE, "open_world_hint": True}),
    ToolSpec("get_job", "Read a job", (
        "A job's status, attempts (exit codes, end reasons) and the output of its latest "
        "attempt (or attempt N); wait_ms waits for it to finish first."),
        s.GetJobArgs, Job, get_job, _RO),
    ToolSpec("stop_session", "Stop a session", (
        "Stop a session: kill every process in it and remove its sandbox. A workspace's files "
        "are kept."), s.StopSessionArgs, s.StopSessionResult, stop_session, _DESTRUCTIVE),
)}
