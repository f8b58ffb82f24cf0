"""The synchronous Chaser client."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse

from chaser.models import (
    ApiKey,
    Command,
    ExecResult,
    Image,
    ImageList,
    Limits,
    PruneResult,
    Session,
    Shell,
    TenantLimits,
    UsageReport,
    Workspace,
)

from . import _api
from ._config import Config, resolve_config
from ._errors import ChaserError, StreamError
from ._files import Files
from ._handles import CommandHandle, SessionHandle
from ._jobs import Jobs, Schedules
from ._pty import Pty
from ._pty_connect import connect_pty
from ._pty_protocol import PtyMode, pty_params
from ._http import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    api_error,
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
        self.images = Images(self)
        self.jobs = Jobs(self)
        self.schedules = Schedules(self)

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
        stdin: str | bytes | None = None,
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

    def pty(
        self, session_id: str, mode: PtyMode = "human", cols: int | None = None, rows: int | None = None,
        pty_id: str | None = None, view: bool = False, command: str | None = None, *,
        shell: Shell | None = None, cwd: str | None = None, from_offset: int | None = None,
    ) -> Pty:
        """Open a terminal in a session over the PTY WebSocket (docs/pty.md).

        `mode`: `human` (a login shell), `agent` (a shell for programs, with `run()`) or
        `exec` (`command` without a terminal). `cols` and `rows` default to the
        server's (80x24; agent mode 200x50, so tools wrap less). `pty_id` reattaches to a terminal made
        earlier (`from_offset` replays from that output offset); `view` attaches
        read-only. A refused upgrade raises the typed error (`NotFoundError`...).
        """
        return connect_pty(self.config, session_id, pty_params(
            mode, cols, rows, pty_id, view, command, shell, cwd, from_offset))


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

    def list(self, status: str | None = None, *,
             usage: bool = False) -> builtins.list[SessionHandle]:
        """Sessions of this key, newest first (`status="running"` to filter); with
        `usage=True`, each running one's `last_info.usage` is what it uses now."""
        sessions = self._client._call(_api.session_list(status, usage))
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

    def by_id(self, command_id: str) -> CommandHandle:
        """A command by its id alone (`GET /v1/commands/{id}`), in whatever session."""
        info = self._client._call(_api.command_by_id(command_id))
        return CommandHandle(self._client, info.session_id, command_id, info=info)


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

    def files(self, name: str) -> Files:
        """The workspace's files, whether or not a session runs on it (the server
        starts one when needed)."""
        return Files(self._client, f"/v1/workspaces/{_api._seg(name)}")


_PULL_TIMEOUT = httpx.Timeout(10.0, read=_api.IMAGE_PULL_WAIT_S)


class Images:
    """`client.images`: the server's image cache (shared by every tenant)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> ImageList:
        """Cached images, most recently used first, with the cache's size and cap."""
        return self._client._call(_api.image_list())

    def get(self, name: str) -> Image:
        """One cached image, by reference or `sha256:` digest."""
        return self._client._call(_api.image_get(name))

    def pull(self, name: str, *,
             progress: Callable[[str, dict[str, Any]], object] | None = None) -> Image:
        """Pull `name` (a tag is looked up anew) and return it once cached. `progress`
        gets each event of the pull (`resolved`, `progress` per layer, `unpacking`...)."""
        if progress is None:
            return self._client._call(_api.image_pull(name))
        with connect_sse(self._client._http, "POST", "/v1/images/pull",
                         json={"image": name}, timeout=_PULL_TIMEOUT) as source:
            if not source.response.is_success:
                source.response.read()
                raise api_error(source.response, self._client.config)
            for sse in source.iter_sse():
                data = json.loads(sse.data) if sse.data else {}
                progress(sse.event, data)
                image = _api.pull_event(sse.event, data)
                if image is not None:
                    return image
        raise StreamError(f"the progress of pulling {name} ended before the pull did")

    def delete(self, name: str) -> Image:
        """Untag a reference, or delete by digest (admin keys; refused while in use)."""
        return self._client._call(_api.image_delete(name))

    def prune(self, *, all: bool = False, older_than_s: int | None = None,
              max_total_mb: int | None = None) -> PruneResult:
        """Delete unused images (admin keys): untagged ones, or `all`, or those unused for
        `older_than_s`, then the least recently used until the cache fits `max_total_mb`."""
        return self._client._call(_api.image_prune(all, older_than_s, max_total_mb))

    def import_archive(self, path: str | Path, *, name: str | None = None) -> Image:
        """Load a `docker save` tarball or an OCI archive from a local file (streamed)."""
        call = _api.image_import(name)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(_api.IMPORT_CHUNK):
                    yield chunk

        try:
            response = self._client._http.request(
                call.method, call.path, params=call.params, content=chunks(),
                timeout=_PULL_TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise transport_error(e, self._client.config) from None
        return parse_response(call, response, self._client.config)
