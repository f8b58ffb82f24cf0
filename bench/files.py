"""Files in and out of a workspace (issue 15, "Speed"), beside the floor.

Run as root: `.venv/bin/python bench/files.py [--runs 3] [--big-mb 1024]`. Moves
  - one big file (1 GB of random bytes) up and down: through the API (curl, raw body
    PUT / GET .../files) and `chaser cp`;
  - a tree of 20,000 files of 10 KB (200 MB) up and down: through the API (tar piped
    into / out of curl, PUT / GET .../archive) and `chaser cp` (directories);
beside the floor, a plain `tar` pipe on the host (`tar -c | tar -x`, the same bytes
between two host directories), and `docker cp` where a Docker engine runs. Prints the
median wall time of each and its ratio to the floor (goal: within 2x for the big file).
The workspace's disk is sized to hold everything (`disk_mb`). Local inputs and outputs
live in BENCH_DIR (default /dev/shm), so the host disk's writeback is not what is timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import docker_engine, docker_image, run_quiet, running_server

TREE_FILES = 20_000
TREE_FILE_BYTES = 10 * 1024


def wall(cmd: str, env: dict[str, str] | None = None) -> float:
    """Seconds `cmd` (a shell pipeline) takes; it must succeed."""
    t = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def median(fn: Callable[[], float], runs: int, reset: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        reset()
        times.append(fn())
    return statistics.median(times)


def make_inputs(root: Path, big_mb: int) -> tuple[Path, Path]:
    big = root / "big.bin"
    with open(big, "wb") as f:
        for _ in range(big_mb):
            f.write(os.urandom(1024 * 1024))
    tree = root / "tree"
    for i in range(TREE_FILES):
        d = tree / f"d{i // 500:03d}"
        if i % 500 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(TREE_FILE_BYTES))
    return big, tree


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--no-docker", action="store_true", help="skip the docker cp rows")
    args = ap.parse_args()
    scratch = Path(os.environ.get("BENCH_DIR", "/dev/shm")) / f"chaser-bench-files-{os.getpid()}"
    scratch.mkdir(parents=True)
    try:
        big, tree = make_inputs(scratch, args.big_mb)
        run(scratch, big, tree, args.runs, args.big_mb, not args.no_docker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def docker_rows(scratch: Path, big: Path, tree: Path, runs: int,
                reset: Callable[[], None]) -> list[tuple[str, str, float]]:
    """`docker cp` of the same bytes into and out of a running container (its writable
    layer, overlay2), where a Docker engine runs or can be started."""
    rows: list[tuple[str, str, float]] = []
    with docker_engine() as up:
        if not up:
            print("(docker cp: no Docker engine here)")
            return rows
        name = f"chaser-bench-files-{os.getpid()}"
        run_quiet(["docker", "run", "-d", "--network", "none", "--name", name, docker_image(),
                   "sleep", "3600"])
        out = scratch / "out"
        try:
            def clean() -> None:
                reset()
                run_quiet(["docker", "exec", name, "rm", "-rf", "/in"])
                run_quiet(["docker", "exec", name, "mkdir", "/in"])
            for label, kind, cmd in (
                    ("big file up, docker cp", "big", f"docker cp {big} {name}:/in/big.bin"),
                    ("tree up, docker cp", "tree", f"docker cp {tree} {name}:/in/tree")):
                rows.append((label, kind, median(lambda: wall(cmd), runs, clean)))
            wall(f"docker cp {big} {name}:/in/big.bin")
            for label, kind, cmd in (
                    ("big file down, docker cp", "big", f"docker cp {name}:/in/big.bin {out}/big.bin"),
                    ("tree down, docker cp", "tree", f"docker cp {name}:/in/tree {out}/tree")):
                rows.append((label, kind, median(lambda: wall(cmd), runs, reset)))
        finally:
            run_quiet(["docker", "rm", "-f", name])
    return rows


def run(scratch: Path, big: Path, tree: Path, runs: int, big_mb: int, docker: bool) -> None:
    out = scratch / "out"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    rows: list[tuple[str, str, float]] = []
    floor_big = median(lambda: wall(f"tar -C {scratch} -c big.bin | tar -C {out} -x"), runs, reset)
    floor_tree = median(lambda: wall(f"tar -C {scratch} -c tree | tar -C {out} -x"), runs, reset)
    with running_server() as srv:
        key = srv.admin_key
        assert key
        env = {**os.environ, "CHASER_API_URL": srv.url, "CHASER_API_KEY": key,
               "CHASER_CONFIG": "/nonexistent"}
        c = srv.client()
        r = c.post("/v1/sessions", json={"workspace": "bench",
                                         "limits": {"disk_mb": big_mb * 3 + 1024}})
        assert r.status_code == 201, r.text
        ws = f"{srv.url}/v1/workspaces/bench"
        auth = f"-H 'Authorization: Bearer {key}'"
        cli = f"{sys.executable} -m chaser"

        def clean() -> None:
            reset()
            c.delete("/v1/workspaces/bench/files", params={"path": "in", "recursive": "true"})
        up = {
            "big file up, API (curl PUT)": f"curl -sf {auth} -T {big} '{ws}/files?path=in/big.bin'",
            "big file up, chaser cp": f"{cli} cp {big} bench:in/big.bin",
            "tree up, API (tar | curl PUT archive)":
                f"tar -C {scratch} -c tree | curl -sf {auth} -T - '{ws}/archive?path=in'",
            "tree up, chaser cp": f"{cli} cp {tree} bench:in/tree",
        }
        for name, cmd in up.items():
            rows.append((name, "big" if "big" in name else "tree",
                         median(lambda: wall(cmd, env), runs, clean)))
        wall(up["big file up, API (curl PUT)"])
        wall(up["tree up, API (tar | curl PUT archive)"])
        down = {
            "big file down, API (curl GET)": f"curl -sf {auth} -o {out}/big.bin '{ws}/files?path=in/big.bin'",
            "big file down, chaser cp": f"{cli} cp bench:in/big.bin {out}/big.bin",
            "tree down, API (curl GET archive | tar)":
                f"curl -sf {auth} '{ws}/archive?path=in/tree' | tar -C {out} -x",
            "tree down, chaser cp": f"{cli} cp bench:in/tree {out}/tree",
        }
        for name, cmd in down.items():
            rows.append((name, "big" if "big" in name else "tree",
                         median(lambda: wall(cmd, env), runs, reset)))
        c.close()
    if docker:
        rows += docker_rows(scratch, big, tree, runs, reset)
    print(f"\nfiles: {big_mb} MB file, tree of {TREE_FILES} x {TREE_FILE_BYTES // 1024} KB "
          f"({TREE_FILES * TREE_FILE_BYTES // 1_000_000} MB); median of {runs} runs")
    print(f"  {'floor: tar pipe on the host, big file':<44} {floor_big:7.2f} s")
    print(f"  {'floor: tar pipe on the host, tree':<44} {floor_tree:7.2f} s")
    for name, kind, secs in rows:
        floor = floor_big if kind == "big" else floor_tree
        size_mb = big_mb if kind == "big" else TREE_FILES * TREE_FILE_BYTES / 1_048_576
        print(f"  {name:<44} {secs:7.2f} s  {size_mb / secs:7.0f} MiB/s  {secs / floor:5.1f}x floor")


if __name__ == "__main__":
    main()
