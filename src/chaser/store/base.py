"""The one interface all state goes through (SQLite today; PostgreSQL can implement it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chaser.store.jobs import JobStore


@dataclass
class KeyRecord:
    """An API key as stored: only the SHA-256 of the secret is kept."""

    id: str
    name: str
    hash: str
    tenant: str
    admin: bool
    created_at: str
    revoked_at: str | None = None


@dataclass
class WorkspaceRecord:
    """A tenant's persistent workspace and the host uid its sandboxes run as."""

    id: int
    tenant: str
    name: str
    uid: int
    created_at: str
    last_used_at: str | None = None


Row = dict[str, Any]


class Store(JobStore, Protocol):
    """Durable state: keys, workspaces, sessions and commands; jobs and schedules
    (`JobStore`)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add_key(self, key: KeyRecord) -> None: ...

    async def key_by_hash(self, digest: str) -> KeyRecord | None: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str, when: str) -> KeyRecord | None: ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def tenant_limits(self) -> dict[str, dict[str, Any]]:
        """Every tenant an admin set limits for, with them."""

    async def set_tenant_limits(self, tenant: str, limits: dict[str, Any]) -> None: ...

    async def workspace(self, tenant: str, name: str, create_at: str | None) -> WorkspaceRecord | None:
        """Get a workspace; with `create_at`, create it first when missing."""

    async def all_workspaces(self) -> list[WorkspaceRecord]: ...

    async def set_workspace_uid(self, workspace_id: int, uid: int) -> None: ...

    async def list_workspaces(self, tenant: str) -> list[WorkspaceRecord]: ...

    async def touch_workspace(self, workspace_id: int, when: str) -> None: ...

    async def delete_workspace(self, workspace_id: int) -> None: ...

    async def insert_session(self, row: Row) -> None: ...

    async def update_session(self, session_id: str, **fields: Any) -> None: ...

    async def get_session(self, tenant: str, session_id: str) -> Row | None: ...

    async def list_sessions(self, tenant: str, status: str | None = None) -> list[Row]: ...

    async def session_tenants(self, session_ids: list[str]) -> dict[str, str]:
        """The tenant of each of these sessions that is known."""

    async def insert_command(self, row: Row) -> None: ...

    async def update_command(self, command_id: str, **fields: Any) -> None: ...

    def update_command_now(self, command_id: str, **fields: Any) -> bool:
        """`update_command` done before returning, when that can be had without waiting
        (False otherwise, and nothing done: then await `update_command`)."""
        ...

    async def get_command(self, tenant: str, session_id: str, command_id: str) -> Row | None: ...

    async def list_commands(self, tenant: str, session_id: str, limit: int = 1000) -> list[Row]: ...

    async def command_session(self, tenant: str, command_id: str) -> str | None:
        """The session a tenant's command ran in (commands are addressable by id alone)."""

    async def forget_ended_before(self, cutoff: str) -> list[str]:
        """Delete sessions that ended before `cutoff`, with their commands; return their ids."""

    async def end_all_running(self, when: str) -> tuple[int, int]:
        """After a restart: stop sessions and end commands left `running`; returns counts."""
