"""Shared bits of the benchmarks: a server of their own, timing and printing."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import ServerProcess  # noqa: E402  (the same server the tests start)


@contextmanager
def running_server() -> Iterator[ServerProcess]:
    root = Path(tempfile.mkdtemp(prefix="chaser-bench-"))
    root.chmod(0o711)
    srv = ServerProcess(data_dir=root / "data").start()
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
