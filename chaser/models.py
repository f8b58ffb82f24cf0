"""Wire models shared by the server, the core and the SDK: each shape is defined once."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_COMMAND_BYTES = 128 * 1024 - 1  # one argv string: the kernel's MAX_ARG_STRLEN less the NUL
MAX_TIMEOUT_MS = 24 * 3600 * 1000
DEFAULT_FOREGROUND_TIMEOUT_MS = 300_000
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_STDIN_BYTES = 2 * 1024 * 1024
_B64_MAX = (MAX_STDIN_BYTES + 2) // 3 * 4  # base64 of MAX_STDIN_BYTES
WORKSPACE_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CommandStatus = Literal["running", "exited", "killed", "timed_out"]
SessionStatus = Literal["running", "stopped"]
Shell = Literal["sh", "bash"]


def _check_b64(value: str | None) -> str | None:
    """Standard base64 (with padding), or a clear error."""
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
    return value


class _Strict(BaseModel):
    """Requests reject unknown fields so typos never pass silently, and take JSON types
    as they are: `"background": 0` or `"timeout_ms": "5"` are 422, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _utf8(value: str) -> str:
    """JSON can carry lone UTF-16 surrogates ("\ud800") that no OS string can hold:
    refuse them here, not deep in a launch where they would leave work half done."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        _utf8(value)
        if not ENV_NAME_RE.fullmatch(name):  # `$` in match() would allow a trailing "\n"
            raise ValueError(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise ValueError(f"environment variable {name} contains a NUL byte")
    return env


def check_workspace_name(name: str) -> str:
    """Validate a workspace name: 1-64 of [A-Za-z0-9._-], not starting with '.'."""
    if not WORKSPACE_RE.fullmatch(name):
        raise ValueError(
            "workspace names are 1-64 characters of A-Z a-z 0-9 . _ - and do not start with '.'"
        )
    return name


def _check_abs_path(path: str) -> str:
    _utf8(path)
    if "\0" in path or not path.startswith("/"):
        raise ValueError("cwd must be an absolute path")
    return path


WorkspaceName = Annotated[str, AfterValidator(check_workspace_name)]
ImageName = Annotated[Text, Field(min_length=1, max_length=512,
                                  description="An OCI reference (`node:20-bookworm`, "
                                              "`ghcr.io/org/app:tag`, `host:5000/x@sha256:...`)")]
EnvVars = Annotated[dict[str, str], AfterValidator(_check_env)]
AbsPath = Annotated[str, AfterValidator(_check_abs_path)]


class Limits(_Strict):
    """Per-sandbox resource limits (enforced through cgroups where the host allows)."""

    memory_mb: int | None = Field(default=None, ge=16, le=1024 * 1024)
    pids: int | None = Field(default=None, ge=8, le=1_000_000)
    cpus: float | None = Field(default=None, ge=0.01, le=1024)  # the kernel's smallest quota
    disk_mb: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)


class CommandRequest(_Strict):
    """What to run: the fields every exec endpoint shares."""

    command: Text = Field(min_length=1)
    cwd: AbsPath | None = None
    env: EnvVars | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    stdin: Text | None = Field(default=None, max_length=MAX_STDIN_BYTES)
    stdin_b64: str | None = Field(default=None, max_length=_B64_MAX,
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
        return _check_b64(v)

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

    @model_validator(mode="after")
    def _one_target(self) -> ExecRequest:
        if self.workspace is not None and self.ephemeral:
            raise ValueError("give either workspace or ephemeral, not both")
        if self.workspace is None and self.ephemeral is False:
            raise ValueError("ephemeral: false needs a workspace")
        return self


class SessionCreate(_Strict):
    """`POST /v1/sessions`."""

    workspace: WorkspaceName | None = None
    image: ImageName | None = None
    env: EnvVars | None = None
    cwd: AbsPath | None = None
    limits: Limits | None = None
    idle_timeout_s: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class Session(BaseModel):
    """A running (or stopped) sandbox that commands join."""

    id: str
    workspace: str | None = None
    image: str = "default"
    status: SessionStatus
    created_at: str
    ended_at: str | None = None
    end_reason: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = "/workspace"
    limits: Limits = Field(default_factory=Limits)
    idle_timeout_s: int = 1800
    last_activity_at: str | None = None


class SessionList(BaseModel):
    sessions: list[Session]


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


class PtyTicket(BaseModel):
    """A single-use ticket that opens one terminal on a session (docs/pty.md)."""

    ticket: str
    expires_in_s: int
    url: str = Field(description="the WebSocket path with the ticket in its query")


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


class StdinRequest(_Strict):
    """`POST .../stdin` as JSON: text (`input`) or any bytes (`data_b64`); `eof` closes.
    (A raw `application/octet-stream` body streams bytes of any length instead.)"""

    input: Text | None = Field(default=None, max_length=MAX_STDIN_BYTES)
    data_b64: str | None = Field(default=None, max_length=_B64_MAX)
    eof: bool = False

    @field_validator("data_b64")
    @classmethod
    def _data_b64(cls, v: str | None) -> str | None:
        return _check_b64(v)

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


class KillRequest(_Strict):
    signal: str | int = "TERM"


class Workspace(BaseModel):
    """A tenant's persistent workspace: its files outlive every session on it."""

    name: str
    created_at: str
    last_used_at: str | None = None
    disk_bytes: int
    session_id: str | None = None  # the session running on it, if any


class WorkspaceList(BaseModel):
    workspaces: list[Workspace]


class TenantLimits(_Strict):
    """What one tenant may hold at once; None: the server's default for every tenant."""

    max_sandboxes: int | None = Field(default=None, ge=0, le=1_000_000)
    max_sessions: int | None = Field(default=None, ge=0, le=1_000_000)
    max_commands: int | None = Field(default=None, ge=0, le=10_000_000)
    max_memory_mb: int | None = Field(default=None, ge=0, le=1 << 30)
    max_pids: int | None = Field(default=None, ge=8, le=1 << 22)
    max_disk_mb: int | None = Field(default=None, ge=0, le=1 << 40)


class TenantUsage(BaseModel):
    """What a tenant holds now, against its limits (`GET /v1/usage`)."""

    tenant: str
    usage: dict[str, int]
    limits: TenantLimits


class UsageReport(BaseModel):
    """`GET /v1/usage`: the caller's tenant; for an admin, every tenant and the server."""

    tenant: str
    usage: dict[str, int]
    limits: TenantLimits
    tenants: list[TenantUsage] | None = None
    server: dict[str, dict[str, int]] | None = None


class KeyCreate(_Strict):
    name: str = Field(default="", max_length=200)
    admin: bool = False
    tenant: str | None = Field(default=None, max_length=100)
    limits: TenantLimits | None = None


class KeyUpdate(_Strict):
    """`PATCH /v1/keys/{id}`: set the limits of the key's tenant (null fields: default)."""

    limits: TenantLimits


class ApiKey(BaseModel):
    id: str
    name: str
    admin: bool
    tenant: str
    created_at: str
    revoked_at: str | None = None
    key: str | None = None
    limits: TenantLimits | None = None


class KeyList(BaseModel):
    keys: list[ApiKey]


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



class ImageConfigInfo(BaseModel):
    """What an image's config says (Env, WorkingDir and User are honoured; see docs)."""

    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    entrypoint: list[str] = Field(default_factory=list)
    cmd: list[str] = Field(default_factory=list)


class Image(BaseModel):
    """An image in the server's cache."""

    reference: str | None = None  # the first of `references`; None when untagged
    references: list[str] = Field(default_factory=list)
    digest: str  # the manifest's, for this machine's platform
    size: int  # bytes unpacked
    layers: int
    config: ImageConfigInfo = Field(default_factory=ImageConfigInfo)
    pulled_at: str
    last_used_at: str
    in_use: int = 0  # running sandboxes on it


class ImageList(BaseModel):
    images: list[Image]
    cache_bytes: int
    cache_limit_bytes: int


class ImagePull(_Strict):
    """`POST /v1/images/pull`."""

    image: ImageName


class ImagePrune(_Strict):
    """`POST /v1/images/prune` (admins): unused images only, never one a sandbox runs on.

    With no field, untagged images go (as `docker image prune`); `all` takes every
    unused one; `older_than_s` those unused for that long; `max_total_mb` then the
    least recently used until the cache fits.
    """

    all: bool = False
    older_than_s: int | None = Field(default=None, ge=0)
    max_total_mb: int | None = Field(default=None, ge=0)


class PruneResult(BaseModel):
    deleted: list[Image]
    freed_bytes: int
    cache_bytes: int
