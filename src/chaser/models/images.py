"""Wire shapes of OCI images: listed, pulled, pruned."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from chaser.models.fields import IMAGE_PATTERN, IMAGE_REF_MAX, ImageName, Strict


class ImageConfigInfo(BaseModel):
    """What an image's config says (Env, WorkingDir and User are honoured; see docs)."""

    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    entrypoint: list[str] = Field(default_factory=list)
    cmd: list[str] = Field(default_factory=list)


class Image(BaseModel):
    """An image in the server's cache."""

    reference: str | None = None  # the first of `references`; None when untagged
    references: list[str] = Field(default_factory=list)
    digest: str  # the manifest's, for this machine's platform
    size: int  # bytes unpacked
    layers: int
    config: ImageConfigInfo = Field(default_factory=ImageConfigInfo)
    pulled_at: str
    last_used_at: str
    in_use: int = 0  # running sandboxes on it


class ImageList(BaseModel):
    images: list[Image]
    cache_bytes: int
    cache_limit_bytes: int


# An image of the cache by reference or by id (`sha256:...`); never the built-in one.
CACHED_IMAGE_SCHEMA: dict[str, Any] = {
    "anyOf": [{"pattern": "^sha256:"}, {"pattern": IMAGE_PATTERN, "maxLength": IMAGE_REF_MAX}],
    "not": {"const": "default"}}


class ImagePull(Strict):
    """`POST /v1/images/pull`."""

    image: ImageName = Field(json_schema_extra={"not": {"const": "default"}})


class ImagePrune(Strict):
    """`POST /v1/images/prune` (admins): unused images only, never one a sandbox runs on.

    With no field, untagged images go (as `docker image prune`); `all` takes every
    unused one; `older_than_s` those unused for that long; `max_total_mb` then the
    least recently used until the cache fits.
    """

    all: bool = False
    older_than_s: int | None = Field(default=None, ge=0)
    max_total_mb: int | None = Field(default=None, ge=0)


class PruneResult(BaseModel):
    deleted: list[Image]
    freed_bytes: int
    cache_bytes: int
