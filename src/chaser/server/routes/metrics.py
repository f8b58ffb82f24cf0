"""`GET /metrics`: Prometheus text format (admin keys only: it shows every tenant's load)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from chaser.errors import Forbidden
from chaser.server.deps import Caller, Core

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(core: Core, caller: Caller) -> Response:
    """Sandboxes by kind, sessions, commands, latencies, pool use, refusals, disk, logs."""
    if not caller.admin:
        raise Forbidden("metrics need an admin key")
    body = await asyncio.to_thread(core.telemetry.render)  # statvfs and rendering: off the loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)
