"""Piped stdin arrives exactly: binary bytes, random data, a tar stream, a large pipe."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time

from tests.cli.test_cli_run import cli_env
from tests.conftest import ServerProcess
from tests.types import Tenant


def cli_bytes(server: ServerProcess, key: str, *args: str,
              data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "chaser", *args], input=data,
                          env=cli_env(server.url, key), capture_output=True, timeout=120)


def test_binary_bytes_arrive_exactly(server: ServerProcess, tenant: Tenant) -> None:
    for args in (("shell", "--ephemeral", "-c", "od -An -c"), ("exec", "-i", "od -An -c")):
        r = cli_bytes(server, tenant.key, *args, data=b"x\xffy")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [b"x", b"377", b"y"], (args, r.stdout)


def test_random_bytes_hash_the_same(server: ServerProcess, tenant: Tenant) -> None:
    data = os.urandom(3000)
    r = cli_bytes(server, tenant.key, "shell", "--ephemeral", "-c", "sha256sum", data=data)
    assert r.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest(), r.stderr
    r = cli_bytes(server, tenant.key, "exec", "-i", "sha256sum", data=data)
    assert r.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest(), r.stderr


def test_a_gzipped_tar_unpacks_in_a_workspace(server: ServerProcess, tenant: Tenant) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("a.txt", "sub/b.bin"):
            body = os.urandom(50_000)
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    r = cli_bytes(server, tenant.key, "shell", "-w", "tarred", "-c",
                  "tar xz && ls -R | tr '\\n' ' '", data=buf.getvalue())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b".:", b"a.txt", b"sub", b"./sub:", b"b.bin"]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_large_pipe_keeps_server_memory_flat(server: ServerProcess, tenant: Tenant) -> None:
    assert server.proc is not None
    pid, size = server.proc.pid, 200 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    before = peak = _rss_kb(pid)
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_kb(pid))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    proc = subprocess.Popen([sys.executable, "-m", "chaser", "shell", "--ephemeral", "-c",
                             "sha256sum"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=cli_env(server.url, tenant.key))
    assert proc.stdin is not None
    try:
        for _ in range(size // len(block)):
            digest.update(block)
            proc.stdin.write(block)
        proc.stdin.close()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert proc.returncode == 0
    assert out.decode().split()[0] == digest.hexdigest()
    assert peak - before < 64 * 1024, (before, peak)  # KiB, for 200 MiB through it
