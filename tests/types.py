"""Types of the suite's fixtures and of the JSON it reads, so tests need no `Any` aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

Json = dict[str, Any]  # a decoded JSON object from the API


@dataclass
class Tenant:
    """A tenant of the suite's server: its key, its id and a client using the key."""

    key: str
    id: str
    client: httpx.Client


class NewTenant(Protocol):
    """The `new_tenant` fixture: makes a brand-new tenant on each call."""

    def __call__(self, name: str = "tenant") -> Tenant: ...
