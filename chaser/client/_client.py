"""The synchronous Chaser client."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any, TypeVar

import httpx

from chaser.models import (
    ApiKey,
    Command,
    ExecResult,
    Limits,
    Session,
    Shell,
    TenantLimits,
    UsageReport,
    Workspace,
)

from . import _api
from ._config import Config, resolve_config
from ._errors import ChaserError
from ._handles import CommandHandle, SessionHandle
from ._http import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    client_options,
    parse_response,
    request_kwargs,
    transport_error,
)

T = TypeVar("T")


def _check_url(config: Config) -> None:
    if not config.api_url.startswith(("http://", "https://")):
        raise ChaserError(
            f"invalid API URL {config.api_url!r}: it must start with http:// or https://"
        )


class Client:
    """Synchronous client for a Chaser server.

    `api_url` and `api_key` default to `CHASER_API_URL` / `CHASER_API_KEY`, then the
    config file, then `http://127.0.0.1:8080`. `timeout` (seconds) bounds each request
    (foreground exec waits for the command's own timeout); `retries` is how many times a
    failed connection attempt is retried.

        with Client() as client:
            print(client.exec("echo hi", workspace="demo").output)
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        config_file: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = resolve_config(api_url, api_key, config_file)
        _check_url(self.config)
        self._timeout = timeout
        self._http = httpx.Client(
            transport=transport or httpx.HTTPTransport(retries=retries),
            **client_options(self.config, timeout),
        )
        self.sessions = Sessions(self)
        self.commands = Commands(self)
        self.keys = Keys(self)
        self.workspaces = Workspaces(self)

    @property
    def api_url(self) -> str:
        return self.config.api_url

    def __repr__(self) -> str:
        return f"Client(api_url={self.api_url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, call: _api.Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, **request_kwargs(call, self._timeout)
            )
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self.config) from None
        return parse_response(call, response, self.config)

    def health(self) -> dict[str, Any]:
        """`GET /healthz`: server status and version (needs no key)."""
        return self._call(_api.health())

    def usage(self) -> UsageReport:
        """What this key's tenant holds against its limits (an admin sees every tenant)."""
        return self._call(_api.usage())

    def exec(
        self,
        command: str,
        workspace: str | None = None,
        ephemeral: bool | None = None,
        image: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_ms: int | None = None,
        stdin: str | None = None,
        *,
        shell: Shell | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult:
        """Run one command and wait for it (`POST /v1/exec`).

        With `workspace` it runs in that workspace's session (created on first use);
        otherwise in a fresh ephemeral sandbox that is destroyed afterwards.
        """
        return self._call(_api.exec_(
            command, workspace=workspace, ephemeral=ephemeral, image=image, cwd=cwd,
            env=env, timeout_ms=timeout_ms, stdin=stdin, shell=shell,
            max_output_bytes=max_output_bytes,
        ))


class Sessions:
    """`client.sessions`: create, list, get and delete sessions."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        workspace: str | None = None,
        *,
        image: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        limits: Limits | dict[str, Any] | None = None,
        idle_timeout_s: int | None = None,
    ) -> SessionHandle:
        """Start a sandbox session (backed by `workspace` if given)."""
        info = self._client._call(_api.session_create(
            workspace=workspace, image=image, env=env, cwd=cwd, limits=limits,
            idle_timeout_s=idle_timeout_s,
        ))
        return SessionHandle(self._client, info)

    def list(self, status: str | None = None) -> builtins.list[SessionHandle]:
        """Sessions of this key, newest first (`status="running"` to filter)."""
        sessions = self._client._call(_api.session_list(status))
        return [SessionHandle(self._client, s) for s in sessions]

    def get(self, session_id: str) -> SessionHandle:
        """Fetch one session (NotFoundError if unknown or another tenant's)."""
        return SessionHandle(self._client, self._client._call(_api.session_get(session_id)))

    def delete(self, session_id: str) -> Session:
        """Stop a session and kill every process in it; returns the stopped session."""
        return self._client._call(_api.session_delete(session_id))


class Commands:
    """`client.commands`: commands addressed by session id and command id."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, session_id: str) -> builtins.list[Command]:
        """A session's commands, newest first (without output)."""
        return self._client._call(_api.command_list(session_id))

    def get(self, session_id: str, command_id: str) -> CommandHandle:
        """Fetch a command (with its first page of output) as a handle."""
        info = self._client._call(_api.command_get(session_id, command_id))
        return CommandHandle(self._client, session_id, command_id, info=info)

    def handle(self, session_id: str, command_id: str) -> CommandHandle:
        """A handle on a command without fetching it first."""
        return CommandHandle(self._client, session_id, command_id)


class Keys:
    """`client.keys`: manage API keys (admin keys only)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str = "", *, admin: bool = False, tenant: str | None = None,
                     limits: TenantLimits | None = None) -> ApiKey:
        """Create a key; the secret (`.key`) is returned only this once. `limits` sets
        its tenant's limits (fields left None: the server's defaults)."""
        return self._client._call(_api.key_create(name, admin, tenant, limits))

    def set_limits(self, key_id: str, limits: TenantLimits) -> ApiKey:
        """Set the limits of the key's tenant (fields left None: the server's defaults)."""
        return self._client._call(_api.key_set_limits(key_id, limits))

    def list(self) -> builtins.list[ApiKey]:
        """All keys (without their secrets)."""
        return self._client._call(_api.key_list())

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key; requests with it answer 401 from then on."""
        return self._client._call(_api.key_revoke(key_id))


class Workspaces:
    """`client.workspaces`: the tenant's persistent workspaces."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[Workspace]:
        """Every workspace of this key's tenant, with disk used and running session."""
        return self._client._call(_api.workspace_list())

    def get(self, name: str) -> Workspace:
        return self._client._call(_api.workspace_get(name))

    def delete(self, name: str, *, force: bool = False) -> Workspace:
        """Delete a workspace and its files; `force` stops a session running on it."""
        return self._client._call(_api.workspace_delete(name, force))
