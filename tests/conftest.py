"""Shared fixtures: a real Chaser server on loopback, clients and tenants.

The server runs as a subprocess (`python -m chaser server`) exactly as users start it,
with real sandboxes. One server serves the whole session; tests that need a fresh one
(restarts, data-dir checks) start their own with `ServerProcess`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.types import NewTenant, Tenant

ADMIN_KEY = "chs_test_admin_" + secrets.token_hex(8)


def _serialize_ast_parse() -> None:
    """CPython 3.11 keeps the AST builder's recursion depth per interpreter, not per
    thread (gh-106905; later 3.11 releases mend it): two threads in `ast.parse` at once make it raise
    "SystemError: AST constructor recursion depth mismatch". pytest parses a test file
    to show a failure while another thread may be formatting a traceback (3.11's
    traceback module parses lines for its carets), which crashed the whole run with an
    INTERNALERROR. One lock around `ast.parse` in this process closes that race."""
    if sys.version_info[:2] != (3, 11):
        return
    import ast
    import threading

    parse, lock = ast.parse, threading.RLock()

    def locked_parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    ast.parse = locked_parse


_serialize_ast_parse()


def eventually(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Whether `check` came true within `timeout` seconds (polled every `interval`)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A `chaser server` subprocess on a free loopback port."""

    data_dir: Path
    admin_key: str | None = ADMIN_KEY
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
        # The suite's servers run hundreds of default-sized sandboxes side by side; memory
        # admission is tested on servers of its own (tests/server/test_fair_share.py).
        env["CHASER_MEMORY_FRACTION"] = "1000"
        if self.admin_key:
            env["CHASER_API_KEY"] = self.admin_key
        env.update(self.extra_env)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chaser", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        keep = os.environ.get("CHASER_KEEP_SERVER_LOGS")  # a directory, for debugging
        if keep and self.log_path and self.log_path.exists():
            shutil.copy(self.log_path, Path(keep) / self.log_path.name)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-20000:]
        return ""

    def sandbox_processes(self) -> list[str]:
        """Command lines of every process in this server's sandboxes, found through its
        cgroups: not a host-wide `ps`, which stalls behind other tests' fork bombs."""
        instance = hashlib.sha256(str((self.data_dir / "runtime").resolve()).encode())
        pids: set[str] = set()
        for procs in glob.glob(f"/sys/fs/cgroup/**/chaser/{instance.hexdigest()[:12]}/**/"
                               "cgroup.procs", recursive=True):
            with contextlib.suppress(OSError):
                pids.update(Path(procs).read_text().split())
        lines = []
        for pid in pids:
            with contextlib.suppress(OSError):
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                             .decode(errors="replace"))
        return lines

    def client(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def metric(srv: ServerProcess, name: str) -> float:
    """The value of the unlabelled metric `name` on the server's `/metrics` now."""
    with srv.client() as c:
        text = c.get("/metrics").text
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith(name + " "))


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="chaser-tests-"))
    root.chmod(0o711)  # sandboxes (unprivileged uids) must traverse to their workspaces
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tmp_root: Path) -> Iterator[ServerProcess]:
    """The shared running server (admin key: `server.admin_key`)."""
    srv = ServerProcess(data_dir=tmp_root / "data").start()
    yield srv
    srv.stop()
    if os.environ.get("CHASER_KEEP_SERVER_LOG"):
        shutil.copy(srv.log_path, os.environ["CHASER_KEEP_SERVER_LOG"])  # type: ignore[arg-type]


@pytest.fixture
def fresh_server(tmp_root: Path) -> Iterator[ServerProcess]:
    """A server of its own for tests that restart or inspect the data dir."""
    with server_with(tmp_root, {}) as srv:
        yield srv


@contextlib.contextmanager
def server_with(tmp_root: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server of its own with these `CHASER_*` settings, for the block."""
    home = Path(tempfile.mkdtemp(dir=tmp_root))
    home.chmod(0o711)  # sandboxes (unprivileged uids) traverse it
    srv = ServerProcess(data_dir=home / "data", extra_env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An httpx client authenticated with the admin key."""
    with server.client() as c:
        yield c


@pytest.fixture
def new_tenant(server: ServerProcess, client: httpx.Client) -> Iterator[NewTenant]:
    """Factory: a brand-new tenant (its own API key and client)."""
    made: list[Tenant] = []

    def make(name: str = "tenant") -> Tenant:
        r = client.post("/v1/keys", json={"name": name})
        assert r.status_code == 201, r.text
        body = r.json()
        t = Tenant(key=body["key"], id=body["tenant"], client=server.client(body["key"]))
        made.append(t)
        return t

    yield make
    for t in made:
        t.client.close()


@pytest.fixture
def tenant(new_tenant: NewTenant) -> Tenant:
    """A fresh tenant for one test."""
    return new_tenant()


@pytest.fixture
def session_id(tenant: Tenant) -> str:
    """A running session of a fresh tenant (no workspace)."""
    r = tenant.client.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(autouse=True)
def _umask_unchanged() -> Iterator[None]:
    """No test leaves the process umask changed (the in-process tier's servers set 077,
    and every later mkdir of the suite would quietly lose its o+x)."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    after = os.umask(before)
    assert after == before, f"the umask was left at {after:o} (was {before:o})"


def kernel_log_marker(label: str) -> str:
    """Write a unique line to the kernel log; `kernel_log_since` reads what follows it
    (so a test judges only the kernel messages of its own run, not the machine's past)."""
    marker = f"{label}-{secrets.token_hex(6)}"
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(marker + "\n")
    return marker


def kernel_log_since(marker: str) -> str:
    """The kernel log after `marker` (all of it if the marker is gone from the ring)."""
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    return dmesg.split(marker)[-1]


@dataclass
class Registry:
    """A real OCI registry (Debian's docker-registry, the CNCF distribution) on loopback."""

    host: str  # 127.0.0.1:PORT
    log_path: Path

    def blob_fetches(self, digest: str) -> int:
        """How often a blob was downloaded (from the registry's access log)."""
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines()
                   if f"/blobs/{digest}" in line and '"GET ' in line and " 200 " in line)


@pytest.fixture(scope="session")
def registry(tmp_root: Path) -> Iterator[Registry]:
    """One registry for the session; tests push the images they need to it."""
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (scripts/install.sh --dev installs it)")
    with running_registry(Path(tempfile.mkdtemp(dir=tmp_root))) as reg:
        yield reg


@contextlib.contextmanager
def running_registry(home: Path) -> Iterator[Registry]:
    """A registry storing its data under `home`, until the block ends."""
    exe = shutil.which("docker-registry") or "docker-registry"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = home / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {home}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log_path = home / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the registry did not start:\n" + log_path.read_text())
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", log_path)
    finally:
        proc.terminate()
        proc.wait(10)
