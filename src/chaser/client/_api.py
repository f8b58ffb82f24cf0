"""Every HTTP call the SDK makes, described once as data.

Each function returns a `Call`: method, path, query, JSON body, how long the server may
take, and how to parse the answer. The sync and async clients only differ in how they
send a `Call`, so no request shape is written twice.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from chaser.models import (
    ApiKey,
    BackgroundStarted,
    Command,
    CommandList,
    DEFAULT_FOREGROUND_TIMEOUT_MS,
    ExecResult,
    Image,
    ImageList,
    KeyList,
    Limits,
    PruneResult,
    Session,
    SessionList,
    Shell,
    StdinResult,
    TenantLimits,
    UsageReport,
    Workspace,
    WorkspaceList,
)

from ._errors import error_from_response

T = TypeVar("T")

# Extra seconds on top of a command's own timeout before the client gives up waiting.
_EXEC_SLACK_S = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and the parser for its successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Seconds to wait for the answer; None means the client's default timeout.
    read_timeout: float | None = None
    # A raw body instead of JSON (bytes, or an iterable of bytes streamed as it is read).
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _seg(value: str) -> str:
    """Quote one path segment so ids can never escape their place in the URL."""
    return quote(value, safe="")


def _body(**fields: Any) -> dict[str, Any]:
    body = {k: v for k, v in fields.items() if v is not None}
    if isinstance(body.get("stdin"), bytes):  # bytes travel as base64: any byte survives
        body["stdin_b64"] = base64.b64encode(body.pop("stdin")).decode()
    return body


def _exec_wait(timeout_ms: int | None) -> float:
    ms = timeout_ms if timeout_ms is not None else DEFAULT_FOREGROUND_TIMEOUT_MS
    return ms / 1000 + _EXEC_SLACK_S


def session_path(session_id: str) -> str:
    return f"/v1/sessions/{_seg(session_id)}"


def command_path(session_id: str, command_id: str) -> str:
    return f"{session_path(session_id)}/commands/{_seg(command_id)}"


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", parse=dict)


def exec_(
    command: str,
    *,
    workspace: str | None,
    ephemeral: bool | None,
    image: str | None,
    cwd: str | None,
    env: dict[str, str] | None,
    timeout_ms: int | None,
    stdin: str | bytes | None,
    shell: Shell | None,
    max_output_bytes: int | None,
) -> Call[ExecResult]:
    body = _body(
        command=command, workspace=workspace, ephemeral=ephemeral, image=image, cwd=cwd,
        env=env, timeout_ms=timeout_ms, stdin=stdin, shell=shell,
        max_output_bytes=max_output_bytes,
    )
    return Call("POST", "/v1/exec", ExecResult.model_validate, json=body,
                read_timeout=_exec_wait(timeout_ms))


def session_exec(
    session_id: str,
    command: str,
    *,
    background: bool,
    cwd: str | None,
    env: dict[str, str] | None,
    timeout_ms: int | None,
    stdin: str | bytes | None,
    shell: Shell | None,
    max_output_bytes: int | None,
) -> Call[Any]:
    body = _body(
        command=command, cwd=cwd, env=env, timeout_ms=timeout_ms, stdin=stdin, shell=shell,
        max_output_bytes=max_output_bytes,
    )
    if background:
        body["background"] = True
        return Call("POST", f"{session_path(session_id)}/exec",
                    BackgroundStarted.model_validate, json=body)
    return Call("POST", f"{session_path(session_id)}/exec", ExecResult.model_validate,
                json=body, read_timeout=_exec_wait(timeout_ms))


def session_create(
    *,
    workspace: str | None,
    image: str | None,
    env: dict[str, str] | None,
    cwd: str | None,
    limits: Limits | dict[str, Any] | None,
    idle_timeout_s: int | None,
) -> Call[Session]:
    if isinstance(limits, Limits):
        limits = limits.model_dump(exclude_none=True)
    body = _body(workspace=workspace, image=image, env=env, cwd=cwd, limits=limits,
                 idle_timeout_s=idle_timeout_s)
    # Starting a sandbox may pull or unpack an image: allow it a while.
    return Call("POST", "/v1/sessions", Session.model_validate, json=body, read_timeout=300.0)


def session_list(status: str | None, usage: bool = False) -> Call[list[Session]]:
    return Call("GET", "/v1/sessions", lambda b: SessionList.model_validate(b).sessions,
                params=_body(status=status, usage="true" if usage else None))


def session_get(session_id: str) -> Call[Session]:
    return Call("GET", session_path(session_id), Session.model_validate)


def session_delete(session_id: str) -> Call[Session]:
    return Call("DELETE", session_path(session_id), Session.model_validate, read_timeout=120.0)


def command_list(session_id: str) -> Call[list[Command]]:
    return Call("GET", f"{session_path(session_id)}/commands",
                lambda b: CommandList.model_validate(b).commands)


def command_get(
    session_id: str, command_id: str, *, from_offset: int | None = None,
    limit: int | None = None,
) -> Call[Command]:
    return Call("GET", command_path(session_id, command_id), Command.model_validate,
                params=_body(**{"from": from_offset, "limit": limit}))


def command_stdin(
    session_id: str, command_id: str, *, input: str | bytes | None, eof: bool,
) -> Call[StdinResult]:
    if isinstance(input, bytes):
        body = _body(data_b64=base64.b64encode(input).decode(), eof=True if eof else None)
    else:
        body = _body(input=input, eof=True if eof else None)
    return Call("POST", f"{command_path(session_id, command_id)}/stdin",
                StdinResult.model_validate, json=body)


def command_stdin_stream(session_id: str, command_id: str, content: Any,
                         eof: bool) -> Call[StdinResult]:
    """A raw stdin body of any length (`content`: bytes or an iterable of them), which
    the server takes at the command's pace."""
    return Call("POST", f"{command_path(session_id, command_id)}/stdin",
                StdinResult.model_validate, params=_body(eof="true" if eof else None),
                content=content, headers={"Content-Type": "application/octet-stream"})


def command_by_id(command_id: str) -> Call[Command]:
    return Call("GET", f"/v1/commands/{_seg(command_id)}", Command.model_validate,
                params={"limit": 0})


def command_kill(session_id: str, command_id: str, signal: str | int) -> Call[Command]:
    return Call("POST", f"{command_path(session_id, command_id)}/kill", Command.model_validate,
                json={"signal": signal})


def stream_path(session_id: str, command_id: str) -> str:
    return f"{command_path(session_id, command_id)}/stream"


def key_create(name: str, admin: bool, tenant: str | None,
               limits: TenantLimits | None = None) -> Call[ApiKey]:
    return Call("POST", "/v1/keys", ApiKey.model_validate,
                json=_body(name=name, admin=admin, tenant=tenant,
                           limits=limits.model_dump(exclude_none=True) if limits else None))


def key_set_limits(key_id: str, limits: TenantLimits) -> Call[ApiKey]:
    return Call("PATCH", f"/v1/keys/{_seg(key_id)}", ApiKey.model_validate,
                json={"limits": limits.model_dump()})


def workspace_list() -> Call[list[Workspace]]:
    return Call("GET", "/v1/workspaces", lambda b: WorkspaceList.model_validate(b).workspaces)


def workspace_get(name: str) -> Call[Workspace]:
    return Call("GET", f"/v1/workspaces/{_seg(name)}", Workspace.model_validate)


def workspace_delete(name: str, force: bool) -> Call[Workspace]:
    return Call("DELETE", f"/v1/workspaces/{_seg(name)}", Workspace.model_validate,
                params={"force": "true"} if force else {})


def usage() -> Call[UsageReport]:
    return Call("GET", "/v1/usage", UsageReport.model_validate)


def key_list() -> Call[list[ApiKey]]:
    return Call("GET", "/v1/keys", lambda b: KeyList.model_validate(b).keys)


def key_revoke(key_id: str) -> Call[ApiKey]:
    return Call("DELETE", f"/v1/keys/{_seg(key_id)}", ApiKey.model_validate)


# -- images ---------------------------------------------------------------------------

IMAGE_PULL_WAIT_S = 3600.0  # a pull waits for its layers; the server bounds it too


def image_path(name: str) -> str:
    # A reference has slashes and colons of its own: the route takes the rest of the path.
    return "/v1/images/" + quote(name, safe="/:@")


def image_list() -> Call[ImageList]:
    return Call("GET", "/v1/images", ImageList.model_validate)


def image_get(name: str) -> Call[Image]:
    return Call("GET", image_path(name), Image.model_validate)


def image_pull(name: str) -> Call[Image]:
    return Call("POST", "/v1/images/pull", Image.model_validate, json={"image": name},
                read_timeout=IMAGE_PULL_WAIT_S)


def image_delete(name: str) -> Call[Image]:
    return Call("DELETE", image_path(name), Image.model_validate)


def image_prune(all: bool, older_than_s: int | None, max_total_mb: int | None) -> Call[PruneResult]:
    return Call("POST", "/v1/images/prune", PruneResult.model_validate,
                json=_body(all=all or None, older_than_s=older_than_s, max_total_mb=max_total_mb))


def image_import(name: str | None) -> Call[Image]:
    """The call without its body: the clients stream the archive's file themselves."""
    return Call("POST", "/v1/images/import", Image.model_validate,
                params=_body(name=name), read_timeout=IMAGE_PULL_WAIT_S)


def pull_event(event: str, data: dict[str, Any]) -> Image | None:
    """The image once a pull's progress says `done`; the typed error for `error`."""
    if event == "done":
        return Image.model_validate(data["image"])
    if event == "error":
        err = data.get("error") or {}
        status = int(err.get("status") or 502)
        raise error_from_response(httpx.Response(status, json={"error": err}))
    return None


IMPORT_CHUNK = 1 << 20
