"""Archive uploads that fail part way (a cut tar, a client gone, a full disk, a pax size
larger than the data) leave no partial member under its name and no temporary file, and
crafted headers are refused cleanly; through the real API into real sandboxes."""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time

import pytest

from tests.conftest import ServerProcess
from tests.types import Tenant

END = b"\0" * 1024


def run(tenant: Tenant, sid: str, command: str) -> str:
    r = tenant.client.post(f"/v1/sessions/{sid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    return str(r.json()["output"])


def header(name: bytes, size: int = 0, kind: bytes = b"0", link: bytes = b"",
           raw_size: bytes | None = None) -> bytes:
    """A ustar header block, checksummed, with any size field asked for."""
    h = bytearray(512)
    h[:len(name)] = name
    h[100:108] = b"0000644\0"
    h[124:136] = raw_size if raw_size is not None else b"%011o\0" % size
    h[136:148] = b"14000000000\0"
    h[156:157] = kind
    h[157:157 + len(link)] = link
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax(**records: bytes) -> bytes:
    """A pax extended header block with `records` (each "LEN key=value\\n")."""
    text = b""
    for key, value in records.items():
        body = b" " + key.encode() + b"=" + value + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        text += str(n).encode() + body
    return header(b"PaxHeader", len(text), b"x") + padded(text)


def two_files(big: int) -> bytes:
    """A tar of done.txt (complete) then part.bin of `big` bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("done.txt", b"done!"), ("part.bin", b"\1" * big)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def left_over(tenant: Tenant, sid: str, where: str = "/workspace") -> list[str]:
    """Every partial member or temporary file below `where`."""
    out = run(tenant, sid, f"find {where} -name part.bin -o -name big.bin -o "
                           "-name '.chaser-*' 2>/dev/null; true")
    return out.split()


def archive_url(sid: str) -> str:
    return f"/v1/sessions/{sid}/archive"


def test_a_cut_tar_leaves_no_partial_member(tenant: Tenant, session_id: str) -> None:
    c, sid = tenant.client, session_id
    run(tenant, sid, "mkdir -p dest && printf old > dest/part.bin")
    tar = two_files(1_000_000)
    r = c.put(archive_url(sid), params={"path": "dest"}, content=tar[:600_000])
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_archive", r.text
    # Members complete before the failure are kept (as Docker's archive API keeps
    # them); the one cut off is not: the old file under its name is untouched.
    assert run(tenant, sid, "cat dest/done.txt dest/part.bin") == "done!old"
    assert run(tenant, sid, "ls -A dest") == "done.txt\npart.bin\n"
    r = c.put(archive_url(sid), params={"path": "dest2"}, content=tar[:600_000])
    assert r.status_code == 400
    assert left_over(tenant, sid, "/workspace/dest2") == []


def test_a_pax_size_larger_than_the_data_leaves_nothing(tenant: Tenant, session_id: str) -> None:
    c, sid = tenant.client, session_id
    tar = pax(size=b"100000") + header(b"big.bin", 3) + padded(b"abc") + END
    r = c.put(archive_url(sid), params={"path": "p"}, content=tar)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_archive", r.text
    assert left_over(tenant, sid) == []


def test_a_client_gone_mid_archive_leaves_no_partial_member(
        server: ServerProcess, tenant: Tenant, session_id: str) -> None:
    c, sid = tenant.client, session_id
    tar = two_files(4_000_000)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall((f"PUT {archive_url(sid)}?path=gone HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {tenant.key}\r\nContent-Length: {len(tar)}\r\n"
                   "\r\n").encode() + tar[:1_500_000])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # done.txt is in: the agent is on part.bin now
            if c.get(f"/v1/sessions/{sid}/files", params={"path": "gone/done.txt"}).is_success:
                break
            time.sleep(0.1)
        time.sleep(0.3)
    deadline = time.monotonic() + 15
    while (left := left_over(tenant, sid)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert left == []
    assert c.get(f"/v1/sessions/{sid}/files", params={"path": "gone/done.txt"}).content == b"done!"
    assert "agent files" not in run(tenant, sid, "ps -eo args")  # and it ended


def test_an_archive_over_the_disk_quota_is_507_and_frees_its_space(tenant: Tenant) -> None:
    c = tenant.client
    sid = c.post("/v1/sessions", json={"workspace": "tinyarc",
                                       "limits": {"disk_mb": 32}}).json()["id"]
    r = c.put(archive_url(sid), params={"path": "q"}, content=two_files(48 * 1024 * 1024),
              timeout=60)
    assert r.status_code == 507 and r.json()["error"]["code"] == "no_space", r.text
    assert left_over(tenant, sid) == []
    # The partial member's blocks were given back: most of the disk is free again
    r = c.put(f"/v1/sessions/{sid}/files", params={"path": "after.bin"},
              content=b"\2" * (20 * 1024 * 1024), timeout=60)
    assert r.status_code == 200, r.text


CRAFTED = {
    # base-256 sizes of 2^63 and of a negative number: refused, never "read to the end"
    "size 2^63": (header(b"f", raw_size=b"\x80\0\0\0\x80" + b"\0" * 7) + END, "bad_archive"),
    "size negative": (header(b"f", raw_size=b"\xff" * 12) + END, "bad_archive"),
    "size not octal": (header(b"f", raw_size=b"12x45\0\0\0\0\0\0\0") + END, "bad_archive"),
    "pax size not a number": (pax(size=b"12abc") + header(b"f", 3) + padded(b"abc") + END,
                              "bad_archive"),
    "pax size past 2^62": (pax(size=b"99999999999999999999") + header(b"f") + END,
                           "bad_archive"),
    "pax header at the end": (pax(path=b"x") + END, "bad_archive"),
    "pax record too long": (header(b"P", 20, b"x") + padded(b"99999999 path=a\n")
                            + header(b"f") + END, "bad_archive"),
    "long name over PATH_MAX": (header(b"././@LongLink", 5000, b"L") + padded(b"n/" * 2500)
                                + header(b"f") + END, "invalid_path"),
    "hard link to a directory": (header(b"d/", kind=b"5") + header(b"h", kind=b"1", link=b"d/")
                                 + END, "bad_archive"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_headers_are_refused(tenant: Tenant, session_id: str, name: str) -> None:
    tar, code = CRAFTED[name]
    r = tenant.client.put(archive_url(session_id), params={"path": "crafted"}, content=tar)
    assert r.status_code == 400 and r.json()["error"]["code"] == code, (name, r.text)
    assert run(tenant, session_id, "find crafted -type f 2>/dev/null; true") == ""


def test_two_pax_headers_merge_for_one_member(tenant: Tenant, session_id: str) -> None:
    """The second pax header of a member used to free the first's records while its
    path still pointed into them."""
    tar = (pax(path=b"good.txt") + pax(linkpath=b"unused") + header(b"bad", 3) + padded(b"abc")
           + pax(path=b"x/second") + pax(path=b"x/third") + header(b"bad2", 2) + padded(b"hi")
           + END)
    r = tenant.client.put(archive_url(session_id), params={"path": "m"}, content=tar)
    assert r.status_code == 200 and r.json()["files"] == 2, r.text
    assert run(tenant, session_id, "cd m && find . -type f | sort && cat good.txt x/third") == (
        "./good.txt\n./x/third\nabchi")
