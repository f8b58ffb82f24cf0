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


class MeasuredUsage(BaseModel):
    """What sandboxes use now, as the kernel counts them (docs/api.md, "Usage"). A null
    figure is one this host does not measure."""

    cpu_ms: int | None = Field(default=None, description=(
        "CPU time used by all its processes since it started, ended ones included "
        "(the difference between two samples over their time apart is the CPU share: "
        "1000 ms a second is one core)"))
    memory_bytes: int | None = Field(default=None, description=(
        "memory in use: the working set, as docker stats shows it (charged memory less "
        "inactive file cache); tmpfs files included"))
    memory_peak_bytes: int | None = Field(default=None, description=(
        "the highest memory charge so far, file cache included"))
    pids: int | None = Field(default=None, description="processes (threads) now")
    sampled_at: str = Field(description="when the figures were read (UTC)")


class SessionUsage(MeasuredUsage):
    """One running session's sandbox, now."""

    disk_bytes: int | None = Field(default=None, description=(
        "bytes its files take: its workspace's disk (shared by every session on the "
        "workspace), or, without a workspace, its private tmpfs mounts (which count in "
        "memory_bytes too)"))
    disk_limit_bytes: int | None = Field(default=None, description=(
        "the size of its workspace's disk, or of each of its tmpfs mounts"))


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
    usage: SessionUsage | None = Field(default=None, description=(
        "what it uses now: in GET /v1/sessions/{id} for a running session, in the list "
        "with ?usage=true; null for a stopped one"))


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
