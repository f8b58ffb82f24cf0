"""Commands by id alone: `GET /v1/commands/{id}` (the caller's tenant only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from chaser.models import Command
from chaser.server.deps import Caller, Core

router = APIRouter(prefix="/v1/commands", tags=["commands"])


@router.get("/{command_id}", response_model=Command)
async def get_command_by_id(command_id: str, core: Core, caller: Caller,
                            from_: Annotated[int, Query(alias="from", ge=0)] = 0,
                            limit: Annotated[int, Query(ge=0, le=16 * 1024 * 1024)] = 1024 * 1024,
                            ) -> Command:
    """A command by its id, in whichever session it ran (its `session_id` says which):
    status and output bytes [from, from+limit), as under its session."""
    session_id = await core.executor.session_of(caller.tenant, command_id)
    return await core.executor.get_command(caller.tenant, session_id, command_id, from_, limit)
