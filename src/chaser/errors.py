"""The one exception tree of the server side (core, runtime, store).

    ServiceError
    ├── BadRequest            code: bad_request, invalid_signal
    ├── Unauthorized          code: unauthorized
    ├── Forbidden             code: forbidden
    ├── NotFound              code: not_found, image_not_found
    ├── Conflict              code: conflict, session_stopped, command_finished, image_in_use,
    │                               invalid_cwd (the sandbox has no such directory)
    ├── PayloadTooLarge       code: payload_too_large, image_too_large
    ├── Unprocessable         code: image_rejected (an image's content is refused)
    ├── RangeNotSatisfiable   code: range_not_satisfiable
    ├── OverLimit             code: tenant_limit, too_many_commands, pids_limit
    ├── StorageFull           code: storage_full
    ├── BadGateway            code: image_pull_failed (a registry failed or lied)
    └── Unavailable           code: no_capacity, sandbox_failed

Each carries a machine-readable `code` and a human message. The HTTP layer maps the
classes to status codes in one place (`chaser.server.errors`); nothing here knows HTTP.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the core reports to clients."""

    code = "error"

    def __init__(self, message: str, code: str | None = None, *,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds; sent as Retry-After (429, 503)
        if code is not None:
            self.code = code


class BadRequest(ServiceError):
    code = "bad_request"


class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


class NotFound(ServiceError):
    code = "not_found"


class ImageNotFound(NotFound):
    code = "image_not_found"


class Conflict(ServiceError):
    code = "conflict"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class Unprocessable(ServiceError):
    code = "unprocessable"


class BadGateway(ServiceError):
    """A server this one depends on (a registry) failed or answered nonsense."""

    code = "bad_gateway"


class RangeNotSatisfiable(ServiceError):
    """A byte range past the end of a file (`size`: the file's, when known)."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, code: str | None = None, *,
                 size: int | None = None) -> None:
        super().__init__(message, code)
        self.size = size


class OverLimit(ServiceError):
    code = "over_limit"


class StorageFull(ServiceError):
    """The data dir's filesystem is full: output or state cannot be recorded."""

    code = "storage_full"


class Unavailable(ServiceError):
    code = "no_capacity"


class SandboxFailed(Unavailable):
    code = "sandbox_failed"
