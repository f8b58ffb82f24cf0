"""Arguments and results of the MCP tools, and the JSON schemas advertised for them.

Each tool takes one pydantic model of arguments (unknown fields rejected, so a typo is
an error the agent can read) and answers with one result model, which becomes the
call's `structuredContent`. Where the REST API already defines the shape (sessions,
commands, stdin), the tool answers with the same model from `chaser.models`.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chaser.models import (
    MAX_TIMEOUT_MS,
    ExecResult,
    WorkspaceName,
)

DEFAULT_TOOL_OUTPUT_BYTES = 64 * 1024  # what an agent's context comfortably takes per call
MAX_TOOL_OUTPUT_BYTES = 4 * 1024 * 1024
DEFAULT_FILE_READ_BYTES = 256 * 1024
MAX_FILE_READ_BYTES = 8 * 1024 * 1024
MAX_WAIT_MS = 60_000

_SESSION_ID = "Id of a running session (`ses_...`) returned by an earlier call."
_WORKSPACE = ("Persistent workspace name (1-64 of A-Z a-z 0-9 . _ -). Its files survive; its "
              "session is started on first use and reused by later calls.")
_COMMAND_ID = "Id of the command (`cmd_...`) returned by `start_command` or `terminal`."


class Args(BaseModel):
    """Base of every tool's arguments: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Target(Args):
    """Where a tool acts: a running session, or a workspace (its session is reused or started)."""

    session_id: str | None = Field(default=None, description=_SESSION_ID)
    workspace: WorkspaceName | None = Field(default=None, description=_WORKSPACE)


class RunArgs(Target):
    """What `terminal` and `start_command` share."""

    command: str = Field(min_length=1, description="Shell command line, run with /bin/sh -c "
                                                   "(or bash with shell: \"bash\").")
    cwd: str | None = Field(default=None, description="Absolute working directory; default /workspace.")
    env: dict[str, str] | None = Field(default=None, description="Extra environment variables.")
    shell: Literal["sh", "bash"] = Field(default="sh", description="Shell that runs the command.")
    image: str | None = Field(default=None, description="Root filesystem image for a new sandbox; "
                                                         "`default` is built in.")


class TerminalArgs(RunArgs):
    """`terminal`: run a command to completion."""

    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS,
                                   description="Kill the command after this long; default 300000.")
    ephemeral: bool | None = Field(default=None, description=(
        "true: run in a throw-away sandbox destroyed right after (no session_id comes back). "
        "Without session_id, workspace or ephemeral a new private session is started and its "
        "session_id returned for reuse."))
    max_output_bytes: int = Field(default=DEFAULT_TOOL_OUTPUT_BYTES, ge=0, le=MAX_TOOL_OUTPUT_BYTES,
                                  description="How much output to return; the rest can be paged "
                                              "with read_output.")


class ShellArgs(Target):
    """`shell`: a command line in the session's persistent shell."""

    command: str = Field(min_length=1, max_length=64 * 1024, description=(
        "A command line for bash (several lines are fine). The shell keeps its state between "
        "calls: cd, variables, functions and background jobs persist."))
    timeout_ms: int = Field(default=300_000, ge=1, le=MAX_TIMEOUT_MS, description=(
        "Past this the command is interrupted (Ctrl-C, exit code 130); the shell stays."))
    max_output_bytes: int = Field(default=DEFAULT_TOOL_OUTPUT_BYTES, ge=0,
                                  le=MAX_TOOL_OUTPUT_BYTES, description="How much output to return.")


class ShellResult(BaseModel):
    """`shell`: what one command line printed and how it ended."""

    session_id: str
    pty_id: str
    exit_code: int | None
    output: str
    output_truncated: bool
    interrupted: bool
    new_shell: bool = Field(description="this call started the shell (the first call, or the "
                                        "previous shell ended): state from earlier calls is gone")


class StartArgs(RunArgs):
    """`start_command`: start a background command."""


class CommandRef(Args):
    session_id: str = Field(min_length=1, description=_SESSION_ID)
    command_id: str = Field(min_length=1, description=_COMMAND_ID)


class ReadOutputArgs(CommandRef):
    offset: int = Field(default=0, ge=0, description="Byte offset into the command's output to "
                                                     "read from (next_offset of the previous read).")
    limit: int = Field(default=DEFAULT_TOOL_OUTPUT_BYTES, ge=1, le=MAX_TOOL_OUTPUT_BYTES,
                       description="Most bytes to return.")
    wait_ms: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description=(
        "If the command is running and has no output past offset yet, wait up to this long "
        "for more output or its exit."))


class SendInputArgs(CommandRef):
    input: str | None = Field(default=None, description="Text to write to the command's stdin "
                                                        "(include \\n to end a line).")
    eof: bool = Field(default=False, description="Close stdin after writing.")


class SendSignalArgs(CommandRef):
    signal: str | int = Field(default="TERM", description="Signal name (TERM, INT, KILL, HUP; "
                                                          "with or without SIG) or number.")


class ListCommandsArgs(Args):
    session_id: str = Field(min_length=1, description=_SESSION_ID)


class ListSessionsArgs(Args):
    status: Literal["running", "stopped"] | None = Field(default=None,
                                                         description="Only sessions in this state.")


class StopSessionArgs(Args):
    session_id: str = Field(min_length=1, description=_SESSION_ID)


class FileArgs(Target):
    path: str = Field(min_length=1, description="File path in the sandbox; relative paths are "
                                                "relative to /workspace.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if "\0" in v:
            raise ValueError("path contains a NUL byte")
        return v


class ReadFileArgs(FileArgs):
    offset: int = Field(default=0, ge=0, le=2**62, description="Byte offset to start "
                        "reading at.")
    limit: int = Field(default=DEFAULT_FILE_READ_BYTES, ge=1, le=MAX_FILE_READ_BYTES,
                       description="Most bytes to return.")


class WriteFileArgs(FileArgs):
    content: str | None = Field(default=None, description="Text to write (UTF-8).")
    content_b64: str | None = Field(default=None, description="Bytes to write, base64-encoded "
                                                              "(instead of content).")
    append: bool = Field(default=False, description="Append instead of replacing the file.")


# -- results ---------------------------------------------------------------------------


class SubmitJobArgs(Args):
    """`submit_job`: queue a retriable job (one command, or pipeline steps)."""

    command: str | None = Field(default=None, description="Shell command of a sandbox.exec "
                                "job (give this or steps).")
    steps: list[dict[str, Any]] | None = Field(default=None, description=(
        "Steps of a pipeline.run job, run in order in one sandbox: each {\"name\", "
        "\"command\", \"continue_on_error\", \"timeout_ms\", \"env\"}."))
    workspace: WorkspaceName | None = Field(default=None, description=_WORKSPACE)
    image: str | None = Field(default=None, description="Root filesystem image.")
    env: dict[str, str] | None = Field(default=None, description="Extra environment variables.")
    max_attempts: int = Field(default=1, ge=1, le=100, description="Attempts in all (retries "
                              "on failure, with backoff).")
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS,
                                   description="Per attempt.")
    idempotency_key: str | None = Field(default=None, max_length=200, description=(
        "Submitting the same key again returns the first job instead of a new one."))
    labels: dict[str, str] | None = Field(default=None, description="Labels to filter by.")
    wait_ms: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description=(
        "Wait up to this long for the job to finish before answering."))


class GetJobArgs(Args):
    """`get_job`: a job's status and output."""

    job_id: str = Field(min_length=1, description="Id of the job (`job_...`).")
    attempt: int | None = Field(default=None, ge=1, description="Attempt whose output to "
                                "show; default the latest.")
    wait_ms: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description=(
        "Wait up to this long for the job to finish before answering."))
    max_output_bytes: int = Field(default=DEFAULT_TOOL_OUTPUT_BYTES, ge=0,
                                  le=MAX_TOOL_OUTPUT_BYTES, description="Output to return "
                                  "(the end of it when longer).")


class TerminalResult(ExecResult):
    """`terminal`: the finished command, as `POST /v1/exec` answers, plus where to page on."""

    next_offset: int | None = None


class ReadFileResult(BaseModel):
    path: str
    session_id: str
    size: int
    offset: int
    next_offset: int
    truncated: bool
    encoding: Literal["utf-8", "base64"]
    content: str


class WriteFileResult(BaseModel):
    path: str
    session_id: str
    bytes_written: int
    size: int


class StopSessionResult(BaseModel):
    session_id: str
    status: str
    end_reason: str | None = None


# -- JSON schemas ----------------------------------------------------------------------


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, simplified for tool callers: optional fields are plain types
    (no `anyOf` with null, no `default: null`) and no generated titles."""
    schema = _strip_titles(model.model_json_schema())
    schema.pop("description", None)  # the tool's description says it better
    required = set(schema.get("required", []))
    schema["properties"] = dict(sorted(schema.get("properties", {}).items(),
                                       key=lambda item: item[0] not in required))
    for prop in schema["properties"].values():
        options = prop.get("anyOf")
        if options and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del prop["anyOf"]
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        if "default" in prop and prop["default"] is None:
            del prop["default"]
    return schema


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = _strip_titles(model.model_json_schema(mode="serialization"))
    schema.pop("description", None)
    return schema


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)

    def walk(node: Any, in_properties: bool = False) -> None:
        if isinstance(node, dict):
            if not in_properties:
                node.pop("title", None)
            for key, value in node.items():
                walk(value, in_properties=key in ("properties", "$defs"))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema
