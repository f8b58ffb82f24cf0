"""Workspaces: `/v1/workspaces[/{name}]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from chaser.models import WORKSPACE_PATTERN, Workspace, WorkspaceList
from chaser.server.deps import Caller, Core

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])
# The schema states the rule; the core says why a name is refused.
WorkspaceParam = Annotated[str, Path(json_schema_extra={"pattern": WORKSPACE_PATTERN})]


@router.get("", response_model=WorkspaceList)
async def list_workspaces(core: Core, caller: Caller) -> WorkspaceList:
    """The tenant's workspaces: created, last used, disk used, running session."""
    return WorkspaceList(workspaces=await core.workspaces.list(caller.tenant))


@router.get("/{name}", response_model=Workspace)
async def get_workspace(name: WorkspaceParam, core: Core, caller: Caller) -> Workspace:
    return await core.workspaces.get(caller.tenant, name)


@router.delete("/{name}", response_model=Workspace)
async def delete_workspace(name: WorkspaceParam, core: Core, caller: Caller, force: bool = False) -> Workspace:
    """Delete a workspace and its files (409 while a session runs on it, unless `force`)."""
    return await core.workspaces.delete(caller.tenant, name, force)
