"""API keys (admin keys only)."""

from __future__ import annotations

from fastapi import APIRouter

from chaser.models import ApiKey, KeyCreate, KeyList, KeyUpdate
from chaser.server.deps import Caller, Core

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=ApiKey)
async def create_key(core: Core, caller: Caller, req: KeyCreate | None = None) -> ApiKey:
    """Make a key; each key is its own tenant unless `tenant` names another."""
    return await core.keys.create(caller, req or KeyCreate())


@router.get("", response_model=KeyList)
async def list_keys(core: Core, caller: Caller) -> KeyList:
    return KeyList(keys=await core.keys.list(caller))


@router.patch("/{key_id}", response_model=ApiKey)
async def update_key(key_id: str, req: KeyUpdate, core: Core, caller: Caller) -> ApiKey:
    """Change the limits of the key's tenant: fields given are set, null ones go back to
    the server's defaults, fields left out keep their value."""
    return await core.keys.update(caller, key_id, req)


@router.delete("/{key_id}", response_model=ApiKey)
async def revoke_key(key_id: str, core: Core, caller: Caller) -> ApiKey:
    """Revoke a key: its requests answer 401 from now on, its terminal tickets are
    refused, its open terminals close (4401) and its event streams end."""
    return await core.keys.revoke(caller, key_id)
