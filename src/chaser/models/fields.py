"""The fields, patterns and validators every wire model shares."""

from __future__ import annotations

import base64
import binascii
import re
import signal
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

MAX_COMMAND_BYTES = 128 * 1024 - 1  # one argv string: the kernel's MAX_ARG_STRLEN less the NUL
MAX_TIMEOUT_MS = 24 * 3600 * 1000
DEFAULT_FOREGROUND_TIMEOUT_MS = 300_000
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_STDIN_BYTES = 2 * 1024 * 1024
B64_MAX = (MAX_STDIN_BYTES + 2) // 3 * 4  # base64 of MAX_STDIN_BYTES
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


def check_b64(value: str | None) -> str | None:
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
