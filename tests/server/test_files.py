"""The files API end to end: exact bytes, ranges, listings, archives, workspaces, quotas."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.types import NewTenant, Tenant


def files(sid: str) -> str:
    return f"/v1/sessions/{sid}/files"


def run(tenant: Tenant, sid: str, command: str) -> str:
    r = tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    return str(r.json()["output"])


def test_bytes_go_in_and_out_exactly_with_ranges(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    data = b"x\xffy\x00" + os.urandom(3000)
    r = c.put(url, params={"path": "d/e/blob.bin", "mode": "600"}, content=data)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/workspace/d/e/blob.bin", "size": len(data)}
    got = c.get(url, params={"path": "/workspace/d/e/blob.bin"})
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["accept-ranges"] == "bytes"
    assert run(tenant, session_id, "sha256sum d/e/blob.bin; stat -c '%a %U' d/e/blob.bin") == (
        f"{hashlib.sha256(data).hexdigest()}  d/e/blob.bin\n600 user\n")
    part = c.get(url, params={"path": "d/e/blob.bin"}, headers={"Range": "bytes=1-2"})
    assert part.status_code == 206 and part.content == b"\xffy"
    assert part.headers["content-range"] == f"bytes 1-2/{len(data)}"
    tail = c.get(url, params={"path": "d/e/blob.bin"}, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    rest = c.get(url, params={"path": "d/e/blob.bin"}, headers={"Range": "bytes=3000-"})
    assert rest.status_code == 206 and rest.content == data[3000:]
    past = c.get(url, params={"path": "d/e/blob.bin"}, headers={"Range": "bytes=99999-"})
    assert past.status_code == 416 and past.json()["error"]["code"] == "range_not_satisfiable"
    # a rewrite keeps the file's mode unless one is given
    assert c.put(url, params={"path": "d/e/blob.bin"}, content=b"new").status_code == 200
    assert run(tenant, session_id, "stat -c %a d/e/blob.bin; cat d/e/blob.bin") == "600\nnew"


def test_errors_name_what_is_wrong(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    r = c.get(url, params={"path": "nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.get(url, params={"path": "/workspace"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "is_directory"
    r = c.get(url, params={"path": "/etc/shadow"})
    assert r.status_code in (403, 404), r.text  # not the sandbox user's to read
    r = c.put(url, params={"path": "/usr/bin/evil"}, content=b"x")
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    r = c.put(url, params={"path": "x", "mode": "999"}, content=b"x")
    assert r.status_code == 422 and "error" in r.json()
    r = c.get(url, params={"path": "/dev/zero"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_regular"


def test_list_mkdir_delete(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    assert c.post(url + "/mkdir", params={"path": "a/b/c", "mode": "700"}).status_code == 204
    assert c.post(url + "/mkdir", params={"path": "a/b/c"}).status_code == 204  # exists: fine
    c.put(url, params={"path": "a/f.txt"}, content=b"hello")
    run(tenant, session_id, "ln -s f.txt a/link")
    listing = c.get(url + "/list", params={"path": "a"}).json()
    assert listing["path"] == "/workspace/a" and not listing["truncated"]
    by_name = {e["name"]: e for e in listing["entries"]}
    assert [e["name"] for e in listing["entries"]] == ["b", "f.txt", "link"]
    assert by_name["b"]["type"] == "directory"
    assert by_name["f.txt"]["type"] == "file" and by_name["f.txt"]["size"] == 5
    assert by_name["f.txt"]["mode"] == 0o644 and by_name["f.txt"]["mtime"].endswith("Z")
    assert by_name["link"]["type"] == "symlink" and by_name["link"]["link_target"] == "f.txt"
    inner = c.get(url + "/list", params={"path": "a/b"}).json()["entries"]
    assert inner[0]["name"] == "c" and inner[0]["mode"] == 0o700
    one = c.get(url + "/list", params={"path": "a/f.txt"}).json()["entries"]
    assert [(e["name"], e["path"]) for e in one] == [("f.txt", "/workspace/a/f.txt")]
    r = c.delete(url, params={"path": "a"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_empty"
    assert c.delete(url, params={"path": "a/link"}).status_code == 204
    assert c.get(url, params={"path": "a/f.txt"}).content == b"hello"  # the link only
    assert c.delete(url, params={"path": "a", "recursive": "true"}).status_code == 204
    assert c.get(url + "/list", params={"path": "."}).json()["entries"] == []
    assert c.delete(url, params={"path": "a"}).status_code == 404
    assert c.delete(url, params={"path": "/workspace", "recursive": "true"}).status_code == 403


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
            mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1_700_000_000
    return info


def test_archives_round_trip(tenant: Tenant, session_id: str) -> None:
    c, sid = tenant.client, session_id
    long_name = "deep/" + "n" * 150 + "/" + "f" * 120
    blob = os.urandom(100_000)
    tar = _tar([(_member("proj/", tarfile.DIRTYPE, mode=0o755), None),
                (_member("proj/run.sh", mode=0o755), b"#!/bin/sh\necho ran\n"),
                (_member("proj/data.bin"), blob),
                (_member("proj/" + long_name), b"long"),
                (_member("proj/link", tarfile.SYMTYPE, "data.bin"), None),
                (_member("proj/hard", tarfile.LNKTYPE, "proj/data.bin"), None)])
    r = c.put(f"/v1/sessions/{sid}/archive", params={"path": "/workspace/in"}, content=tar)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/workspace/in", "files": 6, "bytes": len(blob) + 23}
    assert run(tenant, sid, "cd in/proj && ./run.sh && cat link | wc -c && "
                            "stat -c '%h %Y' data.bin && cat deep/n*/f*") == (
        "ran\n100000\n2 1700000000\nlong")
    out = c.get(f"/v1/sessions/{sid}/archive", params={"path": "in/proj"})
    assert out.status_code == 200 and out.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(out.content)) as back:
        names = set(back.getnames())
        assert {"proj", "proj/run.sh", "proj/data.bin", "proj/link", "proj/" + long_name} <= names
        data = back.extractfile("proj/data.bin")
        assert data is not None and data.read() == blob
        assert back.getmember("proj/link").linkname == "data.bin"
        assert back.getmember("proj/run.sh").mode == 0o755
    one = c.get(f"/v1/sessions/{sid}/archive", params={"path": "in/proj/run.sh"})
    with tarfile.open(fileobj=io.BytesIO(one.content)) as back:
        assert back.getnames() == ["run.sh"]
    r = c.get(f"/v1/sessions/{sid}/archive", params={"path": "missing"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.put(f"/v1/sessions/{sid}/archive", params={"path": "x"}, content=b"not a tar" * 100)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_archive"


def test_workspaces_without_a_session(tenant: Tenant, new_tenant: NewTenant) -> None:
    c = tenant.client
    r = c.get("/v1/workspaces/fw/files", params={"path": "x"})
    assert r.status_code == 404 and "workspace fw" in r.json()["error"]["message"]
    r = c.put("/v1/workspaces/fw/files", params={"path": "src/main.py"}, content=b"print(1)\n")
    assert r.status_code == 200, r.text
    sid = c.get("/v1/workspaces/fw").json()["session_id"]
    assert sid  # a session was started for the workspace, as /v1/exec starts one
    assert c.delete(f"/v1/sessions/{sid}").status_code == 200
    # stopped: the next operation starts another; the files are the workspace's
    assert c.get("/v1/workspaces/fw/files", params={"path": "src/main.py"}).content == b"print(1)\n"
    r = c.post("/v1/exec", json={"workspace": "fw", "command": "cat src/main.py"})
    assert r.json()["output"] == "print(1)\n"
    tar = c.get("/v1/workspaces/fw/archive", params={"path": "src"}).content
    assert c.put("/v1/workspaces/fw2/archive", params={"path": "/workspace"},
                 content=tar).status_code == 200
    assert c.get("/v1/workspaces/fw2/files", params={"path": "src/main.py"}).content == (
        b"print(1)\n")
    other = new_tenant().client
    for path in ("/v1/workspaces/fw/files", "/v1/workspaces/fw/files/list",
                 "/v1/workspaces/fw/archive"):
        assert other.get(path, params={"path": "src"}).status_code == 404
    assert other.get(f"/v1/sessions/{sid}/files", params={"path": "x"}).status_code == 404
    assert c.get("/v1/workspaces/.bad/files", params={"path": "x"}).status_code == 400


def _cut_off_upload(server: ServerProcess, key: str, path: str, sent: int, total: int) -> None:
    """A PUT that announces `total` bytes and hangs up after `sent`."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall((f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                   f"Content-Length: {total}\r\n\r\n").encode() + b"z" * sent)
        time.sleep(0.5)


def test_a_cut_off_upload_leaves_nothing_under_its_name(server: ServerProcess, tenant: Tenant,
                                                         session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    c.put(url, params={"path": "keep.txt"}, content=b"old")
    for name in ("keep.txt", "fresh.txt"):
        _cut_off_upload(server, tenant.key, f"{url}?path={name}", 300_000, 10_000_000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = [e["name"] for e in c.get(url + "/list", params={"path": "."}).json()["entries"]]
        if names == ["keep.txt"]:
            break
        time.sleep(0.2)
    assert names == ["keep.txt"]  # no partial file, no temporary one left
    assert c.get(url, params={"path": "keep.txt"}).content == b"old"


def test_uploads_past_the_disk_quota_are_507(tenant: Tenant) -> None:
    c = tenant.client
    sid = c.post("/v1/sessions", json={"workspace": "tiny",
                                       "limits": {"disk_mb": 32}}).json()["id"]
    r = c.put(files(sid), params={"path": "big"}, content=b"\0" * (64 * 1024 * 1024))
    assert r.status_code == 507 and r.json()["error"]["code"] == "no_space", r.text

    def chunked() -> Iterator[bytes]:
        for _ in range(64):
            yield b"\1" * (1024 * 1024)
    r = c.put(files(sid), params={"path": "big2"}, content=chunked())  # no length: no hint
    assert r.status_code == 507 and r.json()["error"]["code"] == "no_space", r.text
    names = [e["name"] for e in c.get(files(sid) + "/list", params={"path": "."}).json()["entries"]]
    assert names == []  # nothing partial, nothing temporary
    assert c.put(files(sid), params={"path": "small"}, content=b"fits").status_code == 200


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_large_transfers_stream_with_flat_memory(server: ServerProcess, tenant: Tenant,
                                                 session_id: str) -> None:
    assert server.proc is not None
    c, url, size = tenant.client, files(session_id), 200 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    before = _rss_kb(server.proc.pid)
    peak = before
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        nonlocal peak
        for _ in range(size // len(chunk)):
            digest.update(chunk)
            yield chunk
        peak = max(peak, _rss_kb(server.proc.pid))  # type: ignore[union-attr]
    r = c.put(url, params={"path": "/tmp/big"}, content=body(), timeout=120)
    assert r.status_code == 200 and r.json()["size"] == size, r.text
    back = hashlib.sha256()
    with c.stream("GET", url, params={"path": "/tmp/big"}, timeout=120) as got:
        for i, part in enumerate(got.iter_bytes()):
            back.update(part)
            if i % 64 == 0:
                peak = max(peak, _rss_kb(server.proc.pid))
    assert back.hexdigest() == digest.hexdigest()
    assert peak - before < 64 * 1024, (before, peak)  # KiB: far below the 200 MiB moved
    run(tenant, session_id, "rm /tmp/big")


def test_stopped_and_unknown_sessions(tenant: Tenant, session_id: str) -> None:
    c = tenant.client
    assert c.get(files("ses_nope"), params={"path": "x"}).status_code == 404
    c.delete(f"/v1/sessions/{session_id}")
    r = c.get(files(session_id), params={"path": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "session_stopped"
    assert httpx.codes.is_error(c.put(files(session_id), params={"path": "x"},
                                      content=b"x").status_code)


def test_uploads_past_a_memory_backed_sandbox_are_507(tenant: Tenant) -> None:
    """No workspace disk: /workspace is memory, held by the sandbox's memory limit."""
    c = tenant.client
    sid = c.post("/v1/sessions", json={"limits": {"memory_mb": 64}}).json()["id"]
    r = c.put(files(sid), params={"path": "big"}, content=b"\1" * (100 * 1024 * 1024))
    assert r.status_code == 507 and r.json()["error"]["code"] == "no_space", r.text
    assert "memory" in r.json()["error"]["message"]
    assert c.get(files(sid) + "/list", params={"path": "."}).json()["entries"] == []

    def chunked() -> Iterator[bytes]:  # no length: found out by the kernel's limit
        for _ in range(200):
            yield b"\1" * (1024 * 1024)
    r = c.put(files(sid), params={"path": "big"}, content=chunked(), timeout=120)
    assert r.status_code == 507 and r.json()["error"]["code"] == "no_space", r.text


def test_huge_directories_list_truncated(tenant: Tenant, session_id: str) -> None:
    run(tenant, session_id, "mkdir many && cd many && seq -w 12000 | xargs touch")
    listing = tenant.client.get(files(session_id) + "/list", params={"path": "many"}).json()
    assert listing["truncated"] and len(listing["entries"]) == 10_000
    names = [e["name"] for e in listing["entries"]]
    # The first 10,000 the directory yields (its order is the filesystem's), sorted.
    assert names == sorted(names) and len(set(names)) == 10_000


def test_a_listed_file_named_as_its_directory_is_the_file(tenant: Tenant,
                                                          session_id: str) -> None:
    run(tenant, session_id, "mkdir proj && echo d > proj/proj && echo f > lone")
    listing = tenant.client.get(files(session_id) + "/list", params={"path": "proj"}).json()
    assert [(e["name"], e["path"], e["type"]) for e in listing["entries"]] == [
        ("proj", "/workspace/proj/proj", "file")]
    listing = tenant.client.get(files(session_id) + "/list", params={"path": "lone"}).json()
    assert [(e["name"], e["path"], e["type"]) for e in listing["entries"]] == [
        ("lone", "/workspace/lone", "file")]


def test_a_file_that_shrinks_mid_download_ends_it_short(tenant: Tenant,
                                                        session_id: str) -> None:
    """Never zeros in place of the file's bytes: the download is cut, and the client
    sees it (Content-Length unmet)."""
    c, url = tenant.client, files(session_id)
    run(tenant, session_id, "head -c 50000000 /dev/urandom > /tmp/shrinks")
    got = bytearray()
    with pytest.raises(httpx.HTTPError):
        with c.stream("GET", url, params={"path": "/tmp/shrinks"}) as r:
            assert r.status_code == 200 and r.headers["content-length"] == "50000000"
            stream = r.iter_bytes()
            got += next(stream)
            run(tenant, session_id, "truncate -s 1000000 /tmp/shrinks")
            for part in stream:
                got += part
    assert len(got) < 50_000_000
    assert got[1_000_000:].count(0) < len(got[1_000_000:]) // 2  # no run of padding


def test_operations_run_from_the_root_not_the_workspace(tenant: Tenant,
                                                        session_id: str) -> None:
    """A sandbox that locks its own /workspace still reaches its other paths."""
    c, url = tenant.client, files(session_id)
    run(tenant, session_id, "echo hi > /tmp/t; chmod 000 /workspace")
    r = c.get(url, params={"path": "/tmp/t"})
    assert r.status_code == 200 and r.content == b"hi\n"
    r = c.get(url + "/list", params={"path": "/tmp"})
    assert r.status_code == 200 and "t" in [e["name"] for e in r.json()["entries"]]
    r = c.get(url, params={"path": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"


def test_a_session_stopped_mid_download_ends_it_cleanly(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    run(tenant, session_id, "head -c 300000000 /dev/zero > /tmp/big")
    got = 0
    with c.stream("GET", url, params={"path": "/tmp/big"}) as r:
        assert r.status_code == 200
        stream = r.iter_bytes()
        got += len(next(stream))
        c.delete(f"/v1/sessions/{session_id}")
        try:
            for part in stream:
                got += len(part)
        except httpx.HTTPError:
            pass  # cut short: Content-Length tells the client
    assert got < 300_000_000
    r = c.get(url, params={"path": "/tmp/big"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "session_stopped"


def test_downloads_abandoned_before_a_byte_leave_nothing_running(
        server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, files(session_id)
    run(tenant, session_id, "head -c 50000000 /dev/zero > /tmp/z")
    for route in ("files", "archive"):
        for _ in range(20):  # more than the 16 operations a sandbox may run at once
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall((f"GET /v1/sessions/{session_id}/{route}?path=/tmp/z HTTP/1.1\r\n"
                           f"Host: x\r\nAuthorization: Bearer {tenant.key}\r\n\r\n").encode())
    deadline = time.monotonic() + 30
    while True:  # every slot comes back once the abandoned operations have ended
        r = c.get(url, params={"path": "/tmp/z"}, headers={"Range": "bytes=0-9"})
        if r.status_code == 206 or time.monotonic() > deadline:
            break
        assert r.status_code == 429, r.text
        time.sleep(0.3)
    assert r.status_code == 206 and r.content == b"\0" * 10
    # A slot comes back as its operation is killed; the process is gone a moment later.
    deadline = time.monotonic() + 10
    while True:
        left = run(tenant, session_id, "ps -eo args | grep -c '^/.chaser/agent files' || true")
        if left.strip() == "0" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left.strip() == "0", left


def test_absurd_content_lengths_are_507_at_once(server: ServerProcess, tenant: Tenant) -> None:
    """A length past any free space is refused before the body is read (the client has
    sent 3 bytes of it and waits), never misread as a bad path."""
    tenant.client.post("/v1/exec", json={"workspace": "absurd", "command": "true"})
    host, port = server.url.removeprefix("http://").split(":")
    for length in ("1000000000000000", str(2**63 + 5)):
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall((f"PUT /v1/workspaces/absurd/files?path=f HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {tenant.key}\r\n"
                       f"Content-Length: {length}\r\n\r\nabc").encode())
            answer = b""
            while b"}}" not in answer:
                part = s.recv(65536)
                assert part, answer
                answer += part
        text = answer.decode(errors="replace")
        assert text.startswith("HTTP/1.1 507") and '"no_space"' in text, text[:400]
    listing = tenant.client.get("/v1/workspaces/absurd/files/list", params={"path": "/workspace"})
    assert [e["name"] for e in listing.json()["entries"]] == []  # no temporary file left
