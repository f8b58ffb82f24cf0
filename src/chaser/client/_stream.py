"""Following a command's output over Server-Sent Events, resuming by byte offset.

A stream yields `OutputEvent` chunks in order and ends with one `ExitEvent`. When the
connection drops (or the server closes it early) the stream reconnects with
`from=<offset just past the last chunk received>`, so no byte is lost or repeated.
`stream.offset` is always that resume point.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any, TypeAlias

import httpx
from httpx_sse import ServerSentEvent, SSEError, aconnect_sse, connect_sse

from chaser.models import ExitEvent, OutputEvent

from ._config import Config
from ._errors import ChaserError, StreamError, TimeoutError  # noqa: A004
from ._http import STREAM_READ_TIMEOUT, api_error, output_bytes, transport_error

StreamEvent: TypeAlias = OutputEvent | ExitEvent
DEFAULT_STREAM_RETRIES = 5


def _decode(sse: ServerSentEvent) -> tuple[StreamEvent | None, int | None]:
    """One SSE event -> (event, offset just past it); comments and unknown events -> None."""
    if sse.event == "output":
        ev = OutputEvent.model_validate_json(sse.data)
        end = int(sse.id) if sse.id.isdigit() else ev.offset + len(output_bytes(ev))
        return ev, end
    if sse.event == "exit":
        return ExitEvent.model_validate_json(sse.data), None
    return None, None


class _State:
    """Offset and retry bookkeeping shared by the sync and async streams."""

    def __init__(
        self, config: Config, from_offset: int, interval_ms: int | None,
        retries: int, timeout: float | None,
    ) -> None:
        self.config = config
        self.offset = from_offset
        self.interval_ms = interval_ms
        self.retries = retries
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.failures = 0
        self.exit: ExitEvent | None = None

    def request(self) -> dict[str, Any]:
        params: dict[str, Any] = {"from": self.offset}
        if self.interval_ms is not None:
            params["interval_ms"] = self.interval_ms
        read = STREAM_READ_TIMEOUT
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for the command to finish")
            read = min(read, remaining)
        return {"params": params, "timeout": httpx.Timeout(10.0, read=read)}

    def accept(self, sse: ServerSentEvent) -> StreamEvent | None:
        """Decode one event; None when it carries nothing new for the caller."""
        ev, end = _decode(sse)
        if ev is None:
            return None
        self.failures = 0
        if isinstance(ev, ExitEvent):
            self.exit = ev
            return ev
        assert end is not None
        if end <= self.offset:  # already delivered before a reconnect
            return None
        self.offset = end
        return ev

    def failed(self, exc: Exception | None) -> float:
        """Record a broken connection; return the pause before resuming, or raise."""
        if isinstance(exc, httpx.TimeoutException) and self.deadline is not None \
                and time.monotonic() >= self.deadline:
            raise TimeoutError("timed out waiting for the command to finish") from None
        self.failures += 1
        if self.failures > self.retries:
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise transport_error(exc, self.config) from None
            why = str(transport_error(exc, self.config)) if exc else "stream ended early"
            raise StreamError(
                f"output stream broke {self.failures} times in a row at offset "
                f"{self.offset}: {why}"
            ) from None
        return min(0.1 * 2.0 ** (self.failures - 1), 2.0)


class CommandStream:
    """Iterator over a command's output chunks, ending with its `ExitEvent`.

    Use as `for event in handle.stream(): ...`; `close()` (or leaving a `with` block)
    ends it early. `offset` is where a new stream would resume; `exit` is the exit event
    once seen.
    """

    def __init__(
        self, http: httpx.Client, config: Config, path: str, *, from_offset: int = 0,
        interval_ms: int | None = None, retries: int = DEFAULT_STREAM_RETRIES,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._path = path
        self._state = _State(config, from_offset, interval_ms, retries, timeout)
        self._events = self._run()

    @property
    def offset(self) -> int:
        return self._state.offset

    @property
    def exit(self) -> ExitEvent | None:
        return self._state.exit

    def __iter__(self) -> CommandStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> CommandStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> Generator[StreamEvent, None, None]:
        st = self._state
        while True:
            error: Exception | None = None
            try:
                with connect_sse(self._http, "GET", self._path, **st.request()) as source:
                    if not source.response.is_success:
                        source.response.read()
                        raise api_error(source.response, st.config)
                    for sse in source.iter_sse():
                        ev = st.accept(sse)
                        if ev is not None:
                            yield ev
                            if st.exit is not None:
                                return
            except SSEError as e:
                raise ChaserError(f"the server did not answer with an event stream: {e}") from None
            except httpx.HTTPError as e:
                error = e
            time.sleep(st.failed(error))


class AsyncCommandStream:
    """Async iterator over a command's output chunks, ending with its `ExitEvent`.

    Use as `async for event in handle.stream(): ...`; see `CommandStream`.
    """

    def __init__(
        self, http: httpx.AsyncClient, config: Config, path: str, *, from_offset: int = 0,
        interval_ms: int | None = None, retries: int = DEFAULT_STREAM_RETRIES,
        timeout: float | None = None,
    ) -> None:
        self._http = http
        self._path = path
        self._state = _State(config, from_offset, interval_ms, retries, timeout)
        self._events = self._run()

    @property
    def offset(self) -> int:
        return self._state.offset

    @property
    def exit(self) -> ExitEvent | None:
        return self._state.exit

    def __aiter__(self) -> AsyncCommandStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncCommandStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        st = self._state
        while True:
            error: Exception | None = None
            try:
                async with aconnect_sse(self._http, "GET", self._path,
                                        **st.request()) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        raise api_error(source.response, st.config)
                    async for sse in source.aiter_sse():
                        ev = st.accept(sse)
                        if ev is not None:
                            yield ev
                            if st.exit is not None:
                                return
            except SSEError as e:
                raise ChaserError(f"the server did not answer with an event stream: {e}") from None
            except httpx.HTTPError as e:
                error = e
            await asyncio.sleep(st.failed(error))
