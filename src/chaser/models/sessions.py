"""Wire shapes of sessions, their terminals' tickets, and workspaces."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chaser.models.fields import AbsPath, EnvVars, ImageName, SessionStatus, Strict, WorkspaceName
from chaser.models.commands import Limits


class SessionCreate(Strict):
    """`POST /v1/sessions`."""

    workspace: WorkspaceName | None = None
    image: ImageName | None = None
    env: EnvVars | None = None
    cwd: AbsPath | None = None
    limits: Limits | None = None
    idle_timeout_s: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class Session(BaseModel):
    """A running (or stopped) sandbox that commands join."""

    id: str
    workspace: str | None = None
    image: str = "default"
    status: SessionStatus
    created_at: str
    ended_at: str | None = None
    end_reason: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = "/workspace"
    limits: Limits = Field(default_factory=Limits)
    idle_timeout_s: int = 1800
    last_activity_at: str | None = None


class SessionList(BaseModel):
    sessions: list[Session]


class PtyTicket(BaseModel):
    """A single-use ticket that opens one terminal on a session (docs/pty.md)."""

    ticket: str
    expires_in_s: int
    url: str = Field(description="the WebSocket path with the ticket in its query")


class Workspace(BaseModel):
    """A tenant's persistent workspace: its files outlive every session on it."""

    name: str
    created_at: str
    last_used_at: str | None = None
    disk_bytes: int
    session_id: str | None = None  # the session running on it, if any


class WorkspaceList(BaseModel):
    workspaces: list[Workspace]
