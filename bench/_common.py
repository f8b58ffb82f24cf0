"""Shared bits of the benchmarks: a server of their own, timing and printing."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.*, beside the installed chaser

from tests.conftest import ServerProcess  # noqa: E402  (the same server the tests start)


# The floor of a one-shot sandbox: a bare bubblewrap sandbox running `true`.
BWRAP_TRUE = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
              "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
              "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
              "--", "/bin/true"]


@contextmanager
def running_server(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A server of its own on loopback; `env` (CHASER_* settings) overrides the
    benchmark's environment."""
    root = Path(tempfile.mkdtemp(prefix="chaser-bench-"))
    root.chmod(0o711)
    # CHASER_* settings in the benchmark's environment reach its server (the tests'
    # servers ignore them).
    settings = {k: v for k, v in os.environ.items() if k.startswith("CHASER_")}
    settings.update(env or {})
    srv = ServerProcess(data_dir=root / "data", extra_env=settings).start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    """Run `fn` n times (after a warm-up); return milliseconds per run."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def report(name: str, ms: list[float]) -> float:
    p50 = statistics.median(ms)
    print(f"  {name:<48} p50 {p50:8.2f} ms   p90 {pct(ms, 90):8.2f} ms   (n={len(ms)})")
    return p50


def run_quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@contextmanager
def docker_engine() -> Iterator[bool]:
    """Whether a Docker engine can be used for the block. When `docker` and `dockerd` are
    installed but no engine runs, one is started in the background for the
    block, with no iptables rules and no bridge (the benchmarks' containers run with
    `--network none`), its log in a temporary file; it is stopped after, by its pid."""
    if docker_available():
        yield True
        return
    if not (shutil.which("docker") and shutil.which("dockerd")):
        yield False
        return
    log_path = Path(tempfile.mkdtemp(prefix="chaser-bench-dockerd-")) / "dockerd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none"],
                                stdout=log, stderr=subprocess.STDOUT)
    up = False
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and not docker_available():
            time.sleep(0.25)
        up = proc.poll() is None and docker_available()
        if not up:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            print(f"  (dockerd did not come up; its log is {log_path}:)", *tail, sep="\n    ",
                  file=sys.stderr)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it stops its containers and its containerd
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print(f"  (dockerd {proc.pid} killed: its containerd may be left running)",
                      file=sys.stderr)
        if up:
            shutil.rmtree(log_path.parent, ignore_errors=True)  # kept when it failed


DOCKER_IMAGE = "chaser-bench:host"
DOCKER_BINARIES = ("/usr/bin/true", "/usr/bin/dash", "/usr/bin/sleep", "/usr/bin/cat",
                   "/usr/bin/head", "/usr/bin/date", "/usr/bin/python3", "/usr/bin/rm",
                   "/usr/bin/mkdir")


def docker_image() -> str:
    """A small image made from this host's own binaries (sh, coreutils bits, python3),
    imported locally: no registry needed, and the same programs Chaser's default image
    runs, so the comparison is of the sandboxes, not of the images."""
    if subprocess.run(["docker", "image", "inspect", DOCKER_IMAGE], capture_output=True).returncode == 0:
        return DOCKER_IMAGE
    root = Path(tempfile.mkdtemp(prefix="chaser-bench-image-"))
    try:
        files: set[str] = set()
        for binary in DOCKER_BINARIES:
            real = str(Path(binary).resolve())
            files.add(real)
            ldd = subprocess.run(["ldd", real], capture_output=True, text=True).stdout
            files.update(w for w in ldd.split() if w.startswith("/"))
        for f in files:
            # /lib and /lib64 are symlinks into /usr on merged-/usr hosts: copy to the real place.
            dst = root / str(Path(f).parent.resolve()).lstrip("/") / Path(f).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
        stdlib = Path("/usr/lib/python3.11")
        if stdlib.is_dir():
            shutil.copytree(stdlib, root / "usr/lib/python3.11", symlinks=True, dirs_exist_ok=True)
        for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            (root / name).symlink_to(target)
        (root / "usr/bin/sh").symlink_to("dash")
        py = Path("/usr/bin/python3").resolve().name
        if not (root / "usr/bin/python3").exists():
            (root / "usr/bin/python3").symlink_to(py)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", DOCKER_IMAGE], stdin=tar.stdout, check=True,
                       capture_output=True)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return DOCKER_IMAGE


def sandbox_pids(srv: ServerProcess) -> set[str]:
    """Pids of every process in this server's sandboxes, found through its cgroups (as
    ServerProcess.sandbox_processes finds them)."""
    instance = hashlib.sha256(str((srv.data_dir / "runtime").resolve()).encode()).hexdigest()[:12]
    pids: set[str] = set()
    for procs in glob.glob(f"/sys/fs/cgroup/**/chaser/{instance}/**/cgroup.procs", recursive=True):
        with contextlib.suppress(OSError):
            pids.update(Path(procs).read_text().split())
    return pids


def pss_kb(pids: Iterable[str | int]) -> int:
    """Sum of the proportional set sizes of these processes (gone ones count 0), KiB."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total
