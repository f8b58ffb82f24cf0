"""`chaser server`: run the service in the foreground with uvicorn."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import uvicorn

from chaser.config import SettingError, Settings
from chaser.core.capacity import connection_cap, raise_fd_limit
from chaser.server.app import create_app
from chaser.server.connections import ConnectionLimits, guarded_http
from chaser.server.datadir import open_data_dir

WS_MAX_SIZE = 4 * 1024 * 1024
# asyncio accepts up to `backlog` connections in one go before the protocol sees any:
# what a flood holds past max_connections for a moment. nginx's default; well inside the
# descriptors kept in reserve (capacity.FDS_RESERVE).
BACKLOG = 511


class Throttle(logging.Filter):
    """Lets a message that starts with `prefix` through once per `every` seconds,
    saying how many like it were held back meanwhile."""

    def __init__(self, prefix: str, every: float = 60.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.every = every
        self.last = -every
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return False
        if self.held:
            record.msg = f"{record.getMessage()}\n({self.held} more like it since the last one)"
            record.args = None
        self.last, self.held = now, 0
        return True


class NoQueryStrings(logging.Filter):
    """Cuts the query string off every path a log line names: uvicorn logs each
    WebSocket upgrade (`"WebSocket /v1/sessions/ID/pty?ticket=..." [accepted]`) at
    INFO even with the access log off, and a query may carry a terminal ticket or an
    exec-mode command line."""

    QUERY = re.compile(r'(/[^\s?"]*)\?[^\s"]*')

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.QUERY.sub(r"\1", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = self.QUERY.sub(r"\1", record.msg)
        return True


def quiet_queries() -> None:
    """No query string in uvicorn's lines (connections and, if turned on, access)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, NoQueryStrings) for f in logger.filters):
            logger.addFilter(NoQueryStrings())


def serve(host: str | None = None, port: int | None = None, data_dir: str | Path | None = None,
          sets: tuple[str, ...] = (), **flags: object) -> None:
    """Start the server and block until it is stopped (SIGINT/SIGTERM); `flags` are
    settings given as options (None: not given)."""
    try:
        settings = Settings.from_env(host=host, port=port, data_dir=data_dir, **flags)
        for assignment in sets:  # flags win over variables
            settings.set_from_flag(assignment)
    except SettingError as e:  # before the data dir is touched
        print(f"chaser: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A line per registry request (the pulls' httpx client) is noise, and names URLs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Out of file descriptors, asyncio logs a traceback per failed accept: thousands a
    # second, which would fill the disk the logs are on.
    logging.getLogger("asyncio").addFilter(Throttle("socket.accept() out of system resource"))
    # Filters on a logger outlive uvicorn's dictConfig (it replaces handlers, not filters).
    quiet_queries()
    try:
        lock = open_data_dir(settings)  # fail before serving, with one clear line
    except (RuntimeError, OSError) as e:
        print(f"chaser: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    app = create_app(settings, lock=lock)
    limits = connection_limits(settings)
    logging.getLogger("chaser").info(
        "accepting up to %d client connections (%d from one address)",
        limits.max_connections, limits.per_client)
    # loop="asyncio": uvloop blocks its loop for milliseconds on every process spawn,
    # which tripled the latency of one-shot sandboxes (bench/floor.py).
    # access_log off: request lines cost time on the hot path and carry no secrets we need.
    # ws_max_size: one WebSocket message (a terminal's paste) held whole in memory; the
    # SDK and CLI send 64 KiB frames, a larger one closes the socket (1009).
    # http: uvicorn's own, lending responses the connection's abort (abort.py), with
    # connections bounded in number and in how long a request may take to arrive
    # (connections.py).
    uvicorn.run(app, host=settings.host, port=settings.port, loop="asyncio", log_level="info",
                access_log=False, timeout_graceful_shutdown=5, ws_max_size=WS_MAX_SIZE,
                http=guarded_http(limits), backlog=BACKLOG)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The bounds of client connections, from the settings and the open-file limit
    (raised to its hard limit first: the caps are derived from it)."""
    cap = connection_cap(raise_fd_limit(), settings.max_connections)
    return ConnectionLimits(
        max_connections=cap,
        per_client=settings.max_connections_per_client or max(1, cap // 4),
        header_timeout_s=settings.request_header_timeout_s,
        body_idle_s=settings.request_body_idle_s)
