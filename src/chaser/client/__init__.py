"""The Chaser Python SDK: sync and async clients for the Chaser HTTP API.

    from chaser import Client

    with Client() as client:                      # CHASER_API_URL / CHASER_API_KEY
        print(client.exec("python3 -c 'print(42)'").output)
        with client.sessions.create(workspace="demo") as session:
            cmd = session.exec("for i in 1 2 3; do echo $i; sleep 1; done", background=True)
            for event in cmd.stream():
                print(event)
"""

from __future__ import annotations

from chaser.models.files import ArchiveWritten, FileEntry, FileWritten
from chaser.models import (
    ApiKey,
    BackgroundStarted,
    Command,
    ExecResult,
    ExitEvent,
    Image,
    ImageList,
    Limits,
    OutputEvent,
    PruneResult,
    Session,
    SessionUsage,
    StdinResult,
)

from chaser.jobs.models import Job, JobLogs, PipelineStep, RetryPolicy, Schedule

from ._async_client import AsyncClient, AsyncCommands, AsyncImages, AsyncKeys, AsyncSessions
from ._async_files import AsyncFiles
from ._async_handles import AsyncCommandHandle, AsyncSessionHandle
from ._client import Client, Commands, Images, Keys, Sessions
from ._config import DEFAULT_API_URL, Config, default_config_path, resolve_config
from ._errors import (
    APIError,
    AuthenticationError,
    ChaserError,
    ConflictError,
    ConnectionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    StreamError,
    TimeoutError,
    UnsafeArchiveError,
    ValidationError,
)
from ._files import Files
from ._handles import CommandHandle, SessionHandle
from ._async_jobs import AsyncJobs, AsyncSchedules
from ._jobs import JobEvent, Jobs, Schedules
from ._http import VERSION, output_bytes
from ._pty import AsyncPty, Pty
from ._pty_protocol import (
    PtyCommandEnd,
    PtyCommandStart,
    PtyErrorFrame,
    PtyEvent,
    PtyExit,
    PtyHello,
    PtyMode,
    PtyOutput,
    PtyResult,
)
from ._stream import AsyncCommandStream, CommandStream, StreamEvent

__version__ = VERSION

__all__ = [
    "APIError",
    "ArchiveWritten",
    "AsyncFiles",
    "FileEntry",
    "FileWritten",
    "Files",
    "ApiKey",
    "AsyncClient",
    "AsyncCommandHandle",
    "AsyncCommandStream",
    "AsyncCommands",
    "AsyncImages",
    "AsyncJobs",
    "AsyncKeys",
    "AsyncPty",
    "AsyncSchedules",
    "AsyncSessionHandle",
    "AsyncSessions",
    "AuthenticationError",
    "BackgroundStarted",
    "ChaserError",
    "Client",
    "Command",
    "CommandHandle",
    "CommandStream",
    "Commands",
    "Config",
    "ConflictError",
    "ConnectionError",
    "DEFAULT_API_URL",
    "ExecResult",
    "ExitEvent",
    "Image",
    "ImageList",
    "Images",
    "Job",
    "JobEvent",
    "JobLogs",
    "Jobs",
    "Keys",
    "Limits",
    "NotFoundError",
    "OutputEvent",
    "PermissionDeniedError",
    "PipelineStep",
    "PruneResult",
    "Pty",
    "PtyCommandEnd",
    "PtyCommandStart",
    "PtyErrorFrame",
    "PtyEvent",
    "PtyExit",
    "PtyHello",
    "PtyMode",
    "PtyOutput",
    "PtyResult",
    "RateLimitError",
    "RetryPolicy",
    "Schedule",
    "Schedules",
    "ServerError",
    "ServerUnavailable",
    "Session",
    "SessionUsage",
    "SessionHandle",
    "Sessions",
    "StdinResult",
    "StreamError",
    "StreamEvent",
    "TimeoutError",
    "UnsafeArchiveError",
    "ValidationError",
    "__version__",
    "default_config_path",
    "output_bytes",
    "resolve_config",
]
