"""Wire shapes of the files API (`/v1/sessions/{id}/files...`, `/v1/workspaces/{name}/files...`),
shared by the server and the SDK."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FileType = Literal["file", "directory", "symlink", "other"]


class FileEntry(BaseModel):
    """One entry of a directory listing (symlinks are described, not followed)."""

    name: str
    path: str = Field(description="The entry's path inside the sandbox")
    type: FileType
    size: int = Field(description="Bytes (a symlink: the length of its target)")
    mode: int = Field(description="Permission bits, e.g. 420 for 0o644")
    mtime: str = Field(description="Last modification, RFC 3339 UTC")
    link_target: str | None = None


class FileList(BaseModel):
    """`GET .../files/list`: a directory's entries, sorted by name."""

    path: str
    entries: list[FileEntry]
    truncated: bool = Field(default=False, description="More entries than one answer holds")


class FileWritten(BaseModel):
    """`PUT .../files`: the file as written."""

    path: str
    size: int


class ArchiveWritten(BaseModel):
    """`PUT .../archive`: what the tar held."""

    path: str
    files: int = Field(description="Members extracted (files, directories and links)")
    bytes: int = Field(description="Bytes of file content written")
