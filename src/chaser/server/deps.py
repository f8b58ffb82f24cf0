"""Request dependencies: the core instance and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chaser.core.keys import Principal
from chaser.core.service import Chaser

# auto_error off: a missing or malformed header gets our own JSON 401, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer chs_...`")


def core_of(request: Request) -> Chaser:
    return request.app.state.core  # type: ignore[no-any-return]


async def get_core(request: Request) -> Chaser:
    # async: FastAPI runs a plain `def` dependency on a worker thread, a thread hop on
    # every request for one attribute read.
    return core_of(request)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller behind `Authorization: Bearer KEY` (401 otherwise)."""
    token = credentials.credentials.strip() if credentials else None
    return await core_of(request).keys.authenticate(token or None)


Core = Annotated[Chaser, Depends(get_core)]
Caller = Annotated[Principal, Depends(get_principal)]
