"""Wire shapes of API keys, tenants' limits and their usage."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chaser.models.fields import Strict
from chaser.models.sessions import MeasuredUsage


class TenantLimits(Strict):
    """What one tenant may hold at once; None: the server's default for every tenant."""

    max_sandboxes: int | None = Field(default=None, ge=0, le=1_000_000)
    max_sessions: int | None = Field(default=None, ge=0, le=1_000_000)
    max_commands: int | None = Field(default=None, ge=0, le=10_000_000)
    max_memory_mb: int | None = Field(default=None, ge=0, le=1 << 30)
    max_pids: int | None = Field(default=None, ge=8, le=1 << 22)
    max_disk_mb: int | None = Field(default=None, ge=0, le=1 << 40)


class TenantUsage(BaseModel):
    """What a tenant holds now, against its limits (`GET /v1/usage`)."""

    tenant: str
    usage: dict[str, int]
    limits: TenantLimits
    measured: MeasuredUsage | None = Field(default=None, description=(
        "what its running sandboxes (sessions and one-shot runs) use together now, as "
        "the kernel counts them; cpu_ms and memory_peak_bytes since the server started"))


class UsageReport(BaseModel):
    """`GET /v1/usage`: the caller's tenant; for an admin, every tenant and the server."""

    tenant: str
    usage: dict[str, int]
    limits: TenantLimits
    measured: MeasuredUsage | None = None
    tenants: list[TenantUsage] | None = None
    server: dict[str, dict[str, int]] | None = None


class KeyCreate(Strict):
    name: str = Field(default="", max_length=200)
    admin: bool = False
    tenant: str | None = Field(default=None, max_length=100)
    limits: TenantLimits | None = None


class KeyUpdate(Strict):
    """`PATCH /v1/keys/{id}`: change the limits of the key's tenant, as a merge: fields
    given are set, null ones go back to the server's default, absent ones are kept."""

    limits: TenantLimits


class ApiKey(BaseModel):
    id: str
    name: str
    admin: bool
    tenant: str
    created_at: str
    revoked_at: str | None = None
    key: str | None = None
    limits: TenantLimits | None = None  # in force: the tenant's own, defaults for the rest
    own_limits: TenantLimits | None = None  # only those set for the tenant (null: default)


class KeyList(BaseModel):
    keys: list[ApiKey]
