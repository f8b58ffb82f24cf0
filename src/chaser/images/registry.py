"""A client of the registry v2 protocol (the OCI distribution spec): manifests and blobs.

It does what `docker pull` does on the wire, and no more: resolve a reference to a
manifest (an index or a manifest list resolved to this machine's platform), with the
anonymous bearer-token flow (or configured credentials), then fetch blobs, each verified
by its digest and size while it streams, so a lying registry costs a download and
nothing else. Docker Hub references try the configured mirrors first, as Docker's
`registry-mirrors` do. Plain HTTP is used only for loopback registries and for those an
admin lists as insecure.

Why a client of our own over httpx rather than skopeo or a library: pulls report
per-layer byte progress (the API's SSE and the CLI's bars), obey the server's size limit
and timeout while bytes arrive, stop at once when cancelled, and never start a
subprocess with request data; the protocol is a handful of GETs. skopeo (from Debian)
converts archives for `images import` (see `archive.py`). docs/images.md has the rest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaser.errors import (
    BadGateway,
    Forbidden,
    ImageNotFound,
    PayloadTooLarge,
    ServiceError,
    Unprocessable,
)
from chaser.images.reference import DEFAULT_REGISTRY, ImageRef

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # a manifest or a config; real ones are a few KiB
MAX_REDIRECTS = 5
DOCKER_HUB_HOST = "registry-1.docker.io"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

Progress = Callable[[int], None]  # bytes just received


def machine_platform() -> tuple[str, str]:
    """(os, architecture) as OCI names them, for this machine."""
    machine = platform.machine()
    return "linux", _ARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    """A blob a manifest points at: its media type, digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class RegistryConfig:
    """What the server's admin set about registries (never shown to tenants)."""

    mirrors: tuple[str, ...] = ()  # base URLs tried first for Docker Hub images
    insecure: frozenset[str] = frozenset()  # host[:port] reached over plain HTTP
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> user, pass
    allowed: frozenset[str] = frozenset()  # registries tenants may name; empty: any
    timeout_s: float = 60.0  # connecting and between bytes


@dataclass
class Endpoint:
    """One place an image can come from: a registry's base URL and the repository."""

    base_url: str
    host: str  # what credentials are looked up by
    repository: str
    token: str | None = None


@dataclass
class Resolved:
    """A reference resolved to one manifest for this platform."""

    ref: ImageRef
    digest: str  # the manifest's (what the image is stored under)
    config: dict[str, Any]
    config_digest: str
    layers: list[Descriptor]
    endpoint: Endpoint

    @property
    def size(self) -> int:
        return sum(d.size for d in self.layers)


class RegistryClient:
    """Resolves references and fetches blobs; one per server (it pools connections)."""

    def __init__(self, config: RegistryConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        timeout = httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 15.0))
        # Redirects are followed by hand (`_Get`), each target checked (`check_target`).
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport,
                                      trust_env=False, limits=httpx.Limits(max_connections=32))

    async def close(self) -> None:
        await self.http.aclose()

    def endpoints(self, ref: ImageRef) -> list[Endpoint]:
        """Where `ref` may be pulled from, in order: mirrors (Docker Hub only), then its own."""
        if self.config.allowed and ref.registry not in self.config.allowed:
            raise Forbidden(f"image {ref}: registry {ref.registry} is not one this server "
                            f"pulls from (allowed: {', '.join(sorted(self.config.allowed))})")
        found = []
        if ref.registry == DEFAULT_REGISTRY:
            for mirror in self.config.mirrors:
                url = mirror.rstrip("/")
                host = httpx.URL(url).netloc.decode()
                found.append(Endpoint(url, host, ref.repository))
            found.append(Endpoint(f"https://{DOCKER_HUB_HOST}", DEFAULT_REGISTRY, ref.repository))
        else:
            scheme = "http" if self.plain_http(ref.registry) else "https"
            found.append(Endpoint(f"{scheme}://{ref.registry}", ref.registry, ref.repository))
        return found

    def plain_http(self, host: str) -> bool:
        """Loopback registries and listed ones speak plain HTTP; every other needs TLS."""
        if host in self.config.insecure:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]")
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    async def resolve(self, ref: ImageRef) -> Resolved:
        """The manifest `ref` names for this platform, with its config; ImageNotFound when
        no registry has it, BadGateway when they fail or answer nonsense."""
        failure: ServiceError | None = None
        for endpoint in self.endpoints(ref):
            try:
                return await self._resolve_at(endpoint, ref)
            except (ImageNotFound, BadGateway) as e:
                # As Docker: a mirror that fails or lacks the image is skipped.
                if failure is None or isinstance(failure, ImageNotFound):
                    failure = e
        assert failure is not None
        raise failure

    async def _resolve_at(self, endpoint: Endpoint, ref: ImageRef) -> Resolved:
        wanted = ref.digest or ref.tag or "latest"
        body, media_type = await self._document(endpoint, ref, f"manifests/{wanted}", wanted,
                                                ACCEPT)
        digest = _sha256(body)
        if ref.digest and digest != ref.digest:
            raise BadGateway(f"image {ref}: the registry's manifest has digest {digest}, not "
                             "the one asked for", "image_pull_failed")
        manifest = _json_object(body, ref, "manifest")
        media_type = str(manifest.get("mediaType") or media_type)
        if media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            chosen = _choose_platform(manifest, ref)
            body, media_type = await self._document(endpoint, ref, f"manifests/{chosen}", chosen,
                                                    ACCEPT)
            digest = chosen
            manifest = _json_object(body, ref, "manifest")
        layers = [_descriptor(d, ref) for d in _list(manifest.get("layers"), ref, "layers")]
        for layer in layers:
            if layer.media_type not in LAYER_TYPES:
                raise Unprocessable(f"image {ref}: layer {layer.digest[:19]} has media type "
                                    f"{layer.media_type!r}, which Chaser cannot unpack "
                                    "(gzip or plain tar layers only)", "image_rejected")
        config_desc = _descriptor(manifest.get("config"), ref)
        config_body, _ = await self._document(endpoint, ref, f"blobs/{config_desc.digest}",
                                              config_desc.digest, "*/*")
        config = _json_object(config_body, ref, "config")
        return Resolved(ref, digest, config, config_desc.digest, layers, endpoint)

    async def _document(self, endpoint: Endpoint, ref: ImageRef, path: str, digest_or_tag: str,
                        accept: str) -> tuple[bytes, str]:
        """A small document (manifest, config), read whole; verified when named by digest."""
        async with self._get(endpoint, ref, path, accept) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise BadGateway(f"image {ref}: the registry sent a {path.split('/')[0][:-1]} "
                                     "larger than 4 MiB", "image_pull_failed")
        if _DIGEST.fullmatch(digest_or_tag) and _sha256(body) != digest_or_tag:
            raise BadGateway(f"image {ref}: {digest_or_tag[:19]} from the registry does not "
                             "match its digest", "image_pull_failed")
        return body, response.headers.get("content-type", "").split(";")[0].strip()

    async def fetch(self, resolved: Resolved, blob: Descriptor, dest: Path, progress: Progress,
                    limit: int) -> None:
        """Download `blob` to `dest`, verifying size and digest as it streams; `limit` is
        what the image may still take. A partial or wrong download leaves no file."""
        if blob.size > limit:
            raise PayloadTooLarge(f"image {resolved.ref} is larger than this server's limit "
                                  "on an image", "image_too_large")
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        received = 0
        try:
            with open(tmp, "wb") as out:
                async with self._get(resolved.endpoint, resolved.ref, f"blobs/{blob.digest}",
                                     "*/*") as response:
                    async for chunk in response.aiter_bytes(1 << 20):
                        received += len(chunk)
                        if received > blob.size:
                            raise BadGateway(f"image {resolved.ref}: layer {blob.digest[:19]} is "
                                             "longer than its manifest says", "image_pull_failed")
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                        progress(len(chunk))
            if received != blob.size or "sha256:" + digest.hexdigest() != blob.digest:
                raise BadGateway(f"image {resolved.ref}: layer {blob.digest[:19]} does not match "
                                 "its digest (corrupt or tampered download)", "image_pull_failed")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    # -- HTTP with the token dance --------------------------------------------------------

    def _get(self, endpoint: Endpoint, ref: ImageRef, path: str, accept: str) -> _Get:
        return _Get(self, endpoint, ref, path, accept)

    async def _token(self, endpoint: Endpoint, ref: ImageRef, challenge: str) -> str | None:
        """A bearer token from the realm the registry's 401 names (anonymous unless
        credentials are configured for it); None for a Basic challenge."""
        scheme, _, params = challenge.partition(" ")
        creds = self.config.credentials.get(endpoint.host)
        if scheme.lower() == "basic":
            return None
        if scheme.lower() != "bearer":
            raise BadGateway(f"image {ref}: the registry asks for {scheme!r} authentication, "
                             "which Chaser does not speak", "image_pull_failed")
        values = dict(_CHALLENGE_PARAM.findall(params))
        realm = values.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise BadGateway(f"image {ref}: the registry's token realm is not a URL",
                             "image_pull_failed")
        check_target(httpx.URL(realm), endpoint, ref)
        query = {"scope": values.get("scope") or f"repository:{endpoint.repository}:pull"}
        if values.get("service"):
            query["service"] = values["service"]
        auth = httpx.BasicAuth(*creds) if creds else None
        body = b""
        try:
            async with self.http.stream("GET", realm, params=query, auth=auth) as response:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:  # a token is a few KiB
                        break
        except httpx.HTTPError as e:
            raise BadGateway(f"image {ref}: the registry's token service failed: {_why(e)}",
                             "image_pull_failed") from None
        if response.status_code in (401, 403):
            raise ImageNotFound(f"image {ref}: access denied by the registry (private, or the "
                                "server's credentials for it are wrong)")
        if response.status_code != 200 or len(body) > MAX_DOCUMENT_BYTES:
            raise BadGateway(f"image {ref}: the registry's token service answered "
                             f"{response.status_code}", "image_pull_failed")
        data = _json_object(body, ref, "token")
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise BadGateway(f"image {ref}: the registry's token service sent no token",
                             "image_pull_failed")
        return token


class _Get:
    """An authenticated, streamed GET: `async with` gives a 200 response or raises the
    error that tells the user what went wrong."""

    def __init__(self, client: RegistryClient, endpoint: Endpoint, ref: ImageRef, path: str,
                 accept: str) -> None:
        self.client, self.endpoint, self.ref, self.path, self.accept = (
            client, endpoint, ref, path, accept)
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        url = f"{self.endpoint.base_url}/v2/{self.endpoint.repository}/{self.path}"
        for attempt in range(2):
            headers = {"Accept": self.accept}
            auth: httpx.Auth | None = None
            creds = self.client.config.credentials.get(self.endpoint.host)
            if self.endpoint.token:
                headers["Authorization"] = f"Bearer {self.endpoint.token}"
            elif creds:
                auth = httpx.BasicAuth(*creds)
            try:
                response = await self._send(url, headers, auth)
            except httpx.HTTPError as e:
                raise BadGateway(f"image {self.ref}: cannot reach registry "
                                 f"{self.endpoint.host}: {_why(e)}", "image_pull_failed") from None
            if response.status_code == 401 and attempt == 0:
                challenge = response.headers.get("www-authenticate", "")
                await response.aclose()
                self.endpoint.token = await self.client._token(self.endpoint, self.ref, challenge)
                if self.endpoint.token is None and not creds:
                    break
                continue
            if response.status_code == 200:
                self._response = response
                return response
            await response.aclose()
            if response.status_code in (401, 403, 404):
                what = "tag or digest" if "manifests/" in self.path else "blob"
                raise ImageNotFound(f"image {self.ref}: not found on registry "
                                    f"{self.endpoint.host} (no such repository or {what}, or "
                                    "access denied)")
            raise BadGateway(f"image {self.ref}: registry {self.endpoint.host} answered "
                             f"{response.status_code} for {self.path.split('/')[0]}",
                             "image_pull_failed")
        raise ImageNotFound(f"image {self.ref}: registry {self.endpoint.host} requires "
                            "credentials, and the server has none for it")

    async def _send(self, url: str, headers: dict[str, str],
                    auth: httpx.Auth | None) -> httpx.Response:
        """GET `url`, following redirects (blob stores) only to checked targets, and
        never with the registry's credentials on another host."""
        http = self.client.http
        response = await http.send(http.build_request("GET", url, headers=headers), stream=True,
                                   auth=auth)
        for _ in range(MAX_REDIRECTS):
            location = response.headers.get("location")
            if not response.is_redirect or not location:
                return response
            await response.aclose()
            target = response.url.join(location)
            check_target(target, self.endpoint, self.ref)
            if target.netloc != response.url.netloc:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                auth = None
            response = await http.send(http.build_request("GET", target, headers=headers),
                                       stream=True, auth=auth)
        await response.aclose()
        raise BadGateway(f"image {self.ref}: registry {self.endpoint.host} redirects too often",
                         "image_pull_failed")

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def check_target(url: httpx.URL, endpoint: Endpoint, ref: ImageRef) -> None:
    """Where a registry may send the server (redirects, token services): anywhere on its
    own host, else only over TLS to a public address. A registry cannot turn a pull into
    a request to the server's loopback, a private network or cloud metadata."""
    if url.netloc.decode() == httpx.URL(endpoint.base_url).netloc.decode():
        return
    host = url.host
    private = host == "localhost" or host.endswith(".localhost")
    try:
        ip = ipaddress.ip_address(host)
        private = private or not ip.is_global
    except ValueError:
        pass
    if url.scheme != "https" or private:
        raise BadGateway(f"image {ref}: registry {endpoint.host} sends the server to "
                         f"{url.scheme}://{host}, which it may not reach for a registry "
                         "(plain HTTP or a non-public address)", "image_pull_failed")


def _why(e: Exception) -> str:
    return str(e) or type(e).__name__


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_object(body: bytes, ref: ImageRef, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise BadGateway(f"image {ref}: the registry's {what} is not a JSON object",
                         "image_pull_failed")
    return data


def _list(value: object, ref: ImageRef, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadGateway(f"image {ref}: the manifest's {what} is not a list", "image_pull_failed")
    return value


def _descriptor(value: object, ref: ImageRef) -> Descriptor:
    if not isinstance(value, dict):
        raise BadGateway(f"image {ref}: the manifest has a malformed descriptor",
                         "image_pull_failed")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise BadGateway(f"image {ref}: the manifest names a blob by {str(digest)[:80]!r}, "
                         "not a sha256 digest", "image_pull_failed")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadGateway(f"image {ref}: the manifest gives blob {digest[:19]} no valid size",
                         "image_pull_failed")
    return Descriptor(str(value.get("mediaType") or ""), digest, size)


def _choose_platform(index: dict[str, Any], ref: ImageRef) -> str:
    """The digest of the index's manifest for this machine's platform."""
    want_os, want_arch = machine_platform()
    seen = []
    for entry in _list(index.get("manifests"), ref, "manifests"):
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform")
        plat = plat if isinstance(plat, dict) else {}
        seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            return _descriptor(entry, ref).digest
    raise ImageNotFound(f"image {ref} has no variant for {want_os}/{want_arch} (it has: "
                        f"{', '.join(sorted(set(seen))[:10]) or 'none'})")


def basic_credentials(docker_config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Credentials from a Docker `config.json` (`docker login`'s format): host -> pair."""
    found: dict[str, tuple[str, str]] = {}
    auths = docker_config.get("auths")
    for host, entry in (auths.items() if isinstance(auths, dict) else []):
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if isinstance(entry.get("auth"), str):
            with_colon = base64.b64decode(entry["auth"]).decode(errors="replace")
            user, _, password = with_colon.partition(":")
        if isinstance(user, str) and isinstance(password, str):
            host = str(host).removeprefix("https://").removeprefix("http://").split("/")[0]
            if host in ("index.docker.io", DOCKER_HUB_HOST):
                host = DEFAULT_REGISTRY
            found[host] = (user, password)
    return found
