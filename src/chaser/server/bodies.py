"""Request bodies read by hand: raw streams (uploads, stdin) and JSON beside them.

Routes that take either a raw `application/octet-stream` body or a JSON one read the
body themselves (a declared body parameter would make FastAPI read and parse it
first); JSON still fails the one way every route fails, 422 (or 400 `invalid_json`).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Message, Scope

from chaser.errors import BadRequest

OCTET = "application/octet-stream"
READ_AHEAD_BYTES = 256 * 1024  # what `RawBody.gone` reads ahead of its consumer, at most
M = TypeVar("M", bound=BaseModel)
# Bodies the size limit does not apply to: uploads to a sandbox's disk (bounded by its
# quota) and raw stdin (streamed with the command's backpressure).
_STREAMED = re.compile(r"^/v1/(sessions|workspaces)/[^/]+/(files|archive)$")
_RAW_STDIN = re.compile(r"^/v1/sessions/[^/]+/commands/[^/]+/stdin$")


def streamed(scope: Scope) -> bool:
    """Whether this request's body streams past the body-size limit."""
    path = str(scope.get("path", ""))
    if _STREAMED.match(path):
        return True
    return bool(_RAW_STDIN.match(path)) and is_raw_scope(scope)


def is_raw_scope(scope: Scope) -> bool:
    ctype = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
    return bytes(ctype).split(b";")[0].strip().lower() == OCTET.encode()


def is_raw(request: Request) -> bool:
    """Whether the body is raw bytes (`Content-Type: application/octet-stream`)."""
    return is_raw_scope(request.scope)


async def raw_body(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client gone mid-body is an error, so what it fed is
    never taken for complete."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise BadRequest("the upload was cut off", "upload_cut_off") from None


class RawBody:
    """A raw body as it arrives (`chunks()`), and `gone()`, which returns when the client
    has disconnected, for a consumer that paused reading the body (it waits on where the
    bytes go): ASGI tells a disconnect only in the stream of body messages, so `gone`
    reads ahead, keeping what it read for `chunks` (at most READ_AHEAD_BYTES; past that
    it cannot tell, and never returns: the consumer's idle time is the bound then). Never both at once: `gone` runs only while
    `chunks` is suspended between two chunks."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._ahead: deque[bytes] = deque()
        self._ahead_bytes = 0
        self._more = True
        self._left = False

    def _take(self, message: Message) -> None:
        if message["type"] == "http.disconnect":
            self._left = True
            return
        body = message.get("body", b"")
        if body:
            self._ahead.append(body)
            self._ahead_bytes += len(body)
        self._more = bool(message.get("more_body", False))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes; 400 `upload_cut_off` when the client left before its end."""
        while True:
            if self._ahead:
                chunk = self._ahead.popleft()
                self._ahead_bytes -= len(chunk)
                yield chunk
            elif self._left:
                raise BadRequest("the upload was cut off", "upload_cut_off")
            elif not self._more:
                return
            else:
                self._take(await self._receive())

    async def gone(self) -> None:
        """Return once the client has disconnected (see the class)."""
        # Past the body's end the next message is the disconnect itself.
        while not self._left and (not self._more or self._ahead_bytes < READ_AHEAD_BYTES):
            self._take(await self._receive())
        if not self._left:
            await asyncio.Event().wait()  # too far ahead: nothing more to tell


async def json_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model` (an empty body is the model's defaults)."""
    data = await request.body()
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err.get("loc", ()))} for err in e.errors()]) from None
