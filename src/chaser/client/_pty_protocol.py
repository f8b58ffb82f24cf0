"""The PTY WebSocket's frames and bookkeeping, shared by `Pty` and `AsyncPty` (no I/O).

The wire protocol is docs/pty.md: binary frames carry terminal bytes both ways, text
frames one JSON object. `PtyCore` turns each frame into a typed event, tracks the output
offset and the exit, and in agent mode pairs the commands `start_command` sent with the
`command_start` / `command_end` frames the server reports, so `run()` never guesses from
the screen.
"""

from __future__ import annotations

import json
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias
from urllib.parse import urlencode

import httpx

from chaser.models import Shell

from ._api import session_path
from ._config import Config
from ._errors import APIError, ChaserError, ConnectionError  # noqa: A004
from ._http import api_error

PtyMode = Literal["human", "agent", "exec"]
# Terminal output arrives in chunks of at most a few hundred KiB; anything far larger is
# a broken peer, refused rather than buffered.
MAX_FRAME = 16 * 1024 * 1024
OPEN_TIMEOUT = 60.0
CLOSE_WAIT = 10.0  # how long close() waits for the server's exit frame
# Error frames that mean typed input was not taken (docs/pty.md): a waiting command
# would never start.
INPUT_REFUSALS = frozenset({"read_only"})


@dataclass(frozen=True)
class PtyHello:
    """The server's first frame: which terminal this is and where its output starts."""

    pty_id: str
    mode: str
    cols: int
    rows: int
    offset: int
    view: bool


@dataclass(frozen=True)
class PtyOutput:
    """Terminal output (or a command's stdout and stderr in exec mode) at `offset`."""

    data: bytes
    offset: int


@dataclass(frozen=True)
class PtyCommandStart:
    """Agent mode: the shell read `command` and is about to run it."""

    command: str
    offset: int


@dataclass(frozen=True)
class PtyCommandEnd:
    """Agent mode: a command ended with `exit_code` and the shell is at its prompt."""

    exit_code: int
    offset: int


@dataclass(frozen=True)
class PtyErrorFrame:
    """A control frame of ours the server could not take (the connection stays)."""

    code: str
    message: str


@dataclass(frozen=True)
class PtyExit:
    """The shell (or exec command) ended; the server closes the socket next."""

    exit_code: int | None
    signal: str | None
    status: str


PtyEvent: TypeAlias = PtyOutput | PtyCommandStart | PtyCommandEnd | PtyErrorFrame | PtyExit


class PtyResult(NamedTuple):
    """What `Pty.run` returns: the command's output and exit code (unpacks as a tuple)."""

    output: str
    exit_code: int


def _str(obj: dict[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key)
    return default if value is None else str(value)


def _int(obj: dict[str, Any], key: str, default: int = 0) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_hello(message: str | bytes) -> PtyHello:
    """The first frame, which must be `hello`."""
    obj = _json(message) if isinstance(message, str) else None
    if obj is None or obj.get("type") != "hello" or not obj.get("pty_id"):
        raise ConnectionError("the server did not open the terminal with a hello frame; "
                              "is the URL a Chaser server?")
    return PtyHello(pty_id=_str(obj, "pty_id"), mode=_str(obj, "mode"),
                    cols=_int(obj, "cols"), rows=_int(obj, "rows"),
                    offset=_int(obj, "offset"), view=bool(obj.get("view")))


def _json(message: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(message)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _signal_number(name: str | None) -> int:
    if name and name.isdigit():
        return int(name)
    name = (name or "KILL").upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        return int(signal.SIGKILL)


def normalize(text: str) -> str:
    """A command line with its whitespace collapsed, to compare what was sent with what
    the shell reports having read."""
    return " ".join(text.split())


@dataclass
class _Pending:
    """A command line sent by `start_command`, until the shell has run all of it."""

    remaining: str
    started: bool = False
    chunks: list[bytes] = field(default_factory=list)


class PtyCore:
    """The state of one attached terminal: offsets, exit, and agent-mode commands."""

    def __init__(self, hello: PtyHello, session_id: str) -> None:
        self.hello = hello
        self.session_id = session_id
        self.offset = hello.offset
        self.exit: PtyExit | None = None
        self.last_error: PtyErrorFrame | None = None
        self.pending: deque[_Pending] = deque()
        self.results: deque[PtyResult] = deque()
        self.in_command = False
        # Control frames seen at the current offset: a resumed connection replays the
        # events from that offset on, and these must not count twice.
        self._seen_here: list[str] = []
        self._replay_skip: list[str] = []

    def resumed(self, hello: PtyHello) -> None:
        """A new connection to the same terminal, replaying from `hello.offset`."""
        if hello.offset > self.offset:  # the scrollback no longer had it all
            self.offset, self._seen_here = hello.offset, []
        self._replay_skip = list(self._seen_here)

    def event(self, message: str | bytes) -> PtyEvent | None:
        """Decode one frame and apply it; None for frames of no interest (a repeated
        hello, an unknown type: newer servers may add some)."""
        if isinstance(message, bytes):
            ev: PtyEvent = PtyOutput(message, self.offset)
            self.offset += len(message)
            self._seen_here, self._replay_skip = [], []
            self._output(message)
            return ev
        obj = _json(message)
        if obj is None:
            return None
        kind = obj.get("type")
        if kind in ("command_start", "command_end"):
            if self._replay_skip and self._replay_skip[0] == kind:
                self._replay_skip.pop(0)
                return None
            self._seen_here.append(str(kind))
        if kind == "command_start":
            start = PtyCommandStart(_str(obj, "command"), _int(obj, "offset", self.offset))
            self._command_start(start)
            return start
        if kind == "command_end":
            end = PtyCommandEnd(_int(obj, "exit_code"), _int(obj, "offset", self.offset))
            self._command_end(end)
            return end
        if kind == "error":
            self.last_error = PtyErrorFrame(_str(obj, "code", "error"), _str(obj, "message"))
            return self.last_error
        if kind == "exit":
            self.exit = PtyExit(_optional_int(obj.get("exit_code")),
                                obj.get("signal") and str(obj["signal"]) or None,
                                _str(obj, "status", "exited"))
            return self.exit
        return None

    def _output(self, data: bytes) -> None:
        if self.in_command and self.pending and self.pending[0].started:
            self.pending[0].chunks.append(data)

    def _command_start(self, start: PtyCommandStart) -> None:
        self.in_command = True
        if not self.pending:
            return  # typed by hand with send(): nobody waits for it
        head = self.pending[0]
        head.started = True
        said = normalize(start.command)
        at = head.remaining.find(said) if said else -1
        # What the shell read is normally a prefix of what was sent; when it is not
        # found at all (an alias, history expansion), count the line as fully read.
        head.remaining = head.remaining[at + len(said):].strip() if at >= 0 else ""

    def _command_end(self, end: PtyCommandEnd) -> None:
        self.in_command = False
        if not self.pending or not self.pending[0].started or self.pending[0].remaining:
            return
        done = self.pending.popleft()
        text = b"".join(done.chunks).decode("utf-8", "replace").replace("\r\n", "\n")
        self.results.append(PtyResult(text, end.exit_code))

    def start_command(self, command: str) -> bytes:
        """Record a command line about to be sent; return the bytes to send."""
        if self.hello.mode != "agent":
            raise ChaserError(f"run() needs an agent-mode terminal (this one is "
                              f"{self.hello.mode!r}): client.pty(session, mode='agent')")
        if self.hello.view:
            raise ChaserError("this terminal is attached read-only (view=True)")
        line = command[:-1] if command.endswith("\n") else command
        if not normalize(line) or normalize(line).startswith("#"):
            raise ChaserError("run() needs a command (the line is empty or a comment)")
        self.last_error = None
        self.pending.append(_Pending(remaining=normalize(line)))
        return (line + "\n").encode()

    def take_result(self) -> PtyResult | None:
        return self.results.popleft() if self.results else None

    def forget_command(self) -> None:
        """Stop waiting for the oldest command sent (it timed out and was interrupted)."""
        if self.pending:
            self.pending.popleft()

    def error_for_waiter(self) -> ChaserError | None:
        """An error frame or the exit, as the reason a command will never end."""
        # Only a refusal of input dooms a command; a bad resize sent meanwhile does not.
        if self.last_error is not None and self.last_error.code in INPUT_REFUSALS:
            err, self.last_error = self.last_error, None
            return ChaserError(f"the terminal refused input: {err.message} ({err.code})")
        if self.exit is not None:
            return ChaserError(f"the terminal ended (exit code {self.exit.exit_code}) "
                               "before the command did")
        return None

    def exit_status(self) -> int | None:
        """The exit code, or 128+N when the shell was killed by signal N."""
        if self.exit is None:
            return None
        if self.exit.exit_code is not None:
            return self.exit.exit_code
        return 128 + _signal_number(self.exit.signal)


def pty_url(config: Config, session_id: str, params: dict[str, Any]) -> str:
    """The `ws://` (or `wss://`) URL of a session's terminal; never carries the key."""
    base = config.api_url
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    query = {k: v for k, v in params.items() if v is not None}
    return f"{base}{session_path(session_id)}/pty?{urlencode(query)}"


def pty_params(
    mode: PtyMode, cols: int | None, rows: int | None, pty_id: str | None, view: bool,
    command: str | None, shell: Shell | None, cwd: str | None, from_offset: int | None,
) -> dict[str, Any]:
    """The query of `GET .../pty` (docs/pty.md); None leaves a value to the server."""
    return {"mode": mode, "cols": cols, "rows": rows, "pty_id": pty_id,
            "view": "true" if view else None, "command": command, "shell": shell,
            "cwd": cwd, "from": from_offset}


def headers(config: Config) -> dict[str, str]:
    """The upgrade request's headers: the key goes in `Authorization`, never the URL."""
    out: dict[str, str] = {}
    if config.api_key:
        out["Authorization"] = f"Bearer {config.api_key}"
    return out


def refused(status: int, header_items: list[tuple[str, str]], body: bytes | None,
            config: Config) -> APIError:
    """The typed error for an upgrade the server refused with a plain HTTP answer."""
    response = httpx.Response(status, headers=header_items, content=body or b"")
    return api_error(response, config)
