"""`GET /v1/usage`: what the caller's tenant holds against its limits."""

from __future__ import annotations

from fastapi import APIRouter

from chaser.models import UsageReport
from chaser.server.deps import Caller, Core

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsageReport)
async def usage(core: Core, caller: Caller) -> UsageReport:
    """The tenant's use and limits, and what its sandboxes use now (`measured`); an
    admin also sees every tenant and the server."""
    return await core.usage(caller.tenant, everyone=caller.admin)
