"""Request dependencies: the core instance and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chaser.core.keys import Principal
from chaser.core.service import Chaser


def get_core(request: Request) -> Chaser:
    return request.app.state.core  # type: ignore[no-any-return]


async def get_principal(request: Request) -> Principal:
    """The caller behind `Authorization: Bearer KEY` (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    return await get_core(request).keys.authenticate(token.strip() or None)


Core = Annotated[Chaser, Depends(get_core)]
Caller = Annotated[Principal, Depends(get_principal)]
