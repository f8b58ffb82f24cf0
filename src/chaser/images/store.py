"""The image cache: pulled images, unpacked once, shared read-only by every sandbox.

Layout under `<data dir>/images` (the directory is 0711: sandboxes' uids reach a root
they are given, and list nothing):

    roots/<manifest digest hex>/image.json   what the image is (references, config, size)
    roots/<manifest digest hex>/rootfs/      the unpacked root, owned by the cache's uid
    staging/<random>/                        a pull being unpacked (swept at start)
    blobs/                                   layers while they download (root only)
    trash/<random>/                          an image being deleted

An image appears in `roots/` by one rename once complete, so a pull that fails or is
interrupted leaves nothing half-unpacked, and nothing uses it. Concurrent first uses of
one reference (or of two references to one digest) share one pull. Images in use by a
sandbox cannot be deleted; the cache's size is capped, least recently used images
making room first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaser.errors import (
    BadGateway,
    Conflict,
    ImageNotFound,
    OverLimit,
    PayloadTooLarge,
    ServiceError,
    StorageFull,
    Unprocessable,
)
from chaser.images import reference
from chaser.images.owner import Owner
from chaser.images.pulls import Pull
from chaser.images.registry import Descriptor, RegistryClient, Resolved
from chaser.tasks import TaskSet

log = logging.getLogger("chaser.images")

DEFAULT_IMAGE = "default"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEX = re.compile(r"[0-9a-f]{64}")
PARALLEL_LAYERS = 4
SAVE_LAST_USED_EVERY_S = 60.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ImageConfig:
    """What of an image's config a command honours (see docs/images.md)."""

    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    @classmethod
    def from_oci(cls, config: dict[str, Any]) -> ImageConfig:
        c = config.get("config") if isinstance(config.get("config"), dict) else {}
        assert isinstance(c, dict)
        env: dict[str, str] = {}
        for entry in c.get("Env") or []:
            name, sep, value = str(entry).partition("=")
            if sep and _ENV_NAME.fullmatch(name) and "\0" not in value:
                env[name] = value
        workdir = c.get("WorkingDir")
        return cls(env=env,
                   working_dir=workdir if isinstance(workdir, str) and workdir.startswith("/")
                   else None,
                   user=str(c["User"]) if c.get("User") else None,
                   entrypoint=[str(a) for a in c.get("Entrypoint") or []],
                   cmd=[str(a) for a in c.get("Cmd") or []])


@dataclass
class CachedImage:
    """An image in the cache."""

    digest: str
    references: list[str]
    size: int
    layers: int
    config: ImageConfig
    pulled_at: str
    last_used_at: str
    root: Path

    def record(self) -> dict[str, Any]:
        return {"digest": self.digest, "references": self.references, "size": self.size,
                "layers": self.layers, "config": self.config.__dict__,
                "pulled_at": self.pulled_at, "last_used_at": self.last_used_at}


@dataclass(frozen=True)
class ImageLimits:
    """What pulls may take (the server's settings)."""

    max_image_bytes: int = 8 << 30
    cache_bytes: int = 64 << 30
    pull_timeout_s: float = 1800.0
    max_entries: int = 500_000
    concurrent_pulls: int = 3
    pulls_per_tenant: int = 2
    tenant_share: float = 0.25  # of the cache one tenant's sandboxes may hold in use


class ImageStore:
    """Pulled images: find, pull (shared), use, delete and prune."""

    def __init__(self, directory: Path, owner: Owner, registry: RegistryClient,
                 limits: ImageLimits, prepare: dict[str, Any]) -> None:
        self.dir = directory
        self.owner = owner
        self.registry = registry
        self.limits = limits
        self.prepare = prepare  # mount points and /etc files every root gets (the runtime's)
        self.images: dict[str, CachedImage] = {}  # by manifest digest
        self.pulls: dict[str, Pull] = {}  # by normalised reference
        self._users: Counter[str] = Counter()  # sandboxes running on each image
        self._held: dict[str, Counter[str]] = {}  # tenant -> its sandboxes on each image
        self._saved: dict[str, float] = {}  # when each image's last use was last written
        self._tenant_pulls: Counter[str] = Counter()
        self._by_digest: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(limits.concurrent_pulls)
        self._tasks = TaskSet("images")
        # Told of every image removed (the runtime drops warm sandboxes made on it).
        self.on_drop: Callable[[Path], None] | None = None

    # -- opening ------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the cache's index; sweep what an interrupted pull or delete left."""
        for sub, mode in (("", 0o711), ("roots", 0o711), ("staging", 0o711), ("blobs", 0o700),
                          ("trash", 0o700)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir / sub, mode)
        for sub in ("staging", "trash"):
            for left in (self.dir / sub).iterdir():
                await self._remove_dir(left)
        for left in (self.dir / "blobs").iterdir():
            left.unlink(missing_ok=True)
        for entry in (self.dir / "roots").iterdir():
            image = await asyncio.to_thread(_load, entry)
            if image is None:
                log.warning("image cache: %s is incomplete; removing it", entry.name)
                await self._remove_dir(entry)
            else:
                self.images[image.digest] = image

    async def close(self) -> None:
        await self._tasks.close()
        await self.registry.close()
        for image in self.images.values():
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_save, image.root.parent, image)

    # -- finding ------------------------------------------------------------------------

    @property
    def cache_bytes(self) -> int:
        return sum(i.size for i in self.images.values())

    def in_use(self, image: CachedImage) -> int:
        return self._users[image.digest]

    def find(self, text: str) -> CachedImage | None:
        """The cached image `text` names (a reference, or a full `sha256:` digest)."""
        if text.startswith("sha256:"):
            return self.images.get(text)
        ref = reference.parse(text)
        if ref.digest and ref.digest in self.images:
            return self.images[ref.digest]
        wanted = str(ref)
        return next((i for i in self.images.values() if wanted in i.references), None)

    def get(self, text: str) -> CachedImage:
        image = self.find(text)
        if image is None:
            raise ImageNotFound(f"image {text!r} is not in this server's cache (pull it first)")
        return image

    async def ensure(self, text: str, tenant: str) -> CachedImage:
        """The image `text` names, pulled now if the cache does not have it (a tag
        already cached is used as it is, as Docker's default pull policy does)."""
        return self.find(text) or await self.pull(text, tenant)

    # -- pulling ------------------------------------------------------------------------

    def start_pull(self, text: str, tenant: str) -> Pull:
        """Start pulling `text` (or join the pull of it already going)."""
        ref = reference.parse(text)
        key = str(ref)
        pull = self.pulls.get(key)
        if pull is not None and not pull.finished:
            return pull
        if self._tenant_pulls[tenant] >= self.limits.pulls_per_tenant:
            raise OverLimit(f"this key already has {self._tenant_pulls[tenant]} image pulls "
                            "running; wait for one to finish", "tenant_limit", retry_after=5)
        share = int(self.limits.cache_bytes * self.limits.tenant_share)
        if self.held_bytes(tenant) >= share:
            raise OverLimit(f"this key's sandboxes hold {self.held_bytes(tenant) >> 20} MiB of "
                            f"images in use, its share of the image cache ({share >> 20} MiB); "
                            "stop sessions on other images to pull another", "tenant_limit",
                            retry_after=60)
        pull = Pull(key)
        self.pulls[key] = pull
        self._tenant_pulls[tenant] += 1

        async def run() -> CachedImage:
            try:
                image = await self._pull(ref, pull)
            except ServiceError as e:
                pull.failure = e
                pull.phase("error", error={"code": e.code, "message": e.message})
                raise
            except Exception:
                log.exception("pull of %s failed", key)
                failure = BadGateway(f"image {key}: pull failed (the server's log says why)",
                                     "image_pull_failed")
                pull.failure = failure
                pull.phase("error", error={"code": failure.code, "message": failure.message})
                raise failure from None
            finally:
                self._tenant_pulls[tenant] -= 1
                if self.pulls.get(key) is pull:
                    del self.pulls[key]
            pull.phase("done", image=self.info(image))
            return image

        pull.task = self._tasks.spawn(run())
        pull.task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
        return pull

    async def pull(self, text: str, tenant: str) -> CachedImage:
        """Pull `text` (sharing a pull already going) and return the cached image."""
        pull = self.start_pull(text, tenant)
        assert pull.task is not None
        result: CachedImage = await asyncio.shield(pull.task)
        return result

    async def _pull(self, ref: reference.ImageRef, pull: Pull) -> CachedImage:
        try:
            async with asyncio.timeout(self.limits.pull_timeout_s):
                pull.phase("resolving", image=str(ref))
                resolved = await self.registry.resolve(ref)
                pull.layers({d.digest: d.size for d in resolved.layers})
                pull.phase("resolved", digest=resolved.digest, size=resolved.size,
                           layers=[{"digest": d.digest, "size": d.size} for d in resolved.layers])
                lock = self._by_digest.setdefault(resolved.digest, asyncio.Lock())
                async with lock, self._slots:
                    image = self.images.get(resolved.digest)
                    if image is None:
                        image = await self._download_and_unpack(resolved, pull)
                    self.tag(image, str(ref))
                return image
        except TimeoutError:
            raise BadGateway(f"image {ref}: the pull took longer than this server's "
                             f"{self.limits.pull_timeout_s:g} s limit", "image_pull_failed") from None

    async def _download_and_unpack(self, resolved: Resolved, pull: Pull) -> CachedImage:
        ref = resolved.ref
        if resolved.size > self.limits.max_image_bytes:
            raise PayloadTooLarge(f"image {ref} is {resolved.size >> 20} MiB compressed, over "
                                  f"this server's limit of {self.limits.max_image_bytes >> 20} "
                                  "MiB per image", "image_too_large")
        await self._make_room(resolved.size * 2)
        tag = secrets.token_hex(6)
        paths = [self.dir / "blobs" / f"{tag}-{i}" for i in range(len(resolved.layers))]
        gate = asyncio.Semaphore(PARALLEL_LAYERS)

        async def fetch(blob: Descriptor, path: Path) -> None:
            async with gate:
                await self.registry.fetch(resolved, blob, path,
                                          lambda n: pull.got(blob.digest, n),
                                          self.limits.max_image_bytes)

        try:
            await asyncio.gather(*(fetch(b, p) for b, p in zip(resolved.layers, paths)))
            pull.phase("unpacking")
            image = await self.unpack(resolved.digest, resolved.config,
                                      list(zip(resolved.layers, paths)), [str(ref)], str(ref))
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
        await self.fit(image)
        return image

    async def fit(self, image: CachedImage) -> None:
        """Keep the cache under its cap now that `image`'s real size is known: evict
        unused images, least recently used first; `image` itself goes (507) when what is
        in use leaves no room for it."""
        for other in sorted(self.images.values(), key=lambda i: i.last_used_at):
            if self.cache_bytes <= self.limits.cache_bytes:
                return
            if other is not image and not self._users[other.digest]:
                await self._drop(other)
        if self.cache_bytes > self.limits.cache_bytes:
            await self._drop(image)
            raise StorageFull(f"the image cache is full: images in use hold "
                              f"{(self.cache_bytes) >> 20} MiB of {self.limits.cache_bytes >> 20} "
                              f"MiB, and {image.size >> 20} MiB more do not fit; stop sandboxes "
                              "or ask an admin to prune", "image_cache_full")

    async def unpack(self, digest: str, config: dict[str, Any],
                     layers: list[tuple[Descriptor, Path]], references: list[str],
                     name: str) -> CachedImage:
        """Unpack verified layer blobs into the cache as image `digest` (by the owner's
        helper), and index it."""
        existing = self.images.get(digest)
        if existing is not None:
            return existing
        staging = self.dir / "staging" / secrets.token_hex(8)
        staging.mkdir()
        os.chmod(staging, 0o711)  # (the server's umask is 077)
        rootfs = staging / "rootfs"
        rootfs.mkdir(mode=0o700)
        self.owner.chown_new(rootfs)
        fds: list[int] = []
        try:
            fds.append(os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))
            plan: dict[str, Any] = {"root_fd": fds[0], "max_bytes": self.limits.max_image_bytes,
                                    "max_entries": self.limits.max_entries, "layers": [],
                                    **self.prepare}
            for blob, path in layers:
                fds.append(os.open(path, os.O_RDONLY))
                plan["layers"].append({"fd": fds[-1], "digest": blob.digest})
            rc, out, err = await self.owner.unpack(json.dumps(plan).encode(), tuple(fds),
                                                   self.limits.pull_timeout_s)
            result = _last_json(out)
            if rc != 0 or not result.get("ok"):
                _raise_unpack_error(name, result, err)
            image = CachedImage(digest=digest, references=[], size=int(result.get("bytes", 0)),
                                layers=len(layers), config=ImageConfig.from_oci(config),
                                pulled_at=_now(), last_used_at=_now(),
                                root=self.dir / "roots" / digest.removeprefix("sha256:") / "rootfs")
            for r in references:
                self.tag(image, r, save=False)
            await asyncio.to_thread(_save, staging, image)
            os.rename(staging, image.root.parent)
        except BaseException:
            await self._remove_dir(staging)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self.images[digest] = image
        return image

    def tag(self, image: CachedImage, ref: str, save: bool = True) -> None:
        """Point `ref` at `image` (a tag moves off the image it named before). A
        reference by an index's digest names the manifest the index resolved to here."""
        for other in self.images.values():
            if other is not image and ref in other.references:
                other.references.remove(ref)
                if save:
                    _save(other.root.parent, other)
        if ref not in image.references:
            image.references.append(ref)
            if save:
                _save(image.root.parent, image)

    # -- using --------------------------------------------------------------------------

    def held_bytes(self, tenant: str) -> int:
        """What the images a tenant's sandboxes run on take in the cache."""
        return sum(self.images[d].size for d in self._held.get(tenant, ()) if d in self.images)

    def acquire(self, image: CachedImage, tenant: str) -> None:
        """A sandbox of `tenant` starts on `image`: it cannot be deleted until released.
        A tenant's sandboxes may hold images up to its share of the cache (its first
        image always, however large: it must be able to run it)."""
        held = self._held.get(tenant)
        share = int(self.limits.cache_bytes * self.limits.tenant_share)
        if held and image.digest not in held and self.held_bytes(tenant) + image.size > share:
            raise OverLimit(f"this key's sandboxes run on images taking "
                            f"{self.held_bytes(tenant) >> 20} MiB of the image cache; with "
                            f"{image.size >> 20} MiB more they would pass its share "
                            f"({share >> 20} MiB): stop sessions on other images first",
                            "tenant_limit", retry_after=60)
        self._users[image.digest] += 1
        self._held.setdefault(tenant, Counter())[image.digest] += 1
        image.last_used_at = _now()

    def release(self, image: CachedImage, tenant: str) -> None:
        held = self._held.get(tenant)
        if held is not None:
            held[image.digest] -= 1
            if held[image.digest] <= 0:
                del held[image.digest]
            if not held:
                del self._held[tenant]
        self._users[image.digest] -= 1
        if self._users[image.digest] <= 0:
            del self._users[image.digest]
            # When it was last used, for pruning after a restart: a write on the event
            # loop, so at most once a minute per image (close() saves the rest).
            now = time.monotonic()
            if now - self._saved.get(image.digest, 0.0) >= SAVE_LAST_USED_EVERY_S:
                self._saved[image.digest] = now
                with contextlib.suppress(OSError):
                    _save(image.root.parent, image)

    # -- deleting -----------------------------------------------------------------------

    async def delete(self, text: str) -> CachedImage:
        """Untag `text`; the image goes when no reference is left (or when named by
        digest). Refused while a sandbox uses it."""
        image = self.get(text)
        by_digest = text.startswith("sha256:") or "@sha256:" in text
        if not by_digest and len(image.references) > 1:
            image.references.remove(str(reference.parse(text)))
            await asyncio.to_thread(_save, image.root.parent, image)
            return image
        if self._users[image.digest]:
            raise Conflict(f"image {text} is used by {self._users[image.digest]} running "
                           "sandboxes; stop them first", "image_in_use")
        await self._drop(image)
        return image

    async def prune(self, *, everything: bool = False, older_than_s: float | None = None,
                    max_total_bytes: int | None = None) -> list[CachedImage]:
        """Delete unused images: untagged ones, or all (`everything`), or those not used
        for `older_than_s`; then the least recently used until the cache fits
        `max_total_bytes`."""
        now = datetime.now(UTC)
        removed = []
        for image in sorted(self.images.values(), key=lambda i: i.last_used_at):
            if self._users[image.digest]:
                continue
            idle = (now - datetime.fromisoformat(image.last_used_at.replace("Z", "+00:00")))
            if (everything or not image.references
                    or (older_than_s is not None and idle.total_seconds() >= older_than_s)):
                await self._drop(image)
                removed.append(image)
        if max_total_bytes is not None:
            removed += await self._evict(max_total_bytes)
        return removed

    async def _make_room(self, need: int) -> None:
        """Evict unused images, least recently used first, until `need` more bytes fit."""
        await self._evict(self.limits.cache_bytes - need)
        if self.cache_bytes + need > self.limits.cache_bytes:
            raise StorageFull(f"the image cache is full ({self.cache_bytes >> 20} MiB of "
                              f"{self.limits.cache_bytes >> 20} MiB, held by images in use); "
                              "stop sandboxes or ask an admin to prune", "image_cache_full")

    async def _evict(self, target: int) -> list[CachedImage]:
        removed = []
        for image in sorted(self.images.values(), key=lambda i: i.last_used_at):
            if self.cache_bytes <= target:
                break
            if not self._users[image.digest]:
                await self._drop(image)
                removed.append(image)
        return removed

    async def _drop(self, image: CachedImage) -> None:
        self.images.pop(image.digest, None)
        if self.on_drop is not None:
            self.on_drop(image.root)
        trash = self.dir / "trash" / secrets.token_hex(8)
        os.rename(image.root.parent, trash)
        await self._remove_dir(trash)

    async def _remove_dir(self, path: Path) -> None:
        """An image's directory: its root as the owner (never as root), then the rest."""
        await self.owner.remove_tree(path / "rootfs")
        await asyncio.to_thread(shutil.rmtree, path, True)

    # -- showing ------------------------------------------------------------------------

    def info(self, image: CachedImage) -> dict[str, Any]:
        """The API's view of an image."""
        return {"reference": image.references[0] if image.references else None,
                **image.record(), "in_use": self._users[image.digest]}


def _save(directory: Path, image: CachedImage) -> None:
    tmp = directory / "image.json.tmp"
    tmp.write_text(json.dumps(image.record()))
    os.replace(tmp, directory / "image.json")


def _load(directory: Path) -> CachedImage | None:
    try:
        data = json.loads((directory / "image.json").read_text())
        if not _HEX.fullmatch(directory.name) or data["digest"] != "sha256:" + directory.name:
            return None
        return CachedImage(digest=data["digest"], references=list(data["references"]),
                           size=int(data["size"]), layers=int(data["layers"]),
                           config=ImageConfig(**data["config"]), pulled_at=data["pulled_at"],
                           last_used_at=data["last_used_at"], root=directory / "rootfs")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_json(out: bytes) -> dict[str, Any]:
    for line in reversed(out.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return {}


def _raise_unpack_error(name: str, result: dict[str, Any], stderr: bytes) -> None:
    message = str(result.get("error") or "")
    if result.get("code") == "storage_full":
        raise StorageFull(f"image {name}: the data dir's disk is full while unpacking "
                          f"({message})", "storage_full")
    if result.get("code") == "image_rejected":
        raise Unprocessable(f"image {name} was refused: {message}", "image_rejected")
    log.warning("unpacking %s failed: %s %s", name, message,
                stderr.decode(errors="replace")[-2000:])
    raise Unprocessable(f"image {name} could not be unpacked: {message or 'the unpacker failed'}"
                        " (the server's log has more)", "image_rejected")
