"""`images import`: an image from a `docker save` tarball or an OCI archive, no registry.

The upload is written to the cache's staging area and handed to the cache's uid; skopeo
(Debian's, well kept, and the reference for these formats and their variants) converts
it to an OCI layout as that uid. The layout's manifest, config and layers are then read
like a registry's: each blob verified against its digest before the unpacker sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chaser.errors import PayloadTooLarge, Unprocessable
from chaser.images import reference
from chaser.images.registry import LAYER_TYPES, Descriptor
from chaser.images.store import CachedImage, ImageStore

MAX_DOCUMENT = 4 * 1024 * 1024
MAX_ARCHIVE_ENTRIES = 20_000
IMPORT_TIMEOUT_S = 1800


async def import_archive(store: ImageStore, chunks: AsyncIterator[bytes],
                         name: str | None) -> CachedImage:
    """Import the archive streamed in `chunks` (tagged `name`, else as the archive says)."""
    work = store.dir / "staging" / ("import-" + secrets.token_hex(8))
    work.mkdir(mode=0o700)
    store.owner.chown_new(work)
    upload = work / "archive.tar"
    try:
        await _receive(chunks, upload, store.limits.max_image_bytes)
        store.owner.chown_new(upload)
        kind, tags = await asyncio.to_thread(_inspect, upload)
        name = name or next(iter(tags), None)
        refs = [str(reference.parse(name))] if name else []
        layout = work / "layout"
        rc, _, err = await store.owner.run(
            ["skopeo", "--insecure-policy", "copy", "--quiet", f"{kind}:{upload}",
             f"oci:{layout}:imported"], timeout=IMPORT_TIMEOUT_S, tmpdir=work)
        if rc != 0:
            why = err.decode(errors="replace").strip().splitlines()[-1:] or ["unreadable"]
            raise Unprocessable(f"the archive is not a usable image ({why[0][:500]})",
                                "image_rejected")
        digest, config, layers = await asyncio.to_thread(_read_layout, layout)
        label = name or f"archive {digest[:19]}"
        image = await store.unpack(digest, config, layers, refs, label)
        await store.fit(image)  # the cache's cap holds for imports as for pulls
        for ref in refs:  # already cached under another name: the new one points at it too
            store.tag(image, ref)
        return image
    finally:
        await store.owner.remove_tree(work)


async def _receive(chunks: AsyncIterator[bytes], path: Path, limit: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the archive is larger than this server's limit of "
                                      f"{limit >> 20} MiB per image", "image_too_large")
            await asyncio.to_thread(out.write, chunk)
    if size == 0:
        raise Unprocessable("the archive is empty: send a `docker save` tarball or an OCI "
                            "archive as the request body", "image_rejected")


def _inspect(path: Path) -> tuple[str, list[str]]:
    """The archive's kind for skopeo and the tags it carries (read, never extracted)."""
    try:
        with tarfile.open(path) as tar:
            names: dict[str, tarfile.TarInfo] = {}
            for seen, member in enumerate(tar):  # an archive is a few files per layer
                if seen >= MAX_ARCHIVE_ENTRIES:
                    raise Unprocessable(f"the archive has more than {MAX_ARCHIVE_ENTRIES} "
                                        "entries: not an image archive", "image_rejected")
                names[member.name.lstrip("./")] = member
            if "manifest.json" in names and "oci-layout" not in names:
                return "docker-archive", _docker_tags(tar, names["manifest.json"])
            if "oci-layout" in names and "index.json" in names:
                return "oci-archive", _oci_tags(tar, names["index.json"])
    except (tarfile.TarError, OSError, EOFError) as e:
        raise Unprocessable(f"the archive is not a tar file ({e})", "image_rejected") from None
    raise Unprocessable("the archive is neither a `docker save` tarball (manifest.json) nor "
                        "an OCI archive (oci-layout, index.json)", "image_rejected")


def _document(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    f = tar.extractfile(member)
    if f is None or member.size > MAX_DOCUMENT:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(f.read())
    return None


def _docker_tags(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[str]:
    data = _document(tar, member)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return [str(t) for t in data[0].get("RepoTags") or [] if _valid(str(t))]
    return []


def _oci_tags(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[str]:
    data = _document(tar, member)
    tags = []
    for m in (data.get("manifests") or [] if isinstance(data, dict) else []):
        ann = m.get("annotations") if isinstance(m, dict) else None
        name = (ann or {}).get("io.containerd.image.name") or (ann or {}).get(
            "org.opencontainers.image.ref.name")
        if isinstance(name, str) and "/" in name and _valid(name):
            tags.append(name)  # a bare tag ("latest") names no repository: not a name
    return tags


def _valid(name: str) -> bool:
    try:
        reference.parse(name)
    except Exception:  # noqa: BLE001 - an archive's own tag is a hint, not a requirement
        return False
    return True


def _read_layout(layout: Path) -> tuple[str, dict[str, Any], list[tuple[Descriptor, Path]]]:
    """The manifest digest, config and verified layer files of a one-image OCI layout."""
    index = _json(layout / "index.json", None)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests or not isinstance(manifests[0], dict):
        raise Unprocessable("the archive holds no image manifest", "image_rejected")
    digest = str(manifests[0].get("digest"))
    manifest = _json(_blob(layout, digest), digest)
    config_desc = manifest.get("config") or {}
    config = _json(_blob(layout, str(config_desc.get("digest"))), str(config_desc.get("digest")))
    layers = []
    for d in manifest.get("layers") or []:
        desc = Descriptor(str(d.get("mediaType")), str(d.get("digest")), int(d.get("size", -1)))
        if desc.media_type not in LAYER_TYPES:
            raise Unprocessable(f"layer {desc.digest[:19]} has media type {desc.media_type!r}, "
                                "which Chaser cannot unpack", "image_rejected")
        path = _blob(layout, desc.digest)
        _verify(path, desc.digest)
        layers.append((desc, path))
    return digest, config, layers


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise Unprocessable(f"the archive names a blob by {digest[:80]!r}", "image_rejected")
    return layout / "blobs" / "sha256" / hexdigest


def _json(path: Path, digest: str | None) -> dict[str, Any]:
    with _open(path) as f:
        data = f.read(MAX_DOCUMENT + 1)
    if digest and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise Unprocessable(f"blob {digest[:19]} of the archive does not match its digest",
                            "image_rejected")
    with contextlib.suppress(ValueError):
        value = json.loads(data)
        if isinstance(value, dict):
            return value
    raise Unprocessable(f"{path.name} of the archive is not a JSON object", "image_rejected")


def _verify(path: Path, digest: str) -> None:
    h = hashlib.sha256()
    with _open(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if "sha256:" + h.hexdigest() != digest:
        raise Unprocessable(f"layer {digest[:19]} of the archive does not match its digest",
                            "image_rejected")


def _open(path: Path) -> Any:
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError:
        raise Unprocessable(f"the archive's layout lacks {path.name}", "image_rejected") from None

