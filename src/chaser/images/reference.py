"""Image references, parsed and normalised as Docker does.

`node:20-bookworm` is `docker.io/library/node:20-bookworm`; `ghcr.io/org/app:tag` and
`registry.local:5000/x@sha256:...` name their registry. The grammar is the one of the
distribution project's `reference` package (what `docker pull` accepts); a reference
that does not match it is refused before anything touches the network or the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chaser.errors import BadRequest
from chaser.models import (
    IMAGE_COMPONENT,
    IMAGE_DIGEST,
    IMAGE_DOMAIN_PART,
    IMAGE_REF_MAX,
    IMAGE_TAG,
)

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
MAX_NAME = IMAGE_REF_MAX  # a whole reference as written

# The same grammar is the OpenAPI schema's pattern (chaser.models.IMAGE_PATTERN).
_COMPONENT = IMAGE_COMPONENT
_DOMAIN_PART = IMAGE_DOMAIN_PART
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = IMAGE_TAG
_DIGEST = IMAGE_DIGEST
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    """A normalised reference: registry host, repository path, and a tag or a digest
    (both when the user gave both: the digest is what is pulled)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, what the image is stored and shown under."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> ImageRef:
    """The normalised reference `text` names; BadRequest (`invalid_image`) saying what is
    wrong with it otherwise."""
    m = _REFERENCE.fullmatch(text)
    if m is None:
        if text != text.strip() or not text:
            why = "it is empty or has spaces around it"
        elif _uppercase_path(text):
            why = "a repository name must be lowercase"
        else:
            why = "expected [registry[:port]/]name[:tag][@sha256:digest]"
        raise BadRequest(f"invalid image reference {text[:300]!r}: {why}", "invalid_image")
    domain, path = m["domain"], m["path"]
    if len(text) > MAX_NAME:
        raise BadRequest(f"invalid image reference {text[:300]!r}: it is longer than "
                         f"{MAX_NAME} characters", "invalid_image")
    # As Docker: a first part with no dot or port (and not localhost) is a path, on Docker Hub.
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"
                                   or domain.startswith("[")):
        domain, path = None, f"{domain}/{path}"
        if any(c.isupper() for c in path):
            raise BadRequest(f"invalid image reference {text[:300]!r}: a repository name "
                             "must be lowercase", "invalid_image")
    if domain is None or domain == "index.docker.io":
        domain = DEFAULT_REGISTRY
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    digest = m["digest"]
    if digest is not None and digest.startswith("sha256:") and not _SHA256.fullmatch(digest):
        raise BadRequest(f"invalid image reference {text[:300]!r}: a sha256 digest is 64 "
                         "lowercase hex digits", "invalid_image")
    tag = m["tag"] or (None if digest else DEFAULT_TAG)
    return ImageRef(domain, path, tag, digest)


def _uppercase_path(text: str) -> bool:
    """Whether the repository path (not the registry host, which may have capitals) does."""
    name = text.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    parts = [*head.split("/"), last.split(":", 1)[0]] if head else [last.split(":", 1)[0]]
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return any(c.isupper() for part in parts for c in part)
