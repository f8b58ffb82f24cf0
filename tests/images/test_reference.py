"""Image references are normalised as Docker does, and bad ones refused with a reason."""

from __future__ import annotations

import pytest

from chaser.errors import BadRequest
from chaser.images.reference import ImageRef, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "canonical"), [
    ("node:20-bookworm", "docker.io/library/node:20-bookworm"),  # the product document's
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("org/app", "docker.io/org/app:latest"),
    ("a/b/c:v1.2_x-y", "docker.io/a/b/c:v1.2_x-y"),
    ("docker.io/node", "docker.io/library/node:latest"),
    ("index.docker.io/library/node:20", "docker.io/library/node:20"),
    ("ghcr.io/org/app:tag", "ghcr.io/org/app:tag"),
    ("registry.local:5000/x@" + DIGEST, "registry.local:5000/x@" + DIGEST),
    ("localhost/x", "localhost/x:latest"),
    ("localhost:5000/team/x:1", "localhost:5000/team/x:1"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("My-Registry.example:443/a__b/c-d.e", "My-Registry.example:443/a__b/c-d.e:latest"),
    ("ubuntu@" + DIGEST, "docker.io/library/ubuntu@" + DIGEST),
    ("ubuntu:22.04@" + DIGEST, "docker.io/library/ubuntu:22.04@" + DIGEST),
])
def test_references_are_normalised_as_docker_does(text: str, canonical: str) -> None:
    ref = parse(text)
    assert str(ref) == canonical
    assert parse(str(ref)) == ref  # the canonical form parses to itself


def test_the_parts() -> None:
    assert parse("node:20-bookworm") == ImageRef("docker.io", "library/node", "20-bookworm")
    ref = parse("registry.local:5000/x@" + DIGEST)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "registry.local:5000", "x", None, DIGEST)
    assert ref.name == "registry.local:5000/x"


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    (" node", "spaces"),
    ("node ", "spaces"),
    ("Node", "lowercase"),
    ("Org/app", "lowercase"),
    ("ghcr.io/Org/app", "lowercase"),
    ("node:", "expected"),
    ("node:-x", "expected"),
    (":tag", "expected"),
    ("node@sha256:abc", "expected"),
    ("node@sha256:" + "AB" * 32, "sha256 digest"),
    ("a//b", "expected"),
    ("a/../b", "expected"),
    ("/etc/passwd", "expected"),
    ("x/" + "a" * 300, "longer than"),
    ("node:" + "t" * 129, "expected"),
    ("node\x00", "expected"),
    ("node\n", "spaces"),
    ("https://ghcr.io/x", "expected"),
])
def test_bad_references_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse(text)
    assert e.value.code == "invalid_image" and why in e.value.message, e.value.message
