"""Admission of file operations: per session, per tenant and for the whole server.

Each operation of the files API holds a process in a sandbox, three pipes and a client
connection until it ends, so how many run at once is bounded at three levels: a sandbox
(MAX_OPS_PER_SESSION), a tenant (`file_ops_per_tenant`, a share well below the total so
one tenant never takes the whole budget) and the server (`file_ops_total`). Over the
first two is the caller's own doing (429 `too_many_file_ops`); over the last, the server
is full (503 `no_capacity`), as for sandboxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from chaser.config import Settings
from chaser.errors import OverLimit, Unavailable

MAX_OPS_PER_SESSION = 16  # file operations at once in one sandbox
RETRY_AFTER_S = 1


class FileOpSlots:
    """Counts running file operations; `take` admits one or raises, and returns the
    function that gives its slot back (once, however often it is called)."""

    def __init__(self, settings: Settings, refused: Counter[str] | None = None) -> None:
        self.settings = settings
        self.by_session: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()
        self.total = 0
        self.refused = refused if refused is not None else Counter()  # the metrics' counter

    def take(self, tenant: str, session_id: str) -> Callable[[], None]:
        """Hold a slot for an operation of `tenant` in `session_id`."""
        tenant_cap, total_cap = self.settings.file_ops_tenant_cap, self.settings.file_ops_total
        if self.by_session[session_id] >= MAX_OPS_PER_SESSION:
            self.refused["file_ops_per_session"] += 1
            raise OverLimit(f"{MAX_OPS_PER_SESSION} file operations are already running in "
                            f"session {session_id}; retry when one ends", "too_many_file_ops",
                            retry_after=RETRY_AFTER_S)
        if self.by_tenant[tenant] >= tenant_cap:
            self.refused["file_ops_per_tenant"] += 1
            raise OverLimit(f"this key runs {tenant_cap} file operations already (its limit "
                            "file_ops_per_tenant); retry when one ends", "too_many_file_ops",
                            retry_after=RETRY_AFTER_S)
        if self.total >= total_cap:
            self.refused["server_file_ops"] += 1
            raise Unavailable(f"the server runs {total_cap} file operations already (its "
                              "capacity, file_ops_total); try again later", "no_capacity",
                              retry_after=RETRY_AFTER_S)
        self.by_session[session_id] += 1
        self.by_tenant[tenant] += 1
        self.total += 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.total -= 1
                for counter, key in ((self.by_session, session_id), (self.by_tenant, tenant)):
                    counter[key] -= 1
                    if counter[key] <= 0:
                        del counter[key]
        return release
