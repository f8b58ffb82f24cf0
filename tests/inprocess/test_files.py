"""The files API's routes over the fake runtime: shapes, ranges, errors and tenancy (what
the sandbox makes of a path is tested end to end, tests/server/test_files.py)."""

from __future__ import annotations

import io
import tarfile

from tests.inprocess.harness import Tenant, error


async def test_write_read_list_delete(tenant: Tenant, other: Tenant, session_id: str) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    r = await c.put(url, params={"path": "a/b.bin", "mode": "640"}, content=b"x\xffy")
    assert r.status_code == 200 and r.json() == {"path": "/workspace/a/b.bin", "size": 3}
    got = await c.get(url, params={"path": "/workspace/a/b.bin"})
    assert got.content == b"x\xffy" and got.headers["content-length"] == "3"
    part = await c.get(url, params={"path": "a/b.bin"}, headers={"Range": "bytes=-2"})
    assert part.status_code == 206 and part.content == b"\xffy"
    assert part.headers["content-range"] == "bytes 1-2/3"
    error(await c.get(url, params={"path": "a/b.bin"}, headers={"Range": "bytes=5-"}),
          416, "range_not_satisfiable")
    assert (await c.post(url + "/mkdir", params={"path": "a/c"})).status_code == 204
    entries = (await c.get(url + "/list", params={"path": "a"})).json()["entries"]
    assert [(e["name"], e["type"], e["mode"]) for e in entries] == [
        ("b.bin", "file", 0o640), ("c", "directory", 0o755)]
    error(await c.get(url, params={"path": "a"}), 409, "is_directory")
    error(await c.get(url, params={"path": "nope"}), 404, "not_found")
    error(await c.delete(url, params={"path": "a"}), 409, "not_empty")
    assert (await c.delete(url, params={"path": "a", "recursive": "true"})).status_code == 204
    error(await c.get(url + "/list", params={"path": "a"}), 404, "not_found")
    error(await other.client.get(url, params={"path": "x"}), 404, "not_found")
    error(await c.get("/v1/sessions/ses_nope/files", params={"path": "x"}), 404, "not_found")


async def test_bad_paths_and_modes(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    for path in ("../x", "a/../b", "a\0b", "y" * 5000):
        error(await c.get(url, params={"path": path}), 400, "invalid_path")
        error(await c.put(url, params={"path": path}, content=b"x"), 400, "invalid_path")
    error(await c.put(url, params={"path": "f", "mode": "rwx"}, content=b"x"), 422,
          "invalid_request")
    error(await c.get(url), 422, "invalid_request")  # path is required
    for protected in ("/workspace", "//", "//workspace/", "/./workspace/.", "///"):
        error(await c.delete(url, params={"path": protected, "recursive": "true"}), 403,
              "protected_path")


async def test_archives_and_workspaces(tenant: Tenant, other: Tenant) -> None:
    c = tenant.client
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("src/app.py")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"print\n"))
    error(await c.get("/v1/workspaces/proj/files/list", params={"path": "."}), 404, "not_found")
    r = await c.put("/v1/workspaces/proj/archive", params={"path": "."}, content=buf.getvalue())
    assert r.status_code == 200 and r.json() == {"path": "/workspace", "files": 1, "bytes": 6}
    got = await c.get("/v1/workspaces/proj/files", params={"path": "src/app.py"})
    assert got.content == b"print\n"
    out = await c.get("/v1/workspaces/proj/archive", params={"path": "src"})
    with tarfile.open(fileobj=io.BytesIO(out.content)) as back:
        assert back.getnames() == ["src", "src/app.py"]
    error(await c.put("/v1/workspaces/proj/archive", params={"path": "."}, content=b"junk" * 200),
          400, "bad_archive")
    dotted = io.BytesIO()  # `.` components are no directory levels: this link leads out
    with tarfile.open(fileobj=dotted, mode="w") as tar:
        link = tarfile.TarInfo("a/./././l2")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc"
        tar.addfile(link)
    error(await c.put("/v1/workspaces/proj/archive", params={"path": "."},
                      content=dotted.getvalue()), 400, "bad_archive")
    error(await other.client.get("/v1/workspaces/proj/files", params={"path": "src/app.py"}),
          404, "not_found")
    error(await c.get("/v1/workspaces/.x/files", params={"path": "a"}), 400, "invalid_workspace")


async def test_ranges_as_rfc_9110_reads_them(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    assert (await c.put(url, params={"path": "r.txt"}, content=b"0123456789")).status_code == 200
    assert (await c.put(url, params={"path": "empty"}, content=b"")).status_code == 200

    async def get(rng: str, path: str = "r.txt", **extra: str) -> tuple[int, bytes, str | None]:
        r = await c.get(url, params={"path": path}, headers={"Range": rng, **extra})
        if r.status_code == 416:
            error(r, 416, "range_not_satisfiable")
        return r.status_code, r.content, r.headers.get("content-range")
    big = "9" * 20  # past any 64-bit number
    # No byte can be selected: 416, with the size (RFC 9110 §15.5.17)
    for rng in ("bytes=-0", f"bytes={big}-", f"bytes={big}-{big}", "bytes=10-",
                "bytes=" + "7" * 60000 + "-"):
        assert (await get(rng))[::2] == (416, "bytes */10"), rng
    assert (await get("bytes=0-", "empty"))[::2] == (416, "bytes */0")
    # A last byte or a suffix past the end selects to the end
    assert await get(f"bytes=2-{big}") == (206, b"23456789", "bytes 2-9/10")
    assert await get(f"bytes=-{big}") == (206, b"0123456789", "bytes 0-9/10")
    assert await get("bytes=-3") == (206, b"789", "bytes 7-9/10")
    assert await get("BYTES = 4-4") == (206, b"4", "bytes 4-4/10")  # the unit's case is free
    # Served whole (200): several ranges, an invalid one (ignored, §14.2), an If-Range
    # (no validator of ours can match it), another unit, a suffix of an empty file
    for rng in ("bytes=0-1,4-5", "bytes=5-2", "bytes=x-", "bytes=--1", "items=0-1", "bytes"):
        assert await get(rng) == (200, b"0123456789", None), rng
    assert await get("bytes=0-1", **{"If-Range": '"abc"'}) == (200, b"0123456789", None)
    assert await get("bytes=-5", "empty") == (200, b"", None)


async def test_fifos_sockets_and_devices_are_409_not_regular(tenant: Tenant,
                                                            session_id: str) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    r = await c.post(f"/v1/sessions/{session_id}/exec", json={
        "command": "mkfifo fifo && python3 -c \"import socket; "
                   "socket.socket(socket.AF_UNIX).bind('sock')\" && echo ok"})
    assert r.json()["output"] == "ok\n", r.text
    for path in ("fifo", "sock"):
        error(await c.get(url, params={"path": path}), 409, "not_regular")


async def test_downloads_are_attachments_never_sniffed(tenant: Tenant, session_id: str) -> None:
    c, url = tenant.client, f"/v1/sessions/{session_id}/files"
    name = 'r\u00e9sum\u00e9 "q"\u202etxt.html'
    assert (await c.put(url, params={"path": name}, content=b"<script>1</script>")).status_code == 200
    for got in (await c.get(url, params={"path": name}),
                await c.get(url, params={"path": name}, headers={"Range": "bytes=0-3"})):
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-disposition"] == (
            "attachment; filename=\"r_sum_ _q__txt.html\"; "
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22%E2%80%AEtxt.html")
    tar = await c.get(f"/v1/sessions/{session_id}/archive", params={"path": "/workspace"})
    assert tar.headers["content-disposition"].startswith('attachment; filename="workspace.tar"')
    assert tar.headers["x-content-type-options"] == "nosniff"
