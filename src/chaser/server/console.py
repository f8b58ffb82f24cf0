"""The web console at /console: the bundle `scripts/install.sh` builds from `console/`,
served as static files under a strict Content-Security-Policy (docs/console.md).

Transport only: the page is a client of the public HTTP API like the CLI, with the
caller's key in the browser's session storage; nothing here reads or holds keys.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import secrets
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chaser.config import Settings
from chaser.errors import NotFound
from chaser.server.errors import error_response
from chaser.server.hosts import host_allowed

ASSET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
SOURCE_DIST = Path(__file__).resolve().parents[3] / "console" / "dist"  # src/chaser/server/

# Scripts and styles from the server itself only; no inline scripts, no eval, no
# plugins, no framing. xterm.js's renderer sizes its rows and colours through <style>
# elements it makes at run time: the page gives them the nonce of its response (below),
# so no 'unsafe-inline' is needed. 'self' covers ws:/wss: to the same host (CSP level
# 3), and the terminal route checks Origin itself.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'{nonce}; "
       "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'")
NONCE_SLOT = "__CSP_NONCE__"

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-cache"),
]

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Chaser console not built</title></head><body>
<h1>The Chaser console has not been built</h1>
<p>This server has no console bundle in <code>{where}</code>. Build it with
<code>scripts/install.sh</code> (which needs npm; it installs nodejs and npm from the
distribution when missing), or by hand: <code>cd console &amp;&amp; npm ci &amp;&amp;
npm run build</code>. The HTTP API under <code>/v1</code> works without it.</p>
</body></html>"""


class ConsoleHeaders:
    """Adds the console's security headers to every response under /console, and
    refuses pages asked for by a host name the server does not answer to (hosts.py)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_console(scope["path"]):
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if not host_allowed(host, self.settings):
            refusal = error_response(403, "host_not_allowed", (
                f"this server does not answer to the host name {host[:100]!r}: add it to "
                "CHASER_ALLOWED_HOSTS (docs/configuration.md)"))
            await refusal(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                if not any(k.lower() == b"content-security-policy" for k, _ in kept):
                    kept.append((b"content-security-policy", CSP.format(nonce="").encode()))
                message = {**message, "headers": [*kept, *HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_console(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the console bundle (or a page saying how to build it) at /console."""
    dist = settings.console_dir or SOURCE_DIST
    index = dist / "index.html"
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    async def console_root() -> Response:
        return RedirectResponse("/console/", status_code=308)

    @router.get("/console/")
    async def console_index() -> Response:
        if not index.is_file():
            return HTMLResponse(NOT_BUILT.format(where=_escape(str(dist))), status_code=503)
        # A fresh nonce per page load, for the <style> elements xterm.js makes.
        nonce = secrets.token_urlsafe(18)
        page = (await asyncio.to_thread(index.read_text)).replace(NONCE_SLOT, nonce)
        return HTMLResponse(page, headers={
            "content-security-policy": CSP.format(nonce=f" 'nonce-{nonce}'")})

    @router.get("/console/assets/{name}")
    async def console_asset(name: str) -> Response:
        # A flat directory of build outputs: a name is one plain component, never a path.
        path = dist / "assets" / name
        if not ASSET_NAME.fullmatch(name) or not path.is_file():
            raise NotFound(f"no console asset {name[:100]!r}")
        return FileResponse(path, media_type=_media_type(name))

    app.include_router(router)
    app.add_middleware(ConsoleHeaders, settings=settings)


def _media_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else kind


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
