"""The images API: list, get, delete (refused in use), prune, import, mirrors; and every
kind of bad input (references, registries, layers) giving a clear error with nothing
written outside the cache and the server still serving."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import secrets
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Registry, free_port, server_with
from tests.images import oci
from tests.types import Tenant


def push(registry: Registry, tmp_root: Path, name: str, layers: list[bytes | list[oci.Entry]],
         **config: object) -> str:
    layout = oci.write_layout(tmp_root / ("oci-" + secrets.token_hex(4)), layers, **config)  # type: ignore[arg-type]
    return oci.push(layout, registry.host, name)


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


# -- managing the cache -----------------------------------------------------------------


def test_list_get_delete_and_in_use(client: httpx.Client, tenant: Tenant, registry: Registry,
                                    tmp_root: Path) -> None:
    ref = push(registry, tmp_root, "test/manage:1", [oci.busybox_layer()])
    pulled = client.post("/v1/images/pull", json={"image": ref})
    assert pulled.status_code == 200, pulled.text
    image = pulled.json()
    assert image["reference"] == ref and image["digest"].startswith("sha256:")
    assert image["size"] > 1_000_000 and image["layers"] == 1
    listed = client.get("/v1/images").json()
    assert any(i["digest"] == image["digest"] for i in listed["images"])
    assert listed["cache_bytes"] >= image["size"] and listed["cache_limit_bytes"] > 0
    assert client.get(f"/v1/images/{image['digest']}").json()["reference"] == ref
    # in use by a session: refused; a tenant key may not delete at all
    s = tenant.client.post("/v1/sessions", json={"image": ref}).json()
    assert client.get(f"/v1/images/{ref}").json()["in_use"] == 1
    error_of(client.delete(f"/v1/images/{ref}"), 409, "image_in_use")
    error_of(tenant.client.delete(f"/v1/images/{ref}"), 403, "forbidden")
    tenant.client.delete(f"/v1/sessions/{s['id']}")
    assert client.delete(f"/v1/images/{ref}").status_code == 200
    error_of(client.get(f"/v1/images/{ref}"), 404, "image_not_found")


def test_prune_takes_unused_images(client: httpx.Client, registry: Registry,
                                   tmp_root: Path) -> None:
    ref = push(registry, tmp_root, "test/prune:1", [[*oci.busybox_layer(), oci.file("p", "1")]])
    assert client.post("/v1/images/pull", json={"image": ref}).status_code == 200
    r = client.post("/v1/images/prune", json={"older_than_s": 0})
    assert r.status_code == 200, r.text
    assert ref in [d["reference"] for d in r.json()["deleted"]]
    assert r.json()["freed_bytes"] > 0
    error_of(client.get(f"/v1/images/{ref}"), 404, "image_not_found")


def test_import_docker_save_and_oci_archives(client: httpx.Client, tenant: Tenant,
                                             tmp_root: Path) -> None:
    layout = oci.write_layout(tmp_root / "oci-import", [oci.busybox_layer(),
                                                        [oci.file("imported", "yes\n")]])
    docker_tar, oci_tar = tmp_root / "saved.tar", tmp_root / "oci.tar"
    for dest in (f"docker-archive:{docker_tar}:airgap/app:1", f"oci-archive:{oci_tar}"):
        subprocess.run(["skopeo", "copy", "--quiet", "--insecure-policy",
                        f"oci:{layout.path}:latest", dest], check=True, capture_output=True)
    # a tenant may not: an archive may call itself node:20, and the cache is everyone's
    error_of(tenant.client.post("/v1/images/import", content=docker_tar.read_bytes()), 403,
             "forbidden")
    r = client.post("/v1/images/import", content=docker_tar.read_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["reference"] == "docker.io/airgap/app:1"  # the archive's own tag
    out = tenant.client.post("/v1/exec", json={"ephemeral": True, "image": "airgap/app:1",
                                               "command": "cat /imported"}).json()
    assert out["output"] == "yes\n", out
    r = client.post("/v1/images/import", params={"name": "airgap/oci:2"},
                    content=oci_tar.read_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["references"] == ["docker.io/airgap/oci:2"]
    error_of(client.post("/v1/images/import", content=b"not a tar at all" * 100), 422,
             "image_rejected")


def test_the_documents_line_through_a_mirror(tmp_root: Path, registry: Registry) -> None:
    """`node:20-bookworm` is docker.io/library/node:20-bookworm, served by a mirror."""
    node = oci.file("usr/local/bin/node", "#!/bin/sh\necho v20.18.0\n", 0o755)
    push(registry, tmp_root, "library/node:20-bookworm",
         [oci.busybox_layer(), [oci.directory("usr/local/bin"), node]],
         env=["PATH=/usr/local/bin:/bin"])
    with server_with(tmp_root, {"CHASER_REGISTRY_MIRRORS": f"http://{registry.host}",
                                "CHASER_ALLOWED_REGISTRIES": "docker.io"}) as srv:
        with srv.client() as c:
            r = c.post("/v1/exec", json={"ephemeral": True, "image": "node:20-bookworm",
                                         "command": "node -v"})
            assert r.status_code == 200, r.text
            assert r.json()["output"] == "v20.18.0\n" and r.json()["exit_code"] == 0
            assert c.get("/v1/images/node:20-bookworm").json()["reference"] == \
                "docker.io/library/node:20-bookworm"
            # only Docker Hub (through its mirror) is allowed on this server
            msg = error_of(c.post("/v1/images/pull", json={"image": f"{registry.host}/x:1"}),
                           403, "forbidden")
            assert "not one this server pulls from" in msg


# -- bad input --------------------------------------------------------------------------


def test_bad_references_and_unknown_images(tenant: Tenant, registry: Registry) -> None:
    c = tenant.client
    for bad in ("Upper/Case", "a b", "x@sha256:abc", ""):
        r = c.post("/v1/exec", json={"ephemeral": True, "image": bad, "command": "true"})
        assert r.status_code in (400, 422), (bad, r.text)
    msg = error_of(c.post("/v1/exec", json={"ephemeral": True, "command": "true",
                                           "image": f"{registry.host}/nope/missing:1"}),
                   404, "image_not_found")
    assert "nope/missing" in msg
    down = f"127.0.0.1:{free_port()}/x:1"
    msg = error_of(c.post("/v1/images/pull", json={"image": down}), 502, "image_pull_failed")
    assert "cannot reach" in msg


class _Liar(http.server.BaseHTTPRequestHandler):
    """A registry that answers what the test tells it to."""

    routes: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        for suffix, (ctype, body) in self.routes.items():
            if self.path.endswith(suffix):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        self.send_response(200 if self.path == "/v2/" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def liar() -> Iterator[str]:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Liar)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    httpd.shutdown()
    _Liar.routes = {}


def test_a_registry_answering_garbage_or_lying_about_digests(tenant: Tenant, liar: str) -> None:
    _Liar.routes = {"/manifests/garbage": ("application/json", b"\x00not json{{")}
    msg = error_of(tenant.client.post("/v1/images/pull", json={"image": f"{liar}/x:garbage"}),
                   502, "image_pull_failed")
    assert "not a JSON object" in msg and f"{liar}/x:garbage" in msg
    layer = gzip.compress(oci.layer_tar([oci.file("f", "real")]))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci_manifest(),
                           "config": {"digest": cdig, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": wrong, "size": len(layer)}]}).encode()
    _Liar.routes = {"/manifests/lying": (oci_manifest(), manifest),
                    f"/blobs/{cdig}": ("application/octet-stream", config),
                    f"/blobs/{wrong}": ("application/octet-stream", layer)}
    msg = error_of(tenant.client.post("/v1/images/pull", json={"image": f"{liar}/x:lying"}),
                   502, "image_pull_failed")
    assert "does not match its digest" in msg
    assert tenant.client.post("/v1/exec", json={"ephemeral": True, "command": "true"}).json()[
        "exit_code"] == 0  # still serving


def oci_manifest() -> str:
    return "application/vnd.oci.image.manifest.v1+json"


def raw_layer(build: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar built member by member, names and links exactly as given (tarfile would
    normalise nothing, which is the point)."""
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in build:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None,
           link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    if data is not None:
        info.size = len(data)
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info, data


@pytest.mark.parametrize("case, why", [
    ("dotdot", "climbs out"), ("absolute", "absolute path"), ("symlink_then_file", "symbolic link"),
    ("hardlink_host", "absolute hard link"), ("hardlink_dotdot", "climbs out"),
    ("device", "device node"), ("deep", "nested deeper"),
])
def test_crafted_layers_are_refused(case: str, why: str, tenant: Tenant, registry: Registry,
                                    tmp_root: Path) -> None:
    sentinel = tmp_root / ("escape-" + secrets.token_hex(4))
    sentinel.mkdir()
    sentinel.chmod(0o777)  # even a world-writable host directory stays untouched
    rel = "../" * 12 + str(sentinel).lstrip("/")
    build = {
        "dotdot": [member(f"{rel}/owned", data=b"x")],
        "absolute": [member(f"{sentinel}/owned", data=b"x")],
        "symlink_then_file": [member("evil", tarfile.SYMTYPE, link=str(sentinel)),
                              member("evil/owned", data=b"x")],
        "hardlink_host": [member("passwd", tarfile.LNKTYPE, link="/etc/passwd")],
        "hardlink_dotdot": [member("passwd", tarfile.LNKTYPE, link="../" * 12 + "etc/passwd")],
        "device": [member("mem", tarfile.CHRTYPE)],
        "deep": [member("d/" * 200 + "f", data=b"x")],
    }[case]
    ref = push(registry, tmp_root, f"test/bad-{case.replace('_', '-')}:1",
               [oci.busybox_layer(), raw_layer(build)])
    r = tenant.client.post("/v1/exec", json={"ephemeral": True, "image": ref, "command": "true"})
    msg = error_of(r, 422, "image_rejected")
    assert why in msg and ref in msg, msg
    assert list(sentinel.iterdir()) == []
    assert tenant.client.post("/v1/exec", json={"ephemeral": True, "command": "echo ok"}).json()[
        "output"] == "ok\n"


def test_an_image_over_the_size_limit(tmp_root: Path, registry: Registry) -> None:
    ref = push(registry, tmp_root, "test/bomb:1",
               [oci.busybox_layer(), raw_layer([member("zeros", data=bytes(64 << 20))])])
    with server_with(tmp_root, {"CHASER_MAX_IMAGE_MB": "16"}) as srv:
        with srv.client() as c:
            msg = error_of(c.post("/v1/images/pull", json={"image": ref}), 422, "image_rejected")
            assert "more than 16 MiB" in msg
            assert c.get("/v1/images").json()["images"] == []
            staging = srv.data_dir / "images" / "staging"
            assert list(staging.iterdir()) == []  # nothing half-unpacked is left


class _Private(http.server.BaseHTTPRequestHandler):
    """A registry that wants a bearer token, which its token service gives only for
    the right credentials (the flow of Docker Hub and ghcr.io)."""

    blobs: dict[str, tuple[str, bytes]] = {}
    secret = "s3cret-" + secrets.token_hex(4)
    token = "tok-" + secrets.token_hex(8)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        host = self.headers.get("Host", "")
        if self.path.startswith("/token"):
            import base64
            want = "Basic " + base64.b64encode(f"bob:{self.secret}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._send(401, b"{}")
            return self._send(200, json.dumps({"token": self.token}).encode())
        if self.path == "/v2/" or self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",'
                                                 'service="private",scope="repository:app:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        for suffix, (ctype, body) in self.blobs.items():
            if self.path.endswith(suffix):
                return self._send(200, body, ctype)
        self._send(404, b"{}")

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_private_registry_with_configured_credentials(tmp_root: Path, tenant: Tenant) -> None:
    layout = oci.write_layout(tmp_root / "oci-private", [[*oci.busybox_layer(),
                                                          oci.file("secret-app", "private\n")]])
    blobs = layout.path / "blobs" / "sha256"
    _Private.blobs = {"/manifests/1": (oci_manifest(),
                                       (blobs / layout.manifest_digest[7:]).read_bytes())}
    for blob in blobs.iterdir():
        _Private.blobs[f"/blobs/sha256:{blob.name}"] = ("application/octet-stream",
                                                        blob.read_bytes())
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Private)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ref = f"127.0.0.1:{port}/app:1"
    try:
        # the shared server has no credentials for it: refused, clearly
        msg = error_of(tenant.client.post("/v1/images/pull", json={"image": ref}), 404,
                       "image_not_found")
        assert "access denied" in msg
        import base64
        auth = tmp_root / ("auth-" + secrets.token_hex(3) + ".json")
        auth.write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {
            "auth": base64.b64encode(f"bob:{_Private.secret}".encode()).decode()}}}))
        with server_with(tmp_root, {"CHASER_REGISTRY_AUTH_FILE": str(auth)}) as srv:
            with srv.client() as c:
                r = c.post("/v1/exec", json={"ephemeral": True, "image": ref,
                                             "command": "cat /secret-app; env"})
                assert r.status_code == 200, r.text
                assert r.json()["output"].startswith("private\n")
                assert _Private.secret not in r.text  # not in the sandbox's environment
                listed = c.get("/v1/images").text + c.get("/v1/usage").text
                assert _Private.secret not in listed and "bob" not in listed
            assert _Private.secret not in srv.log()
    finally:
        httpd.shutdown()
