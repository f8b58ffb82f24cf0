"""Completion webhooks: sent by the server (never from a sandbox), only to allowlisted hosts.

The allowlist (`job_webhook_hosts`) is checked when a job is submitted and again when
its webhook is sent; redirects are not followed (a redirect could point anywhere), and
the server's proxy variables are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import httpx

from chaser.errors import BadRequest, Forbidden, ServiceError

log = logging.getLogger("chaser.jobs")

TRIES = 3
TIMEOUT_S = 10.0
BACKOFF_S = 2.0
CONCURRENT = 16
MAX_PENDING = 10_000


def check_webhook(url: str, allowed: list[str]) -> str:
    """The URL when its host is allowlisted: BadRequest for a malformed one, Forbidden
    (`webhook_not_allowed`, a well-formed URL this server's policy refuses) otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadRequest("webhook is not a valid URL", "invalid_webhook") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise BadRequest("webhook must be an http(s) URL with a host and no credentials",
                         "invalid_webhook")
    default = 443 if parts.scheme == "https" else 80
    # HOST alone allows its scheme's default port only; other ports are listed as HOST:PORT.
    names = {f"{host}:{port or default}"} | ({host} if port in (None, default) else set())
    if not any(entry.strip().lower() in names for entry in allowed):
        raise Forbidden(f"webhook host {host} is not on this server's allowlist "
                         "(job_webhook_hosts)", "webhook_not_allowed")
    return url


class WebhookSender:
    """Posts a finished job's JSON to its webhook, a few times until one is answered 2xx."""

    def __init__(self, allowed: list[str]) -> None:
        self.allowed = allowed
        self.sending = asyncio.Semaphore(CONCURRENT)
        self.pending = 0

    async def send(self, url: str, body: bytes, job_id: str) -> bool:
        """Send, a few at a time; past MAX_PENDING waiting, the webhook is dropped (logged)."""
        if self.pending >= MAX_PENDING:
            log.warning("job %s: %d webhooks waiting already; not sent", job_id, self.pending)
            return False
        self.pending += 1
        try:
            async with self.sending:
                return await self._send(url, body, job_id)
        finally:
            self.pending -= 1

    async def _send(self, url: str, body: bytes, job_id: str) -> bool:
        try:
            check_webhook(url, self.allowed)  # the allowlist may have shrunk since
        except ServiceError:  # refused (Forbidden) or no longer well-formed (BadRequest)
            log.warning("job %s: webhook host no longer allowed; not sent", job_id)
            return False
        headers = {"Content-Type": "application/json", "User-Agent": "chaser-webhook",
                   "X-Chaser-Event": "job.finished", "X-Chaser-Job": job_id}
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                     timeout=TIMEOUT_S) as client:
            for n in range(TRIES):
                try:
                    # Only the status matters: the answer's body is never read (a
                    # receiver's large answer would be held in the server's memory).
                    async with client.stream("POST", url, content=body, headers=headers) as r:
                        status = r.status_code
                    if 200 <= status < 300:
                        return True
                    log.info("job %s: webhook answered %d", job_id, status)
                except httpx.HTTPError as e:
                    log.info("job %s: webhook failed: %s", job_id, type(e).__name__)
                if n + 1 < TRIES:
                    await asyncio.sleep(BACKOFF_S * (n + 1))
        return False
