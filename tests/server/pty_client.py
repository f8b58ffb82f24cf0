"""A plain WebSocket client of the PTY endpoint for the tests: frames as the wire has
them (the SDK's `Pty` is tested on its own in tests/client)."""

from __future__ import annotations

import json
import time
from typing import Any

import pyte
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import ServerProcess

Frame = bytes | dict[str, Any]


class Term:
    """One connection to `GET /v1/sessions/{id}/pty`."""

    def __init__(self, server: ServerProcess, key: str | None, session_id: str,
                 query: str = "", origin: str | None = None) -> None:
        url = server.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/pty?{query}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.ws: ClientConnection = connect(url, additional_headers=headers, open_timeout=30,
                                            origin=Origin(origin) if origin else None,
                                            max_size=None, legacy=True)
        self.frames: list[Frame] = []
        hello = self.next(10)
        assert isinstance(hello, dict) and hello["type"] == "hello", hello
        self.hello: dict[str, Any] = hello
        self.pty_id = str(self.hello["pty_id"])
        self.closed = False

    def next(self, timeout: float) -> Frame:
        raw = self.ws.recv(timeout)
        frame: Frame = raw if isinstance(raw, bytes) else json.loads(raw)
        return frame

    def send(self, data: bytes | str) -> None:
        self.ws.send(data.encode() if isinstance(data, str) else data)

    def control(self, msg: dict[str, Any]) -> None:
        self.ws.send(json.dumps(msg))

    def read_until(self, done: Any, timeout: float = 20.0) -> list[Frame]:
        """Frames until `done(frames so far)` holds (or the socket closes); asserts it."""
        deadline = time.monotonic() + timeout
        got: list[Frame] = []
        while not done(got):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; got {got!r}"[:3000]
            try:
                frame = self.next(left)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - closed: judged by done() below
                self.closed = True
                break
            got.append(frame)
            self.frames.append(frame)
        assert done(got), f"ended early; got {got!r}"[:3000]
        return got

    def until_text(self, needle: str, timeout: float = 20.0) -> str:
        got = self.read_until(lambda fs: needle in text_of(fs), timeout)
        return text_of(got)

    def until_event(self, kind: str, timeout: float = 20.0) -> list[Frame]:
        return self.read_until(lambda fs: any(isinstance(f, dict) and f["type"] == kind
                                              for f in fs), timeout)

    def wait_screen(self, done: Any, cols: int = 80, rows: int = 24,
                    timeout: float = 20.0) -> list[str]:
        """Read until the screen of everything received satisfies `done(lines)`."""
        self.read_until(lambda _: done(screen_of(self.frames, cols, rows)), timeout)
        return screen_of(self.frames, cols, rows)

    def wait_event(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next event of `kind` (frames before it are kept in `frames`)."""
        return events(self.until_event(kind, timeout), kind)[0]

    def close(self) -> None:
        self.ws.close()


def text_of(frames: list[Frame]) -> str:
    return b"".join(f for f in frames if isinstance(f, bytes)).decode(errors="replace")


def events(frames: list[Frame], kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in frames if isinstance(f, dict) and (kind is None or f["type"] == kind)]


class _Screen(pyte.Screen):
    """pyte's screen, taking xterm's private SGR (`ESC [ > 4 ; m`, which vim sends) as
    the no-op it is for the screen's content (pyte 0.8 raises on it)."""

    def select_graphic_rendition(self, *attrs: int, private: bool = False) -> None:
        if not private:
            super().select_graphic_rendition(*attrs)


def screen_of(frames: list[Frame], cols: int = 80, rows: int = 24) -> list[str]:
    """What a terminal would show after these frames (a real VT100 emulator)."""
    screen = _Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    for f in frames:
        if isinstance(f, bytes):
            stream.feed(f)
    return [line.rstrip() for line in screen.display]
