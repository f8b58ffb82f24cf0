"""Images: pull (waiting, or progress as SSE), import, list, get, delete, prune."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from sse_starlette import ServerSentEvent

from chaser.errors import ServiceError
from chaser.models import (
    CACHED_IMAGE_SCHEMA,
    Image,
    ImageList,
    ImagePrune,
    ImagePull,
    PruneResult,
)
from chaser.server.deps import Caller, Core
from chaser.server.events import sse_response
from chaser.server.errors import status_for

router = APIRouter(prefix="/v1/images", tags=["images"])

CachedName = Annotated[str, Path(json_schema_extra=CACHED_IMAGE_SCHEMA)]


@router.post("/pull", response_model=Image,
             responses={200: {"content": {"text/event-stream": {}}}})
async def pull_image(req: ImagePull, core: Core, caller: Caller,
                     accept: Annotated[str | None, Header()] = None) -> Image | Response:
    """Pull an image (a tag is looked up anew) and return it once cached. With
    `Accept: text/event-stream`, answer at once with its progress as Server-Sent Events:
    `resolving`, `resolved` (layers and sizes), `progress` (bytes per layer),
    `unpacking`, then `done` (the image) or `error`. Leaving does not stop the pull."""
    if accept and "text/event-stream" in accept:
        pull = core.sessions.images.start_pull(req.image, caller.tenant)

        async def sse() -> AsyncIterator[ServerSentEvent]:
            async for name, data in pull.watch():
                if name == "error" and isinstance(pull.failure, ServiceError):
                    data = {"error": {**data["error"], "status": status_for(pull.failure)}}
                if name != "ping":
                    yield ServerSentEvent(event=name, data=json.dumps(data))

        return sse_response(core, caller, sse())
    return await core.sessions.images.pull(req.image, caller.tenant)


@router.post("/import", status_code=201, response_model=Image)
async def import_image(core: Core, caller: Caller, request: Request,
                       name: Annotated[str | None, Query(
                           max_length=512, json_schema_extra={
                               **CACHED_IMAGE_SCHEMA, "type": "string", "maxLength": 512})] = None,
                       ) -> Image:
    """Load an image from a `docker save` tarball or an OCI archive sent as the raw
    body (streamed; no registry involved; admin keys). `name` tags it; else the
    archive's own tag."""
    return await core.sessions.images.import_archive(caller, request.stream(), name)


@router.get("", response_model=ImageList)
async def list_images(core: Core, caller: Caller) -> ImageList:
    """Cached images, most recently used first, with the cache's size and cap."""
    return core.sessions.images.list()


@router.post("/prune", response_model=PruneResult)
async def prune_images(core: Core, caller: Caller, req: ImagePrune | None = None) -> PruneResult:
    """Delete unused images (admins): see the body's fields."""
    return await core.sessions.images.prune(caller, req or ImagePrune())


@router.get("/{name:path}", response_model=Image)
async def get_image(name: CachedName, core: Core, caller: Caller) -> Image:
    """One cached image, by reference or `sha256:` digest."""
    return core.sessions.images.get(name)


@router.delete("/{name:path}", response_model=Image)
async def delete_image(name: CachedName, core: Core, caller: Caller) -> Image:
    """Untag a reference (the image goes with its last one) or delete by digest
    (admins); 409 `image_in_use` while a sandbox runs on it."""
    return await core.sessions.images.delete(caller, name)
