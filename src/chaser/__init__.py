"""Chaser: run commands in real Linux sandboxes over HTTP.

The public Python API is the SDK re-exported here (`from chaser import Client`); the
server lives in `chaser.server` and is never imported by the SDK or the CLI.
"""

from __future__ import annotations

from chaser.client import (
    APIError,
    AsyncClient,
    AsyncCommandHandle,
    AsyncCommandStream,
    AsyncPty,
    AsyncSessionHandle,
    AuthenticationError,
    ChaserError,
    Client,
    CommandHandle,
    CommandStream,
    ConflictError,
    ConnectionError,
    ExecResult,
    ExitEvent,
    NotFoundError,
    OutputEvent,
    PermissionDeniedError,
    Pty,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    SessionHandle,
    StreamError,
    TimeoutError,
    UnsafeArchiveError,
    ValidationError,
    __version__,
)

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncCommandHandle",
    "AsyncCommandStream",
    "AsyncPty",
    "AsyncSessionHandle",
    "AuthenticationError",
    "ChaserError",
    "Client",
    "CommandHandle",
    "CommandStream",
    "ConflictError",
    "ConnectionError",
    "ExecResult",
    "ExitEvent",
    "NotFoundError",
    "OutputEvent",
    "PermissionDeniedError",
    "Pty",
    "RateLimitError",
    "ServerError",
    "ServerUnavailable",
    "SessionHandle",
    "StreamError",
    "TimeoutError",
    "UnsafeArchiveError",
    "ValidationError",
    "__version__",
]
