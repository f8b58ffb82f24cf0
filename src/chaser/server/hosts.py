"""Which `Host` names a browser may reach the console and open terminals by.

DNS rebinding: a page on `evil.example` makes its name resolve to the server's address;
the browser then counts the server as that page's own origin, and an `Origin` check
alone passes (`Origin` and `Host` both say `evil.example`). Such a request names the
attacker's host, never the server's: so browser requests (the console's pages and
WebSocket upgrades that carry an `Origin`) must name a host the server answers to:
an IP address (rebinding always goes through a name), `localhost` and its subdomains
(browsers resolve those to loopback themselves), the name the server binds to, the
machine's own host name, or a name in `allowed_hosts` (`*` there turns the check off).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from chaser.config import Settings


def hostname(host_header: str) -> str:
    """The name of a `Host` header, without its port, brackets or final dot, lowercased."""
    try:
        parts = urlsplit("//" + host_header.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
        name = parts.hostname or ""
    except ValueError:  # a malformed port or bracket
        return ""
    return name.rstrip(".").lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, settings: Settings) -> bool:
    """Whether a browser request naming `host_header` may be served (see above)."""
    allowed = [a.strip().lower().rstrip(".") for a in settings.allowed_hosts if a.strip()]
    if "*" in allowed:
        return True
    name = hostname(host_header or "")
    if not name:
        return False
    if _is_ip(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    if name in (settings.host.lower().rstrip("."), socket.gethostname().lower()):
        return True
    for entry in allowed:
        if entry.startswith(("*.", ".")):  # every subdomain of the name
            if name.endswith(entry[entry.index("."):]):
                return True
        elif name == hostname(entry):
            return True
    return False
