"""The unpacker on its own (as the server runs it: a process reading its plan on stdin,
the root and the layers as inherited descriptors), for what needs no registry."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

from chaser.images.owner import UNPACK_SOURCE
from tests.images import oci


def unpack(tmp_path: Path, layers: list[bytes], nofile: int = 1024) -> dict[str, object]:
    root = tmp_path / "root"
    root.mkdir()
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    for i, data in enumerate(layers):
        blob = tmp_path / f"layer{i}"
        blob.write_bytes(data)
        fds.append(os.open(blob, os.O_RDONLY))
    plan = {"root_fd": fds[0], "max_bytes": 1 << 30, "max_entries": 100_000,
            "layers": [{"fd": fd, "digest": f"sha256:{i}"} for i, fd in enumerate(fds[1:])]}

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    try:
        proc = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", UNPACK_SOURCE],
                              input=json.dumps(plan).encode(), capture_output=True,
                              pass_fds=fds, preexec_fn=few_files, timeout=120)
    finally:
        for fd in fds:
            os.close(fd)
    result: dict[str, object] = json.loads(proc.stdout.decode().splitlines()[-1])
    return result


def test_more_directories_than_open_files(tmp_path: Path) -> None:
    """An image has thousands of directories; the unpacker never holds one descriptor
    per directory (a server started with `ulimit -n 1024` must unpack Debian)."""
    entries = [oci.directory(f"usr/share/d{i}", mode=0o750) for i in range(1500)]
    result = unpack(tmp_path, [oci.layer_tar(entries)], nofile=256)
    assert result.get("ok"), result
    assert (tmp_path / "root/usr/share/d1499").stat().st_mode & 0o777 == 0o750
    assert int(str(result["bytes"])) >= 1500 * 4096  # directories cost blocks too
