"""Sandboxes on pulled images: pulled from a real registry on loopback, run through the
API exactly as on `default` (commands, background, stdin, signals, timeouts), whatever
the image has: busybox without libc or python, a Debian-like root, no shell at all."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Registry, ServerProcess
from tests.images import oci
from tests.types import Json, NewTenant, Tenant


@dataclass
class Images:
    """References of the images this module pushed."""

    busybox: str  # two layers: a whiteout and an opaque directory in the second
    debian: str
    distroless: str
    top_layer: str  # digest of busybox's second layer


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_root: Path) -> Iterator[Images]:
    base = [*oci.busybox_layer(), oci.directory("etc"), oci.file("etc/gone", "x"),
            oci.directory("opt"), oci.file("opt/old", "old"),
            oci.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/n:/bin/sh\n")]
    top = [oci.Entry("etc/.wh.gone", b""), oci.directory("opt"),
           oci.Entry("opt/.wh..wh..opq", b""), oci.file("opt/new", "new\n"),
           oci.file("srv/hello.txt", "hello from the image\n")]
    bb = oci.write_layout(tmp_root / "oci-bb", [base, top],
                          env=["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDDEN=image"], workdir="/srv",
                          user="root")
    manifest = (bb.path / "blobs" / "sha256" / bb.manifest_digest[7:]).read_text()
    top_layer = __import__("json").loads(manifest)["layers"][1]["digest"]
    deb = oci.write_layout(tmp_root / "oci-deb", [oci.host_files_layer()],
                           env=["PATH=/usr/bin:/bin"])
    dl = oci.write_layout(tmp_root / "oci-dl", [oci.distroless_layer()], env=["PATH=/app"])
    yield Images(oci.push(bb, registry.host, "test/busybox:2"),
                 oci.push(deb, registry.host, "test/debian:12"),
                 oci.push(dl, registry.host, "test/distroless:1"), top_layer)


def run(t: Tenant, image: str, command: str, **extra: object) -> Json:
    r = t.client.post("/v1/exec", json={"ephemeral": True, "image": image, "command": command,
                                        **extra})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_layers_apply_in_order_with_whiteouts_and_opaque_dirs(tenant: Tenant, images: Images) -> None:
    out = run(tenant, images.busybox, "ls /opt; test -e /etc/gone && echo present || echo gone; "
              "cat /srv/hello.txt")
    assert out["exit_code"] == 0, out
    assert out["output"].split() == ["new", "gone", "hello", "from", "the", "image"]


def test_image_config_env_and_workdir(tenant: Tenant, images: Images) -> None:
    out = run(tenant, images.busybox, "pwd; echo $FROM_IMAGE $OVERRIDDEN $PATH; id -u",
              env={"OVERRIDDEN": "request"})
    assert out["output"].split() == ["/srv", "yes", "request", "/bin", "1000"], out
    # a cwd given by the request wins over WorkingDir
    assert run(tenant, images.busybox, "pwd", cwd="/tmp")["output"] == "/tmp\n"


def test_busybox_image_sessions_do_everything_default_does(tenant: Tenant, images: Images) -> None:
    """No python, no libc in the image: foreground, background, stdin, signals, timeouts."""
    c = tenant.client
    s = c.post("/v1/sessions", json={"image": images.busybox})
    assert s.status_code == 201, s.text
    sid = s.json()["id"]
    assert s.json()["image"] == images.busybox and s.json()["cwd"] == "/srv"
    fg = c.post(f"/v1/sessions/{sid}/exec", json={"command": "echo hi; exit 3"}).json()
    assert (fg["exit_code"], fg["output"]) == (3, "hi\n")
    stdin = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sha256sum", "stdin": "abc"}).json()
    assert stdin["output"].startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    bg = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 60", "background": True})
    assert bg.status_code == 201
    cmd = bg.json()["command_id"]
    k = c.post(f"/v1/sessions/{sid}/commands/{cmd}/kill", json={"signal": "TERM"})
    assert k.status_code == 200
    deadline = time.monotonic() + 10
    while (got := c.get(f"/v1/sessions/{sid}/commands/{cmd}").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (got["status"], got["signal"]) == ("killed", "TERM")
    slow = c.post(f"/v1/sessions/{sid}/exec", json={"command": "sleep 30", "timeout_ms": 300}).json()
    assert slow["status"] == "timed_out" and slow["timed_out"]
    assert c.delete(f"/v1/sessions/{sid}").status_code == 200


def test_each_sandbox_writes_to_its_own_layer(tenant: Tenant, images: Images,
                                              server: ServerProcess) -> None:
    """The image's files are the sandbox user's, as root's are root's in a container:
    any of them can be changed, in the sandbox's own layer, never in the image."""
    c = tenant.client
    sid = c.post("/v1/sessions", json={"image": images.busybox}).json()["id"]
    w = c.post(f"/v1/sessions/{sid}/exec", json={
        "command": "stat -c %u /bin/busybox /etc; echo changed > /srv/hello.txt && "
                   "touch /bin/new-tool /etc/new.conf && cat /srv/hello.txt"}).json()
    assert w["output"].split() == ["1000", "1000", "changed"], w
    other = run(tenant, images.busybox, "cat /srv/hello.txt; ls /bin/new-tool 2>&1")
    assert other["output"].startswith("hello from the image\n"), other
    assert "No such file" in other["output"]
    c.delete(f"/v1/sessions/{sid}")
    cached = list((server.data_dir / "images" / "roots").glob("*/rootfs/srv/hello.txt"))
    assert cached and all(p.read_text() == "hello from the image\n" for p in cached)


def test_debian_image_runs_its_own_bash(tenant: Tenant, images: Images) -> None:
    out = run(tenant, images.debian, "echo $BASH_VERSION; cat /etc/debian_version", shell="bash")
    assert out["exit_code"] == 0, out
    assert out["output"].split()[1] == "12"


def test_an_image_without_a_shell_fails_clearly(tenant: Tenant, images: Images) -> None:
    out = run(tenant, images.distroless, "echo hi")
    assert out["exit_code"] == 127
    assert "no /bin/sh" in out["output"], out
    s = tenant.client.post("/v1/sessions", json={"image": images.distroless}).json()
    r = tenant.client.post(f"/v1/sessions/{s['id']}/exec", json={"command": "echo hi"}).json()
    assert r["exit_code"] == 127 and "/bin/sh" in r["output"], r
    tenant.client.delete(f"/v1/sessions/{s['id']}")


def test_concurrent_first_uses_pull_once(server: ServerProcess, registry: Registry,
                                         new_tenant: NewTenant, tmp_root: Path) -> None:
    layout = oci.write_layout(tmp_root / "oci-once", [[*oci.busybox_layer(),
                                                       oci.file("once", "1")]])
    ref = oci.push(layout, registry.host, "test/once:1")
    manifest = (layout.path / "blobs/sha256" / layout.manifest_digest[7:]).read_text()
    layer = __import__("json").loads(manifest)["layers"][0]["digest"]
    tenants = [new_tenant(f"once{i}") for i in range(2)]

    def one(i: int) -> Json:
        return run(tenants[i % 2], ref, "cat /once")

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(r["output"] == "1" for r in results), results
    assert registry.blob_fetches(layer) == 1


def test_pull_progress_as_server_sent_events(client: httpx.Client, registry: Registry,
                                             tmp_root: Path) -> None:
    layout = oci.write_layout(tmp_root / "oci-sse", [oci.busybox_layer(), [oci.file("a", "b")]])
    ref = oci.push(layout, registry.host, "test/sse:1")
    events = []
    with client.stream("POST", "/v1/images/pull", json={"image": ref},
                       headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    assert events[0] == "resolving" and "resolved" in events and "progress" in events
    assert events[-2:] == ["unpacking", "done"], events
    got = client.get(f"/v1/images/{ref}").json()
    assert got["layers"] == 2 and got["digest"] == layout.manifest_digest


def test_workspace_keeps_its_files_across_images(tenant: Tenant, images: Images) -> None:
    c = tenant.client
    w = c.post("/v1/exec", json={"workspace": "imgs", "command": "echo kept > /workspace/f"})
    assert w.json()["exit_code"] == 0
    r = c.post("/v1/exec", json={"workspace": "imgs", "image": images.busybox,
                                 "command": "cat /workspace/f; ls /opt"}).json()
    assert r["output"].split() == ["kept", "new"], r
    back = c.post("/v1/exec", json={"workspace": "imgs", "command": "cat /workspace/f"}).json()
    assert back["output"] == "kept\n"
