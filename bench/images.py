"""Images: pull speed beside skopeo, first start, exec on an image beside `default`, and
the host memory of an idle session on each.

    .venv/bin/python bench/images.py [--n 60] [--layer-mb 64]

A registry (Debian's docker-registry) runs on loopback; the image has two layers: a
Debian-like root made of this host's own files, and a layer of incompressible data so
the transfer, not the handshakes, dominates. Medians; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import pss_kb, report, running_server, timed
from tests.conftest import ServerProcess, running_registry
from tests.images import oci


def session_memory(srv: ServerProcess, session_id: str) -> tuple[int, int]:
    """(PSS of the session's processes, its memory cgroup's usage), in KiB."""
    pss = current = 0
    for procs in glob.glob(f"/sys/fs/cgroup/**/{session_id}/cgroup.procs", recursive=True):
        pss = pss or pss_kb(Path(procs).read_text().split())
        for name in ("memory.current", "memory.usage_in_bytes"):  # cgroup v2, v1
            usage = Path(procs).with_name(name)
            if usage.exists():
                current = int(usage.read_text()) // 1024
    return pss, current


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--layer-mb", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chaser-bench-images-"))
    work.chmod(0o711)
    data = oci.file("data/blob", os.urandom(args.layer_mb << 20))
    layout = oci.write_layout(work / "layout", [oci.host_files_layer(), [oci.directory("data"), data]],
                              env=["PATH=/usr/bin:/bin"])
    size = sum(p.stat().st_size for p in (layout.path / "blobs" / "sha256").iterdir())
    with running_registry(work / "registry") as reg, running_server() as srv:
        ref = oci.push(layout, reg.host, "bench/debian:1")
        print(f"image: two layers, {size / 1e6:.1f} MB compressed, from {reg.host}")
        t = time.perf_counter()
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                        f"docker://{ref}", f"dir:{work / 'skopeo-dir'}"], check=True)
        skopeo_s = time.perf_counter() - t
        with srv.client(timeout=600) as c:
            t = time.perf_counter()
            marks = {}
            with c.stream("POST", "/v1/images/pull", json={"image": ref},
                          headers={"Accept": "text/event-stream"}) as r:
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        marks[line.split(":", 1)[1].strip()] = time.perf_counter() - t
            pull_s = marks["done"]
            download_s = marks["unpacking"] - marks["resolved"]
            print(f"  {'pull: download and verify the layers':<48} {download_s * 1000:8.0f} ms "
                  f"{size / 1e6 / download_s:7.1f} MB/s")
            print(f"  {'pull: all (resolve, download, unpack)':<48} {pull_s * 1000:8.0f} ms "
                  f"{size / 1e6 / pull_s:7.1f} MB/s")
            print(f"  {'skopeo copy docker:// -> dir: (floor)':<48} {skopeo_s * 1000:8.0f} ms "
                  f"{size / 1e6 / skopeo_s:7.1f} MB/s   download ratio {download_s / skopeo_s:.2f}")
            t = time.perf_counter()
            first = c.post("/v1/sessions", json={"image": ref}).json()
            print(f"  {'first session start on the fresh image':<48} "
                  f"{(time.perf_counter() - t) * 1000:8.1f} ms")
            c.delete(f"/v1/sessions/{first['id']}")
            rows = []
            for name, image in (("default", "default"), ("image", ref)):
                def once(image: str = image) -> None:
                    c.post("/v1/exec", json={"ephemeral": True, "image": image,
                                             "command": "true"}).raise_for_status()

                def paced(image: str = image) -> None:
                    time.sleep(0.1)  # room for the warm pool to refill: a pool hit
                    t = time.perf_counter()
                    once(image)
                    paced_ms.append((time.perf_counter() - t) * 1000)

                paced_ms: list[float] = []
                timed(paced, args.n, warmup=3)
                eph = report(f"ephemeral exec `true` on {name}, paced 100 ms", paced_ms[3:])
                report(f"ephemeral exec `true` on {name}, back to back", timed(once, args.n))
                sid = c.post("/v1/sessions", json={"image": image}).json()["id"]

                def in_session(sid: str = sid) -> None:
                    c.post(f"/v1/sessions/{sid}/exec", json={"command": "true"}).raise_for_status()

                ses = report(f"session exec `true` on {name}", timed(in_session, args.n))
                time.sleep(0.5)
                pss, current = session_memory(srv, sid)
                print(f"  {'idle session on ' + name:<48} PSS {pss / 1024:6.2f} MB   "
                      f"cgroup memory.current {current / 1024:6.2f} MB")
                c.delete(f"/v1/sessions/{sid}")
                rows.append((eph, ses))
            print(f"  ratio image/default: ephemeral (paced) {rows[1][0] / rows[0][0]:.2f}, "
                  f"session {rows[1][1] / rows[0][1]:.2f} (goal <= 1.2)")
            floor = statistics.median(timed(lambda: c.get("/healthz"), 50))
            print(f"  floor: HTTP round trip (/healthz) p50 {floor:.2f} ms")


if __name__ == "__main__":
    main()
