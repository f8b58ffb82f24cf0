"""`GET /healthz`: no key needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chaser import __version__
from chaser.server.deps import Core

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz(core: Core) -> dict[str, Any]:
    """Liveness, version and which resource limits this host enforces."""
    return {"status": "ok", "version": __version__, "limits": core.runtime.describe(),
            "sandboxes": core.ledger.total["sandboxes"]}
