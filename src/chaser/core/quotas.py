"""Fair share: what each tenant, and the server as a whole, may hold at once.

Every sandbox (session or one-shot), session, running command and megabyte of granted
memory is admitted here before it starts and released when it ends, so no tenant can
take what the others need. Per-tenant limits default to a share of the server's
(`tenant_share`, a quarter) and an admin can set them per tenant. Going over a tenant's
limit is 429 with `Retry-After`; the server being full is 503.

The ledger is in memory: it counts what this process runs, which is exactly what a
restart ends.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field

from chaser.config import Settings
from chaser.core.capacity import connection_cap, host_capacity, raise_fd_limit
from chaser.errors import OverLimit, Unavailable
from chaser.models import TenantLimits, TenantUsage
from chaser.runtime.cgroups import ResourceLimits

log = logging.getLogger("chaser.core")

RESOURCES = ("sandboxes", "sessions", "commands", "memory_mb")
LIMIT_NAMES = {"sandboxes": "max_sandboxes", "sessions": "max_sessions",
               "commands": "max_commands", "memory_mb": "max_memory_mb"}
RETRY_AFTER_S = 5


def kernel_pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def host_memory_mb() -> int:
    """The host's memory (MemTotal), in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


@dataclass
class Grant:
    """What one sandbox, session or command holds; release it exactly once."""

    ledger: Ledger
    tenant: str
    amounts: dict[str, int]
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.ledger._give_back(self)


@dataclass
class Ledger:
    """Counts what every tenant holds and admits new work against the limits."""

    settings: Settings
    memory_budget_mb: int
    pids_budget: int
    disk_budget_mb: int = 0  # the data dir's filesystem
    max_sandboxes: int = 256  # the server's caps (capacity.py derives them)
    max_commands: int = 4096
    overrides: dict[str, TenantLimits] = field(default_factory=dict)
    held: dict[str, Counter[str]] = field(default_factory=dict)
    total: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # 429s and 503s, by limit
    _defaults: TenantLimits | None = None

    @classmethod
    def for_host(cls, settings: Settings) -> Ledger:
        try:
            disk = shutil.disk_usage(settings.data_dir).total // (1024 * 1024)
        except OSError:
            disk = 0
        memory, pids = host_memory_mb(), int(kernel_pid_max() * settings.pids_fraction)
        fd_limit = raise_fd_limit()
        capacity = host_capacity(memory, fd_limit, pids,
                                 connection_cap(fd_limit, settings.max_connections))
        log.info("this host holds up to %s", capacity.describe())
        return cls(settings, int(memory * settings.memory_fraction), pids, disk,
                   settings.max_sandboxes or capacity.sandboxes,
                   settings.max_running_commands or capacity.commands)

    # -- limits -----------------------------------------------------------------------

    def defaults(self) -> TenantLimits:
        if self._defaults is None:  # settings and budgets are fixed once the server runs
            self._defaults = self._make_defaults()
        return self._defaults

    def _make_defaults(self) -> TenantLimits:
        s = self.settings
        return TenantLimits(
            max_sandboxes=s.max_sandboxes_per_tenant or s.share(self.max_sandboxes),
            max_sessions=s.max_sessions_per_tenant or s.share(self.max_sandboxes),
            max_commands=s.max_commands_per_tenant or s.share(self.max_commands),
            max_memory_mb=s.max_memory_mb_per_tenant or s.share(self.memory_budget_mb),
            max_pids=s.max_pids_per_tenant or s.share(self.pids_budget),
            max_disk_mb=s.max_disk_mb_per_tenant or s.share(self.disk_budget_mb))

    def limits(self, tenant: str) -> TenantLimits:
        """The tenant's limits: the admin's settings for it, the defaults for the rest."""
        base = self.defaults()
        own = self.overrides.get(tenant)
        if own is None:
            return base
        return base.model_copy(update=own.model_dump(exclude_none=True))

    def group(self, tenant: str) -> tuple[str, ResourceLimits]:
        """The tenant's sandbox group and what the kernel holds it to: all its
        sandboxes' processes together (a fork bomb in each stays within its share)."""
        name = "t_" + hashlib.sha256(tenant.encode()).hexdigest()[:16]
        return name, ResourceLimits(pids=self.limits(tenant).max_pids)

    def server_limits(self) -> dict[str, int]:
        return {"sandboxes": self.max_sandboxes, "commands": self.max_commands,
                "memory_mb": self.memory_budget_mb}

    # -- admission --------------------------------------------------------------------

    def admit(self, tenant: str, **amounts: int) -> Grant:
        """Hold `amounts` (sandboxes=1, memory_mb=2048, ...) for `tenant`, or raise:
        OverLimit (429) naming the tenant's limit, Unavailable (503) when the server is full."""
        mine = self.held.setdefault(tenant, Counter())
        limits = self.limits(tenant).model_dump()
        for what, n in amounts.items():
            cap = limits[LIMIT_NAMES[what]]
            if n and cap is not None and mine[what] + n > cap:
                self.refused[LIMIT_NAMES[what]] += 1
                raise OverLimit(
                    f"over this key's limit {LIMIT_NAMES[what]}={cap}: it holds "
                    f"{mine[what]} {_unit(what)} already; wait for some to end, or ask an "
                    "admin to raise the limit", "tenant_limit", retry_after=RETRY_AFTER_S)
        server = self.server_limits()
        for what, n in amounts.items():
            cap = server.get(what)
            if n and cap is not None and self.total[what] + n > cap:
                self.refused["server_" + what] += 1
                raise Unavailable(
                    f"the server is at its capacity of {cap} {_unit(what)}; try again later",
                    "no_capacity", retry_after=RETRY_AFTER_S)
        taken = {k: v for k, v in amounts.items() if v}
        mine.update(taken)
        self.total.update(taken)
        return Grant(self, tenant, taken)

    def _give_back(self, grant: Grant) -> None:
        mine = self.held.get(grant.tenant)
        if mine is not None:
            mine.subtract(grant.amounts)
            if not +mine:
                del self.held[grant.tenant]
        self.total.subtract(grant.amounts)

    # -- what users see -----------------------------------------------------------------

    def usage(self, tenant: str) -> TenantUsage:
        mine = self.held.get(tenant, Counter())
        return TenantUsage(tenant=tenant, usage={k: mine[k] for k in RESOURCES},
                           limits=self.limits(tenant))

    def tenants(self) -> list[str]:
        return sorted(set(self.held) | set(self.overrides))


def _unit(what: str) -> str:
    return {"memory_mb": "MiB of memory limits", "commands": "running commands"}.get(what, what)
