"""Wire models shared by the server, the core and the SDK: each shape is defined once."""

from __future__ import annotations

import base64
import binascii
import re
import signal
from functools import cache
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_COMMAND_BYTES = 128 * 1024 - 1  # one argv string: the kernel's MAX_ARG_STRLEN less the NUL
MAX_TIMEOUT_MS = 24 * 3600 * 1000
DEFAULT_FOREGROUND_TIMEOUT_MS = 300_000
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_STDIN_BYTES = 2 * 1024 * 1024
_B64_MAX = (MAX_STDIN_BYTES + 2) // 3 * 4  # base64 of MAX_STDIN_BYTES
WORKSPACE_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
WORKSPACE_RE = re.compile(WORKSPACE_PATTERN)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)
# The OpenAPI schema states what the validators below enforce (docs/api.md, "The OpenAPI
# schema"): a request the schema allows is accepted, one it refuses gets 400/422.
NO_NUL = r"^[^\x00]*$"
ABS_PATH_PATTERN = r"^/[^\x00]*$"
# At least one character that is not whitespace, and no NUL (the command's validator).
COMMAND_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"
# Image references (chaser/images/reference.py parses them with these pieces): Docker's
# grammar, with a registry part told from a path by a dot, a port or `localhost`, as
# Docker tells them. Tags are ASCII (as Docker's; a `\w` here would take any letter).
IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
IMAGE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_PORT = r"(?::[0-9]+)?"
# A whole reference, as written: within the registries' 255 for a name, tag included
# (a length the schema can state, where a name's alone would need a lookahead).
IMAGE_REF_MAX = 255
IMAGE_PATTERN = (
    rf"^(?:(?:{IMAGE_DOMAIN_PART}(?:\.{IMAGE_DOMAIN_PART})+{_PORT}|{IMAGE_DOMAIN_PART}:[0-9]+"
    rf"|localhost{_PORT}|\[[0-9a-fA-F:]+\]{_PORT})/)?{IMAGE_COMPONENT}(?:/{IMAGE_COMPONENT})*"
    rf"(?::{IMAGE_TAG})?(?:@(?:sha256:[0-9a-f]{{64}}|(?!sha256:){IMAGE_DIGEST}))?$")
# A signal: a number of this host's (1 to NSIG-1, leading zeros allowed, at most six
# digits), or a name in any case with or without SIG (`TERM`, `sigterm`), nothing around.
SIGNAL_NAMES = sorted({n[3:] for n in signal.Signals.__members__ if n.startswith("SIG")})
_ANY_CASE = "|".join("".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in n)
                     for n in SIGNAL_NAMES)
SIGNAL_NAME_PATTERN = rf"^(?:[Ss][Ii][Gg])?(?:{_ANY_CASE})$"
SIGNAL_NUMBER_PATTERN = "^(?:" + "|".join(
    f"0{{0,{6 - len(str(n))}}}{n}" for n in range(1, signal.NSIG)) + ")$"
B64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

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


def both_not(a: str, b: str) -> dict[str, Any]:
    """JSON Schema for "not `a` and `b` both given" (null counts as not given)."""
    return {"not": {"required": [a, b], "properties": {a: {"not": {"type": "null"}},
                                                     b: {"not": {"type": "null"}}}}}


def exclusive_target() -> dict[str, Any]:
    """JSON Schema for "not a `workspace` and `ephemeral: true` both"."""
    return {"not": {"required": ["workspace", "ephemeral"], "properties": {
        "workspace": {"type": "string"}, "ephemeral": {"const": True}}}}


@cache
def _int_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that take an integer and no float (by name and alias)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        kinds = get_args(info.annotation) or (info.annotation,)
        if int in kinds and float not in kinds:
            out.update((name, info.alias or name))
    return frozenset(out)


def integral_floats(model: type[BaseModel], data: Any) -> Any:
    """`data` with `1.0` given for an integer field read as `1`: JSON Schema counts an
    integral number as an integer, so the schema allows it; `1.5`, `"1"` and `true`
    stay refused."""
    if not isinstance(data, dict):
        return data
    ints = _int_fields(model)
    return {k: int(v) if k in ints and type(v) is float and v.is_integer() else v
            for k, v in data.items()}


class Strict(BaseModel):
    """Requests reject unknown fields so typos never pass silently, and take JSON types
    as they are: `"background": 0` or `"timeout_ms": "5"` are 422, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral(cls, data: Any) -> Any:
        return integral_floats(cls, data)


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


# The validators say why a value is refused; the schema only states the rule.
WorkspaceName = Annotated[str, AfterValidator(check_workspace_name),
                          Field(json_schema_extra={"pattern": WORKSPACE_PATTERN})]
ImageName = Annotated[Text, Field(min_length=1, max_length=IMAGE_REF_MAX, json_schema_extra={
    "pattern": IMAGE_PATTERN},
    description="An OCI reference (`node:20-bookworm`, `ghcr.io/org/app:tag`, "
                f"`host:5000/x@sha256:...`), at most {IMAGE_REF_MAX} characters")]
EnvVars = Annotated[dict[str, str], AfterValidator(_check_env), WithJsonSchema({
    "type": "object", "propertyNames": {"pattern": ENV_NAME_PATTERN},
    "additionalProperties": {"type": "string", "pattern": NO_NUL}})]
AbsPath = Annotated[str, AfterValidator(_check_abs_path),
                    Field(json_schema_extra={"pattern": ABS_PATH_PATTERN})]


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
    stdin_b64: str | None = Field(default=None, max_length=_B64_MAX,
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


class SessionCreate(Strict):
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


class StdinRequest(Strict):
    """`POST .../stdin` as JSON: text (`input`) or any bytes (`data_b64`); `eof` closes.
    (A raw `application/octet-stream` body streams bytes of any length instead.)"""

    model_config = ConfigDict(json_schema_extra=both_not("input", "data_b64"))

    input: Text | None = Field(default=None, max_length=MAX_STDIN_BYTES)
    data_b64: str | None = Field(default=None, max_length=_B64_MAX,
                                 json_schema_extra={"pattern": B64_PATTERN})
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


class KillRequest(Strict):
    signal: str | int = Field(default="TERM", json_schema_extra={"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": signal.NSIG - 1},
        {"type": "string", "pattern": SIGNAL_NAME_PATTERN},
        {"type": "string", "pattern": SIGNAL_NUMBER_PATTERN}]})


class Workspace(BaseModel):
    """A tenant's persistent workspace: its files outlive every session on it."""

    name: str
    created_at: str
    last_used_at: str | None = None
    disk_bytes: int
    session_id: str | None = None  # the session running on it, if any


class WorkspaceList(BaseModel):
    workspaces: list[Workspace]


class TenantLimits(Strict):
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


class KeyCreate(Strict):
    name: str = Field(default="", max_length=200)
    admin: bool = False
    tenant: str | None = Field(default=None, max_length=100)
    limits: TenantLimits | None = None


class KeyUpdate(Strict):
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


# An image of the cache by reference or by id (`sha256:...`); never the built-in one.
CACHED_IMAGE_SCHEMA: dict[str, Any] = {
    "anyOf": [{"pattern": "^sha256:"}, {"pattern": IMAGE_PATTERN, "maxLength": IMAGE_REF_MAX}],
    "not": {"const": "default"}}


class ImagePull(Strict):
    """`POST /v1/images/pull`."""

    image: ImageName = Field(json_schema_extra={"not": {"const": "default"}})


class ImagePrune(Strict):
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
