"""Wire shapes of commands: what to run, how it went, its stdin, signals and output events."""

from __future__ import annotations

import base64
import signal
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chaser.models.fields import (
    AbsPath,
    B64_MAX,
    B64_PATTERN,
    COMMAND_PATTERN,
    CommandStatus,
    DEFAULT_MAX_OUTPUT_BYTES,
    EnvVars,
    ImageName,
    MAX_COMMAND_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_STDIN_BYTES,
    MAX_TIMEOUT_MS,
    SIGNAL_NAME_PATTERN,
    SIGNAL_NUMBER_PATTERN,
    Shell,
    Strict,
    Text,
    WorkspaceName,
    both_not,
    check_b64,
    exclusive_target,
)


class Limits(Strict):
    """Per-sandbox resource limits (enforced through cgroups where the host allows)."""

    memory_mb: int | None = Field(default=None, ge=16, le=1024 * 1024)
    pids: int | None = Field(default=None, ge=8, le=1_000_000)
    cpus: float | None = Field(default=None, ge=0.01, le=1024)  # the kernel's smallest quota
    disk_mb: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)


class CommandRequest(Strict):
    """What to run: the fields every exec endpoint shares."""

    model_config = ConfigDict(json_schema_extra=both_not("stdin", "stdin_b64"))

    command: Text = Field(min_length=1, json_schema_extra={
        "pattern": COMMAND_PATTERN, "maxLength": MAX_COMMAND_BYTES,
        "description": f"At most {MAX_COMMAND_BYTES} bytes in UTF-8"})
    cwd: AbsPath | None = None
    env: EnvVars | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    stdin: Text | None = Field(default=None, max_length=MAX_STDIN_BYTES)
    stdin_b64: str | None = Field(default=None, max_length=B64_MAX,
                                  json_schema_extra={"pattern": B64_PATTERN},
                                  description="stdin as base64: any bytes (instead of stdin)")
    shell: Shell = "sh"
    max_output_bytes: int = Field(default=DEFAULT_MAX_OUTPUT_BYTES, ge=0, le=MAX_OUTPUT_BYTES)

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        if "\0" in v:
            raise ValueError("command contains a NUL byte")
        if not v.strip():
            raise ValueError("command is empty")
        if len(v.encode()) > MAX_COMMAND_BYTES:
            raise ValueError(f"command is longer than {MAX_COMMAND_BYTES} bytes")
        return v

    @field_validator("stdin_b64")
    @classmethod
    def _stdin_b64(cls, v: str | None) -> str | None:
        return check_b64(v)

    @model_validator(mode="after")
    def _one_stdin(self) -> Self:
        if self.stdin is not None and self.stdin_b64 is not None:
            raise ValueError("give either stdin or stdin_b64, not both")
        return self

    def stdin_bytes(self) -> bytes | None:
        """The command's stdin as bytes, from whichever field holds it."""
        if self.stdin_b64 is not None:
            return base64.b64decode(self.stdin_b64)
        return None if self.stdin is None else self.stdin.encode()


class SessionExecRequest(CommandRequest):
    """`POST /v1/sessions/{id}/exec`."""

    background: bool = False


class ExecRequest(CommandRequest):
    """`POST /v1/exec`: one command in a workspace's sandbox or an ephemeral one."""

    workspace: WorkspaceName | None = None
    ephemeral: bool | None = None
    image: ImageName | None = None
    limits: Limits | None = None  # a one-shot sandbox's, or a workspace's new session's

    model_config = ConfigDict(json_schema_extra={"allOf": [
        both_not("stdin", "stdin_b64"), exclusive_target(),
        {"anyOf": [  # `ephemeral: false` names a workspace
            {"not": {"required": ["ephemeral"], "properties": {"ephemeral": {"const": False}}}},
            {"required": ["workspace"], "properties": {"workspace": {"type": "string"}}}]}]})

    @model_validator(mode="after")
    def _one_target(self) -> ExecRequest:
        if self.workspace is not None and self.ephemeral:
            raise ValueError("give either workspace or ephemeral, not both")
        if self.workspace is None and self.ephemeral is False:
            raise ValueError("ephemeral: false needs a workspace")
        return self


class Command(BaseModel):
    """One command run in a session, with (a page of) its output."""

    id: str
    session_id: str
    kind: Literal["command", "pty"] = Field(
        default="command", description="`pty`: a terminal (docs/pty.md); its id is the `pty_id`")
    command: str
    cwd: str
    pid: int | None = None
    background: bool = False
    status: CommandStatus
    exit_code: int | None = None
    signal: str | None = None
    end_reason: str | None = None
    started_at: str
    ended_at: str | None = None
    output: str | None = None
    output_truncated: bool = False
    output_offset: int = 0
    output_size: int = 0
    output_start: int = 0
    next_offset: int = 0


class CommandList(BaseModel):
    commands: list[Command]


class ExecResult(BaseModel):
    """A finished foreground command."""

    exit_code: int | None
    output: str
    output_truncated: bool
    status: CommandStatus
    signal: str | None = None
    timed_out: bool = False
    duration_ms: int
    session_id: str | None = None
    command_id: str | None = None
    output_offset: int = 0
    output_size: int = 0


class BackgroundStarted(BaseModel):
    """A background command that has just started."""

    command_id: str
    pid: int | None
    session_id: str
    status: CommandStatus = "running"
    started_at: str


class StdinRequest(Strict):
    """`POST .../stdin` as JSON: text (`input`) or any bytes (`data_b64`); `eof` closes.
    (A raw `application/octet-stream` body streams bytes of any length instead.)"""

    model_config = ConfigDict(json_schema_extra=both_not("input", "data_b64"))

    input: Text | None = Field(default=None, max_length=MAX_STDIN_BYTES)
    data_b64: str | None = Field(default=None, max_length=B64_MAX,
                                 json_schema_extra={"pattern": B64_PATTERN})
    eof: bool = False

    @field_validator("data_b64")
    @classmethod
    def _data_b64(cls, v: str | None) -> str | None:
        return check_b64(v)

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if self.input is not None and self.data_b64 is not None:
            raise ValueError("give either input or data_b64, not both")
        return self

    def data(self) -> bytes:
        """The bytes to write."""
        if self.data_b64 is not None:
            return base64.b64decode(self.data_b64)
        return (self.input or "").encode()


class StdinResult(BaseModel):
    ok: bool = True
    bytes: int = 0


class KillRequest(Strict):
    signal: str | int = Field(default="TERM", json_schema_extra={"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": signal.NSIG - 1},
        {"type": "string", "pattern": SIGNAL_NAME_PATTERN},
        {"type": "string", "pattern": SIGNAL_NUMBER_PATTERN}]})


class OutputEvent(BaseModel):
    """One chunk of output: `offset` is where its bytes start in the command's log."""

    offset: int
    stream: Literal["stdout", "stderr"]
    data: str
    data_b64: str | None = None
    end: int = Field(default=0, exclude=True)  # offset just past these bytes (the SSE id)


class ExitEvent(BaseModel):
    status: CommandStatus
    exit_code: int | None = None
    signal: str | None = None
    end_reason: str | None = None


# -- images ------------------------------------------------------------------------------
