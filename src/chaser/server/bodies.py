"""Request bodies read by hand: raw streams (uploads, stdin) and JSON beside them.

Routes that take either a raw `application/octet-stream` body or a JSON one read the
body themselves (a declared body parameter would make FastAPI read and parse it
first); JSON still fails the one way every route fails, 422 (or 400 `invalid_json`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from chaser.errors import BadRequest

OCTET = "application/octet-stream"
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


async def json_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model` (an empty body is the model's defaults)."""
    data = await request.body()
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err.get("loc", ()))} for err in e.errors()]) from None
