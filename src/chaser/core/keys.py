"""API keys: each key is a tenant; only hashes are stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from chaser.core.connections import KeyConnections
from chaser.core.util import new_id, now_iso
from chaser.errors import Forbidden, NotFound, Unauthorized
from chaser.core.quotas import Ledger
from chaser.models import ApiKey, KeyCreate, KeyUpdate, TenantLimits
from chaser.store.base import KeyRecord, Store

log = logging.getLogger("chaser")

ADMIN_TENANT = "admin"
ENV_KEY_ID = "env"  # the admin key from the server's environment: never revoked


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tenant and whether it may manage keys."""

    key_id: str
    tenant: str
    admin: bool


def digest(secret: str) -> str:
    # Keys are 256-bit random secrets: a plain SHA-256 is enough (no brute force to slow).
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Authenticates bearer tokens and manages keys and their tenants' limits."""

    def __init__(self, store: Store, env_admin_key: str | None, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        self._env_digest = digest(env_admin_key) if env_admin_key else None
        self._cache: dict[str, Principal] = {}
        self.connections = KeyConnections()
        self._updating = asyncio.Lock()

    def _public(self, rec: KeyRecord, secret: str | None = None) -> ApiKey:
        return ApiKey(id=rec.id, name=rec.name, admin=rec.admin, tenant=rec.tenant,
                      created_at=rec.created_at, revoked_at=rec.revoked_at, key=secret,
                      limits=self.ledger.limits(rec.tenant),
                      own_limits=self.ledger.overrides.get(rec.tenant) or TenantLimits())

    async def load_limits(self) -> None:
        """The limits admins set per tenant, into the ledger (at start)."""
        for tenant, limits in (await self.store.tenant_limits()).items():
            self.ledger.overrides[tenant] = TenantLimits(**limits)

    async def _set_limits(self, tenant: str, limits: TenantLimits) -> None:
        await self.store.set_tenant_limits(tenant, limits.model_dump(exclude_none=True))
        self.ledger.overrides[tenant] = limits

    async def bootstrap(self, key_file: Path) -> Path | None:
        """First start with no key anywhere: make an admin key, keep only its hash.

        Returns the file holding the new key (0600), or None when no key was made.
        """
        if self._env_digest or await self.store.list_keys():
            return None
        secret = "chs_" + secrets.token_urlsafe(32)
        await self.store.add_key(KeyRecord(new_id("key"), "admin (generated)", digest(secret),
                                           ADMIN_TENANT, True, now_iso()))
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        return key_file

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        d = digest(token)
        if self._env_digest and hmac.compare_digest(d, self._env_digest):
            return Principal(ENV_KEY_ID, ADMIN_TENANT, True)
        cached = self._cache.get(d)
        if cached:
            return cached
        rec = await self.store.key_by_hash(d)
        # A revoke may have landed while the store was read: never cache what it revoked.
        if rec is None or rec.revoked_at or self.connections.revoked(rec.id):
            raise Unauthorized("invalid or revoked API key")
        principal = Principal(rec.id, rec.tenant, rec.admin)
        self._cache[d] = principal
        return principal

    async def by_id(self, key_id: str) -> Principal:
        """The caller behind a key still valid now (Unauthorized once it is revoked): for
        credentials minted from a key earlier, such as terminal tickets."""
        if key_id == ENV_KEY_ID and self._env_digest:
            return Principal(ENV_KEY_ID, ADMIN_TENANT, True)
        rec = await self.store.get_key(key_id)
        if rec is None or rec.revoked_at or self.connections.revoked(rec.id):
            raise Unauthorized("the API key this was issued to is revoked")
        return Principal(rec.id, rec.tenant, rec.admin)

    async def create(self, caller: Principal, req: KeyCreate) -> ApiKey:
        self._require_admin(caller)
        secret = "chs_" + secrets.token_urlsafe(32)
        key_id = new_id("key")
        rec = KeyRecord(key_id, req.name, digest(secret), req.tenant or key_id, req.admin, now_iso())
        await self.store.add_key(rec)
        if req.limits is not None:
            await self._set_limits(rec.tenant, req.limits)
        return self._public(rec, secret)

    async def update(self, caller: Principal, key_id: str, req: KeyUpdate) -> ApiKey:
        """Set the limits of the key's tenant (they hold for all its keys)."""
        self._require_admin(caller)
        rec = await self.store.get_key(key_id)
        if rec is None:
            raise NotFound(f"key {key_id} not found")
        # A merge, as PATCH is: fields left out keep their value, null ones go back to
        # the server's default. Read, merge and write under one lock: two PATCHes at
        # once (two admins, two tabs) must not each write over the other's field.
        async with self._updating:
            own = self.ledger.overrides.get(rec.tenant) or TenantLimits()
            merged = own.model_copy(update={f: getattr(req.limits, f)
                                            for f in req.limits.model_fields_set})
            await self._set_limits(rec.tenant, TenantLimits.model_validate(merged.model_dump()))
        return self._public(rec)

    async def list(self, caller: Principal) -> list[ApiKey]:
        self._require_admin(caller)
        return [self._public(r) for r in await self.store.list_keys()]

    async def revoke(self, caller: Principal, key_id: str) -> ApiKey:
        self._require_admin(caller)
        rec = await self.store.revoke_key(key_id, now_iso())
        if rec is None:
            raise NotFound(f"key {key_id} not found")
        self._cache.pop(rec.hash, None)
        ended = self.connections.revoke(rec.id)  # its terminals and streams end now
        if ended:
            log.info("key %s revoked: %d open connection(s) ended", rec.id, ended)
        return self._public(rec)

    @staticmethod
    def _require_admin(caller: Principal) -> None:
        if not caller.admin:
            raise Forbidden("only admin keys can manage keys")
