"""The files API never touches a host file: planted links, `..`, NUL, long paths, races,
tar tricks and /proc paths all stay inside the sandbox (or are refused)."""

from __future__ import annotations

import io
import secrets
import tarfile
import threading
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.types import Tenant


@pytest.fixture
def host_secret(tmp_root: Path) -> Path:
    """A host file (world-readable, in a directory sandboxes could traverse) that no
    request may read, change or replace."""
    path = tmp_root / f"host-secret-{secrets.token_hex(4)}"
    path.write_text("HOST-SECRET-" + secrets.token_hex(8))
    path.chmod(0o666)
    return path


def run(tenant: Tenant, sid: str, command: str) -> str:
    r = tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    return str(r.json()["output"])


def test_planted_symlinks_resolve_in_the_sandbox(tenant: Tenant, session_id: str,
                                                 host_secret: Path, server: ServerProcess) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    secret = host_secret.read_text()
    run(tenant, session_id, f"ln -s {host_secret} s; ln -s / root; ln -s /proc/1/root p; "
                            f"ln -s {server.data_dir} data; mkdir -p d; ln -s {host_secret.parent} d/up")
    paths = ("s", f"root{host_secret}", "d/up/" + host_secret.name, "p" + str(host_secret),
             "/proc/self/root" + str(host_secret), "data/chaser.db")
    for path in paths:
        r = c.get(url, params={"path": path})
        assert r.status_code in (403, 404), (path, r.status_code)
        assert secret.encode() not in r.content
    r = c.get(url + "/list", params={"path": "d/up"})
    assert r.status_code == 404 and host_secret.name not in r.text
    r = c.get(f"/v1/sessions/{session_id}/archive", params={"path": "root" + str(host_secret.parent)})
    assert r.status_code == 404 and secret.encode() not in r.content
    for path in paths:
        r = c.put(url, params={"path": path}, content=b"overwritten")
        # Written inside the sandbox (its own /tmp, say: the path means what it means
        # to the sandbox's commands), or refused; the host's file is never touched.
        assert r.status_code in (200, 403, 404), (path, r.text)
        assert host_secret.read_text() == secret
        r = c.get(url, params={"path": path})
        assert r.content == b"overwritten" if r.status_code == 200 else r.status_code in (403, 404)
    assert c.get(url + "/list", params={"path": "s"}).json()["entries"][0]["type"] == "file"
    assert c.delete(url, params={"path": "d/up", "recursive": "true"}).status_code == 204
    assert host_secret.read_text() == secret and host_secret.parent.is_dir()


def test_proc_paths_show_nothing_of_the_server(tenant: Tenant, session_id: str,
                                               server: ServerProcess) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    # The files agent is undumpable, so its own /proc entries are root's: 403. (Were it
    # readable, stat says size 0: empty.) Either way nothing of the server shows.
    env = c.get(url, params={"path": "/proc/self/environ"})
    assert env.status_code in (200, 403), env.status_code
    assert tenant.key.encode() not in env.content and b"CHASER" not in env.content
    for path in ("/proc/1/environ", "/proc/1/mem", "/proc/1/root/etc/hostname"):
        r = c.get(url, params={"path": path})
        assert r.status_code in (403, 404), (path, r.status_code)  # the agent is undumpable
    r = c.put(url, params={"path": "/proc/sys/kernel/hostname"}, content=b"owned")
    assert r.status_code in (403, 404)


@pytest.mark.parametrize("path", ["../etc/passwd", "/workspace/../../etc", "a/..", "a\0b",
                                  "x" * 5000, ""])
def test_meaningless_paths_are_400(tenant: Tenant, session_id: str, path: str) -> None:
    c = tenant.client
    for method, suffix in (("GET", "/files"), ("PUT", "/files"), ("DELETE", "/files"),
                           ("GET", "/files/list"), ("POST", "/files/mkdir"), ("GET", "/archive"),
                           ("PUT", "/archive")):
        r = c.request(method, f"/v1/sessions/{session_id}{suffix}", params={"path": path},
                      content=b"" if method in ("PUT", "POST") else None)
        assert r.status_code in (400, 422), (method, suffix, r.status_code)
        assert r.json()["error"]["code"] in ("invalid_path", "invalid_request")


def _tar(*members: tarfile.TarInfo, data: bytes = b"evil") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _m(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def test_tar_tricks_are_refused_and_write_nothing_outside(tenant: Tenant, session_id: str,
                                                          host_secret: Path) -> None:
    c, sid = tenant.client, session_id
    target = f"/v1/sessions/{sid}/archive"
    tricks = {
        "absolute": _tar(_m("/tmp/abs-evil")),
        "dotdot": _tar(_m("ok/../../tmp/dd-evil")),
        "symlink out": _tar(_m("lnk", tarfile.SYMTYPE, "/tmp")),
        "symlink up": _tar(_m("a/lnk", tarfile.SYMTYPE, "../../../tmp")),
        "through a link": _tar(_m("ok", tarfile.SYMTYPE, "."), _m("ok/../x")),
        "hard link out": _tar(_m("h", tarfile.LNKTYPE, "../../etc/passwd")),
        "hard link absolute": _tar(_m("h", tarfile.LNKTYPE, str(host_secret))),
        "device": _tar(_m("null", tarfile.CHRTYPE)),
        "fifo": _tar(_m("fifo", tarfile.FIFOTYPE)),
        "host path": _tar(_m(str(host_secret))),
    }
    for name, tar in tricks.items():
        r = c.put(target, params={"path": "/workspace/dest"}, content=tar)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]["code"] in ("bad_archive", "invalid_path"), name
    # a symlink inside, then a member below it: never written through the link
    r = c.put(target, params={"path": "dest2"},
              content=_tar(_m("sub", tarfile.SYMTYPE, "."), _m("in/x")))
    assert r.status_code == 200, r.text
    r = c.put(target, params={"path": "dest2"}, content=_tar(_m("sub/escape")))
    assert r.status_code == 400 and "symlink" in r.json()["error"]["message"]
    out = run(tenant, sid, "ls /tmp; find /workspace -name '*evil*' -o -name escape -o "
                           "-name fifo -o -name null")
    assert "evil" not in out and "escape" not in out and "fifo" not in out, out
    assert host_secret.read_text().startswith("HOST-SECRET-")


def test_a_path_racing_a_rename_stays_in_the_sandbox(tenant: Tenant, session_id: str,
                                                     host_secret: Path) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    secret = host_secret.read_text()
    swap = (f"end=$(( $(date +%s) + 4 )); mkdir -p real; while [ $(date +%s) -lt $end ]; do "
            f"rm -rf r; mkdir r; echo inside > r/f; rm -rf r; ln -s {host_secret.parent} r; "
            f"rm -f r; ln -s / r; done; echo done")
    seen: list[bytes] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            seen.append(c.get(url, params={"path": "r/" + host_secret.name}).content)
            seen.append(c.get(url, params={"path": "r/f"}).content)
            c.put(url, params={"path": "r/" + host_secret.name}, content=b"raced")
            c.put(url, params={"path": "r/etc/raced"}, content=b"raced")
            seen.append(c.get(f"/v1/sessions/{session_id}/archive", params={"path": "r"}).content)
    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert run(tenant, session_id, swap).endswith("done\n")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert seen and all(secret.encode() not in body for body in seen)
    assert host_secret.read_text() == secret
    assert not Path("/etc/raced").exists()
