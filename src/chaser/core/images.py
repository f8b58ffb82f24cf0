"""Which root a sandbox runs on: the built-in `default`, or an OCI image pulled on first use.

The core asks for an image by the name a request gave; it gets back what the runtime
needs (the unpacked root) and what a command honours of the image's config (its `Env`
under the request's, its `WorkingDir` when no cwd is given). A sandbox holds its image
for as long as it runs, so the image cannot be deleted under it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from chaser.core.keys import Principal
from chaser.errors import BadRequest, Forbidden, ImageNotFound, Unavailable
from chaser.images import archive, reference
from chaser.images.pulls import Pull
from chaser.images.store import DEFAULT_IMAGE, CachedImage, ImageStore
from chaser.models import Image, ImageList, ImagePrune, PruneResult


@dataclass(frozen=True)
class ImageChoice:
    """The image a sandbox runs on; `cached` is None for the built-in default."""

    name: str = DEFAULT_IMAGE
    cached: CachedImage | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None

    @property
    def rootfs(self) -> Path | None:
        return self.cached.root if self.cached is not None else None

    @property
    def key(self) -> str:
        """What tells two images apart (a warm sandbox is only reused on the same one)."""
        return self.cached.digest if self.cached is not None else DEFAULT_IMAGE


DEFAULT_CHOICE = ImageChoice()


def same_image(a: str | None, b: str | None) -> bool:
    """Whether two names a user gave mean the same image (`node:20` is
    `docker.io/library/node:20`)."""
    return normalise(a) == normalise(b)


def normalise(name: str | None) -> str:
    if not name or name == DEFAULT_IMAGE:
        return DEFAULT_IMAGE
    return str(reference.parse(name))


class Images:
    """The core's door to the image cache (None: only the default image exists)."""

    def __init__(self, store: ImageStore | None) -> None:
        self.store = store

    async def choose(self, name: str | None, tenant: str) -> ImageChoice:
        """The image `name` names, pulled now if needed; ImageNotFound, BadRequest
        (`invalid_image`) or the pull's error otherwise."""
        if not name or name == DEFAULT_IMAGE:
            return DEFAULT_CHOICE
        if self.store is None:
            reference.parse(name)  # a bad reference is still a bad request
            raise ImageNotFound(f"image {name!r} is not available: this server runs only the "
                                f"built-in {DEFAULT_IMAGE!r} image")
        image = await self.store.ensure(name, tenant)
        return ImageChoice(name, image, dict(image.config.env), image.config.working_dir)

    def hold(self, choice: ImageChoice, tenant: str) -> None:
        """A sandbox of `tenant` starts on `choice`'s image: it stays until `release`."""
        if self.store is not None and choice.cached is not None:
            self.store.acquire(choice.cached, tenant)

    def release(self, choice: ImageChoice, tenant: str) -> None:
        if self.store is not None and choice.cached is not None:
            self.store.release(choice.cached, tenant)

    # -- the images API -----------------------------------------------------------------

    def _store(self) -> ImageStore:
        if self.store is None:
            raise Unavailable("this server has no image cache (only the built-in 'default' "
                              "image)", "images_unavailable")
        return self.store

    def model(self, image: CachedImage) -> Image:
        return Image(**self._store().info(image))

    def list(self) -> ImageList:
        store = self._store()
        images = sorted(store.images.values(), key=lambda i: i.last_used_at, reverse=True)
        return ImageList(images=[self.model(i) for i in images], cache_bytes=store.cache_bytes,
                         cache_limit_bytes=store.limits.cache_bytes)

    def get(self, name: str) -> Image:
        return self.model(self._store().get(_checked(name)))

    async def pull(self, name: str, tenant: str) -> Image:
        """Pull (again: a tag is looked up anew) and wait for the image."""
        return self.model(await self._store().pull(_checked(name), tenant))

    def start_pull(self, name: str, tenant: str) -> Pull:
        """Start (or join) a pull, to watch: `Pull.watch()` gives its progress as events
        (`resolving`, `resolved`, `progress`, `unpacking`, then `done` with the image or
        `error`); the pull goes on if the watcher leaves."""
        return self._store().start_pull(_checked(name), tenant)

    async def delete(self, caller: Principal, name: str) -> Image:
        _admin(caller, "delete images")
        return self.model(await self._store().delete(_checked(name)))

    async def prune(self, caller: Principal, req: ImagePrune) -> PruneResult:
        _admin(caller, "prune images")
        store = self._store()
        before = store.cache_bytes
        removed = await store.prune(
            everything=req.all, older_than_s=req.older_than_s,
            max_total_bytes=None if req.max_total_mb is None else req.max_total_mb << 20)
        return PruneResult(deleted=[self.model(i) for i in removed],
                           freed_bytes=before - store.cache_bytes, cache_bytes=store.cache_bytes)

    async def import_archive(self, caller: Principal, chunks: AsyncIterator[bytes],
                             name: str | None) -> Image:
        """Load a `docker save` tarball or an OCI archive, streamed in `chunks` (admins:
        an archive may say it is `node:20`, and the cache is every tenant's)."""
        _admin(caller, "import images")
        if name is not None:
            name = _checked(name)
        return self.model(await archive.import_archive(self._store(), chunks, name))


def _checked(name: str) -> str:
    if name == DEFAULT_IMAGE:
        raise BadRequest("the built-in 'default' image is not in the cache; it cannot be "
                         "pulled, imported or deleted", "invalid_image")
    if not name.startswith("sha256:"):
        reference.parse(name)
    return name


def _admin(caller: Principal, what: str) -> None:
    if not caller.admin:
        raise Forbidden(f"only admin keys may {what}: the image cache is shared by every "
                        "tenant")
