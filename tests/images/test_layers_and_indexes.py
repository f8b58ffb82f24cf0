"""What real images do to the unpacker (nested whiteouts, replaced directories, many
links), what they cost against the limits, multi-platform indexes, the writable layer's
privacy on the host, and registries that try to send the server elsewhere."""

from __future__ import annotations

import asyncio
import http.server
import os
import tarfile
import threading
from pathlib import Path
from typing import Any, cast


from chaser.runtime.base import SandboxSpec
from chaser.runtime.pool import WarmPool
from tests.conftest import Registry, ServerProcess, free_port, server_with
from tests.images import oci
from tests.images.test_image_api import error_of, member, push, raw_layer
from tests.types import Json, Tenant


def run(t: Tenant, image: str, command: str) -> Json:
    r = t.client.post("/v1/exec", json={"ephemeral": True, "image": image, "command": command})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_whiteouts_and_replacements_real_images_make(tenant: Tenant, registry: Registry,
                                                     tmp_root: Path) -> None:
    """`RUN rm -rf /var/lib/apt/lists/*` whites out nested directories; an opaque
    directory may have subdirectories; a directory may become a file and back."""
    lower = [oci.directory("var/lib/apt/lists/partial"), oci.file("var/lib/apt/lists/partial/x", "1"),
             oci.directory("a/b/c"), oci.file("a/b/c/deep", "1"), oci.file("a/b/keep-not", "1"),
             oci.directory("d/e"), oci.file("d/e/f", "1")]
    upper = [oci.Entry("var/lib/apt/lists/.wh.partial", b""),
             oci.directory("a/b"), oci.Entry("a/b/.wh..wh..opq", b""), oci.file("a/b/new", "2"),
             oci.file("d/e", "now a file\n")]
    ref = push(registry, tmp_root, "test/real-whiteouts:1", [oci.busybox_layer(), lower, upper])
    out = run(tenant, ref, "ls -A /var/lib/apt/lists; echo -; ls -A /a/b; echo -; cat /d/e")
    assert out["output"].split("\n") == ["-", "new", "-", "now a file", ""], out


def test_many_directories_and_hard_links(tenant: Tenant, registry: Registry,
                                         tmp_root: Path) -> None:
    entries = [*oci.busybox_layer()]
    for i in range(400):  # past the unpacker's cache of open directories
        entries += [oci.directory(f"m/d{i}"), oci.file(f"m/d{i}/f", str(i)),
                    oci.hardlink(f"m/d{i}/h", f"m/d{(i * 7) % (i + 1)}/f")]
    ref = push(registry, tmp_root, "test/many-links:1", [entries])
    out = run(tenant, ref, "cat /m/d399/h; echo; stat -c %h /m/d0/f")
    assert out["exit_code"] == 0, out
    assert out["output"].split()[1] != "1"  # /m/d0/f has links to it


def test_odd_but_valid_roots(tenant: Tenant, registry: Registry, tmp_root: Path) -> None:
    """A FIFO where /etc/passwd goes, and `home` as a link (Fedora's `home -> var/home`):
    replaced by what a sandbox needs, quickly."""
    layer = raw_layer([member("etc", tarfile.DIRTYPE), member("etc/passwd", tarfile.FIFOTYPE),
                       member("var/home", tarfile.DIRTYPE),
                       member("home", tarfile.SYMTYPE, link="var/home")])
    ref = push(registry, tmp_root, "test/odd-root:1", [oci.busybox_layer(), layer])
    out = run(tenant, ref, "grep -c '^user:' /etc/passwd; cd ~ && pwd")
    assert out["output"].split() == ["1", "/home/user"], out


def test_whiteouts_of_dot_names_are_refused(tenant: Tenant, registry: Registry,
                                            tmp_root: Path) -> None:
    for bad in (".wh..", ".wh..."):
        ref = push(registry, tmp_root, f"test/wh-dots:{len(bad)}",
                   [oci.busybox_layer(), raw_layer([member(f"bin/{bad}", data=b"")])])
        msg = error_of(tenant.client.post("/v1/images/pull", json={"image": ref}), 422,
                       "image_rejected")
        assert "names no file" in msg


def test_multi_platform_index_resolves_to_this_machine(tenant: Tenant, registry: Registry,
                                                       tmp_root: Path) -> None:
    index = oci.write_index(tmp_root / "oci-index", {
        "linux/arm64": [[*oci.busybox_layer(), oci.file("arch", "arm64\n")]],
        "linux/amd64": [[*oci.busybox_layer(), oci.file("arch", "amd64\n")]]})
    ref = oci.push(index, registry.host, "test/multi:1")
    assert run(tenant, ref, "cat /arch")["output"] == "amd64\n"
    by_index = f"{registry.host}/test/multi@{index.manifest_digest}"
    assert run(tenant, by_index, "cat /arch")["output"] == "amd64\n"
    fetches = registry.blob_fetches(index.manifest_digest) + _manifest_gets(registry, index)
    assert run(tenant, by_index, "cat /arch")["output"] == "amd64\n"
    assert registry.blob_fetches(index.manifest_digest) + _manifest_gets(registry, index) == \
        fetches  # cached: the index is not asked for again
    only_arm = oci.write_index(tmp_root / "oci-arm", {"linux/arm64": [oci.busybox_layer()]})
    arm = oci.push(only_arm, registry.host, "test/arm-only:1")
    msg = error_of(tenant.client.post("/v1/images/pull", json={"image": arm}), 404,
                   "image_not_found")
    assert "no variant for linux/amd64" in msg and "linux/arm64" in msg


def _manifest_gets(registry: Registry, layout: oci.Layout) -> int:
    text = registry.log_path.read_text(errors="replace")
    return sum(1 for line in text.splitlines()
               if f"/manifests/{layout.manifest_digest}" in line and '"GET ' in line)


def test_empty_files_and_directories_count_against_the_limit(
        tmp_root: Path, registry: Registry) -> None:
    """Sizes are what the root takes on disk: 20,000 directories are 80 MB, not 0."""
    dirs = raw_layer([member(f"d{i}", tarfile.DIRTYPE) for i in range(20_000)])
    ref = push(registry, tmp_root, "test/inodes:1", [oci.busybox_layer(), dirs])
    with server_with(tmp_root, {"CHASER_MAX_IMAGE_MB": "40"}) as srv:
        with srv.client() as c:
            msg = error_of(c.post("/v1/images/pull", json={"image": ref}), 422, "image_rejected")
            assert "more than 40 MiB" in msg


def test_one_tenant_cannot_pin_the_whole_cache(tmp_root: Path, registry: Registry) -> None:
    """Its sandboxes may hold images up to its share of the cache (a quarter here: 20 MiB
    of 80), whether it pulls them first or runs them straight away; others still pull."""
    mids = [push(registry, tmp_root, f"test/pin-mid:{i}",
                 [oci.busybox_layer(), [oci.file("blob", os.urandom(6 << 20))]]) for i in range(3)]
    big = push(registry, tmp_root, "test/pin-big:1",
               [oci.busybox_layer(), [oci.file("blob", os.urandom(24 << 20))]])
    small = push(registry, tmp_root, "test/pin-small:1", [oci.busybox_layer()])
    with server_with(tmp_root, {"CHASER_IMAGE_CACHE_MB": "80"}) as srv:
        with srv.client() as admin:
            key = admin.post("/v1/keys", json={"name": "pinner"}).json()["key"]
            other = admin.post("/v1/keys", json={"name": "other"}).json()["key"]
        with srv.client(key) as c, srv.client(other) as o:
            for ref in mids:  # pulling holds nothing: all three come in
                assert c.post("/v1/images/pull", json={"image": ref}).status_code == 200
            assert c.post("/v1/sessions", json={"image": mids[0]}).status_code == 201
            assert c.post("/v1/sessions", json={"image": mids[1]}).status_code == 201
            msg = error_of(c.post("/v1/sessions", json={"image": mids[2]}), 429,
                           "tenant_limit")
            assert "share" in msg
            assert o.post("/v1/exec", json={"ephemeral": True, "image": small,
                                            "command": "true"}).json()["exit_code"] == 0
            # a first image may be larger than the share; holding it, no more pulls
            assert o.post("/v1/sessions", json={"image": big}).status_code == 201
            msg = error_of(o.post("/v1/images/pull", json={"image": mids[0] + "-x"}), 429,
                           "tenant_limit")
            assert "share of the image cache" in msg


def test_a_sandboxs_layer_is_private_on_the_host(tenant: Tenant, registry: Registry,
                                                 server: ServerProcess, tmp_root: Path) -> None:
    ref = push(registry, tmp_root, "test/private-layer:1", [oci.busybox_layer()])
    sid = tenant.client.post("/v1/sessions", json={"image": ref}).json()["id"]
    try:
        top = server.data_dir / "runtime" / "roots" / sid
        st = top.stat()
        assert st.st_mode & 0o777 == 0o700 and st.st_uid != 0  # the sandbox's uid only
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        assert str(top / "root") in points
        assert str(top / "lower") not in points  # no idmapped view of the image on the host
    finally:
        tenant.client.delete(f"/v1/sessions/{sid}")
    assert sid not in Path("/proc/self/mountinfo").read_text() or _settles(sid)


def _settles(sid: str) -> bool:
    import time
    deadline = time.monotonic() + 10
    while sid in Path("/proc/self/mountinfo").read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Redirect(http.server.BaseHTTPRequestHandler):
    """A registry that sends every request to another port of the server's loopback."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:9/v2/x/manifests/1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_registry_cannot_send_the_server_elsewhere(tenant: Tenant) -> None:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        msg = error_of(tenant.client.post("/v1/images/pull", json={"image": f"127.0.0.1:{port}/x:1"}),
                       502, "image_pull_failed")
        assert "may not reach" in msg
    finally:
        httpd.shutdown()


def test_the_pool_drops_warm_sandboxes_of_a_forgotten_image(tmp_path: Path) -> None:
    """An image deleted while a warm sandbox on it is starting: that sandbox is closed
    when it comes up, not kept for a later run (which would find an empty root)."""

    class Warm:
        def __init__(self) -> None:
            self.alive, self.closed = True, False

        async def close(self) -> None:
            self.closed = True

    started: list[Warm] = []

    async def start(spec: SandboxSpec) -> Any:
        await asyncio.sleep(0.05)
        started.append(Warm())
        return started[-1]

    async def scenario() -> None:
        pool = WarmPool(cast(Any, start), 1)
        spec = SandboxSpec(name="eph_x", image="sha256:abc", rootfs=tmp_path)
        fill = asyncio.get_running_loop().create_task(pool._warm(spec))
        await asyncio.sleep(0.01)
        pool.forget(tmp_path)  # while the warm one starts
        await fill
        assert started and started[0].closed
        assert pool.take(spec) is None
        await pool.close()

    asyncio.run(scenario())


