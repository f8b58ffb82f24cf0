"""Exceptions raised by the Chaser SDK.

Every error the SDK raises derives from `ChaserError`:

    ChaserError
    ├── ConnectionError        the server could not be reached at all
    ├── TimeoutError           a request or a wait() ran out of time
    ├── StreamError            an output stream broke and could not be resumed
    ├── UnsafeArchiveError     a downloaded archive held a member it may not extract
    └── APIError               the server answered with an error (`status_code`, `code`)
        ├── AuthenticationError    401  no key, wrong key, revoked key
        ├── PermissionDeniedError  403  admin-only endpoint with a non-admin key
        ├── NotFoundError          404  unknown, or another tenant's
        ├── ConflictError          409  wrong state (stdin to a finished command, ...)
        ├── ValidationError        400, 413, 422  bad input
        ├── RateLimitError         429  over a limit
        ├── ServerUnavailable      503  no capacity, sandbox failed
        └── ServerError            500 and any other unexpected status

`ConnectionError` and `TimeoutError` shadow the builtins of the same name only inside
this package; import them as `chaser.ConnectionError` to keep the two apart.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "ChaserError",
    "ConflictError",
    "ConnectionError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServerUnavailable",
    "StreamError",
    "TimeoutError",
    "UnsafeArchiveError",
    "ValidationError",
    "error_from_response",
]


class ChaserError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConnectionError(ChaserError):  # noqa: A001 - deliberate, see module docstring
    """The server could not be reached (refused, DNS failure, connection dropped)."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class TimeoutError(ChaserError):  # noqa: A001
    """A request, or waiting for a command, took longer than allowed."""


class StreamError(ChaserError):
    """An output stream kept failing and was given up after several resumptions."""


class UnsafeArchiveError(ChaserError):
    """A downloaded archive (it comes from a sandbox) held a member that could land
    outside the destination, a device or fifo, or a name no file system takes; that
    member was not extracted (the members before it were)."""


class APIError(ChaserError):
    """The server answered with an error.

    Attributes: `status_code` (HTTP status), `code` (the API's machine-readable code such
    as `"not_found"`), `message`, and `details` (extra data the server sent, if any).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status_code})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class AuthenticationError(APIError):
    """401: no key, a wrong key or a revoked key."""


class PermissionDeniedError(APIError):
    """403: the key may not do this (e.g. key management with a non-admin key)."""


class NotFoundError(APIError):
    """404: the object does not exist, or belongs to another tenant."""


class ConflictError(APIError):
    """409: the object is in the wrong state (e.g. stdin to a finished command)."""


class ValidationError(APIError):
    """400, 413 or 422: the request was rejected as bad input."""


class RateLimitError(APIError):
    """429: over a limit (too many sessions or commands)."""


class ServerUnavailable(APIError):
    """503: the server has no capacity or could not start a sandbox."""


class ServerError(APIError):
    """500 or another unexpected status: a server bug or a proxy in the way."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitError,
    503: ServerUnavailable,
}


def error_from_response(response: httpx.Response) -> APIError:
    """Build the typed exception for an error response (its body must have been read)."""
    code = f"http_{response.status_code}"
    message = response.reason_phrase or "request failed"
    details: Any = None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        details = err.get("details")
    elif response.text:
        message = response.text.strip().splitlines()[0][:200]
    cls = _BY_STATUS.get(response.status_code, ServerError)
    return cls(message, status_code=response.status_code, code=code, details=details)
