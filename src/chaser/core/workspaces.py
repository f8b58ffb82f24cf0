"""Workspaces as objects: list, inspect and delete a tenant's persistent workspaces."""

from __future__ import annotations

import asyncio

from chaser.config import Settings
from chaser.core.sessions import LiveSession, SessionService
from chaser.errors import Conflict, NotFound
from chaser.models import Workspace
from chaser.runtime.base import Runtime
from chaser.store.base import Store, WorkspaceRecord


class WorkspaceService:
    """What `/v1/workspaces` answers; files are only ever touched through the runtime."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime,
                 sessions: SessionService) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.sessions = sessions

    def _running(self, tenant: str, name: str) -> LiveSession | None:
        for live in self.sessions.live.values():
            if live.tenant == tenant and live.row["workspace"] == name and not live.stopping:
                return live
        return None

    async def _describe(self, ws: WorkspaceRecord) -> Workspace:
        disk = await asyncio.to_thread(self.runtime.workspace_disk_bytes,
                                       self.settings.workspaces_dir / str(ws.id))
        live = self._running(ws.tenant, ws.name)
        return Workspace(name=ws.name, created_at=ws.created_at, last_used_at=ws.last_used_at,
                         disk_bytes=disk, session_id=live.id if live else None)

    async def list(self, tenant: str) -> list[Workspace]:
        return [await self._describe(ws) for ws in await self.store.list_workspaces(tenant)]

    async def _record(self, tenant: str, name: str) -> WorkspaceRecord:
        ws = await self.store.workspace(tenant, name, create_at=None)
        if ws is None:
            raise NotFound(f"workspace {name} not found")
        return ws

    async def get(self, tenant: str, name: str) -> Workspace:
        return await self._describe(await self._record(tenant, name))

    async def delete(self, tenant: str, name: str, force: bool = False) -> Workspace:
        """Delete a workspace and its files; 409 while a session runs on it, unless
        `force`, which stops that session first."""
        ws = await self._record(tenant, name)
        described = await self._describe(ws)
        live = self._running(tenant, name)
        if live is not None:
            if not force:
                raise Conflict(f"session {live.id} is running on workspace {name}; stop it "
                               "first or delete with force=true", "workspace_busy")
            await self.sessions.stop(live, "workspace_deleted")
        await self.store.delete_workspace(ws.id)
        await self.runtime.purge_workspace(self.settings.workspaces_dir / str(ws.id),
                                           self.runtime.workspace_uid(ws.id))
        return described
