"""Build OCI images for tests: layers from Python, written as an OCI layout, pushed to a
real registry with skopeo. Crafted layers (escapes, devices, bombs) are built the same
way, since a registry stores whatever blob it is given."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/usr/bin/busybox")  # Debian's busybox-static: no libc needed
BUSYBOX_APPLETS = ("sh", "cat", "echo", "ls", "sleep", "env", "id", "pwd", "sha256sum",
                   "head", "tr", "wc", "true", "false", "kill", "stat", "touch", "rm", "printf")


@dataclass
class Entry:
    """One tar entry: a file (data), a directory, a symlink, a hard link or a device."""

    name: str
    data: bytes | None = None
    kind: bytes = tarfile.REGTYPE
    mode: int = 0o644
    link: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def file(name: str, data: bytes | str, mode: int = 0o644) -> Entry:
    return Entry(name, data.encode() if isinstance(data, str) else data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, kind=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, kind=tarfile.SYMTYPE, link=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, kind=tarfile.LNKTYPE, link=target)


def layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode = e.mode
            info.linkname = e.link
            info.pax_headers = e.pax
            if e.kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            data = e.data or b""
            info.size = len(data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if e.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def busybox_layer() -> list[Entry]:
    """A root with only busybox (static) and its applets as symlinks."""
    entries = [directory("bin"), file("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    entries += [symlink(f"bin/{a}", "busybox") for a in BUSYBOX_APPLETS]
    return entries


@dataclass
class Layout:
    """An OCI image layout on disk."""

    path: Path
    tag: str
    manifest_digest: str


def write_layout(path: Path, layers: list[bytes | list[Entry]], *, tag: str = "latest",
                 env: list[str] | None = None, workdir: str = "", user: str = "",
                 cmd: list[str] | None = None, gzip_layers: bool = True) -> Layout:
    """Write an OCI layout with `layers` (entries, or raw tar bytes) and a config."""
    shutil.rmtree(path, ignore_errors=True)
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    descriptors, diff_ids = [], []
    for layer in layers:
        raw = layer if isinstance(layer, bytes) else layer_tar(layer)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = gzip.compress(raw, mtime=0) if gzip_layers else raw
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descriptors.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": env or ["PATH=/usr/local/bin:/usr/bin:/bin"],
                         "WorkingDir": workdir, "User": user, "Cmd": cmd or ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_bytes = json.dumps(config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config_bytes), "size": len(config_bytes)},
        "layers": descriptors}).encode()
    manifest_digest = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return Layout(path, tag, manifest_digest)


def write_index(path: Path, variants: dict[str, list[bytes | list[Entry]]],
                tag: str = "latest") -> Layout:
    """A multi-platform image: one manifest per `os/arch` of `variants`, listed by an
    image index (what `docker buildx --platform a,b` pushes). The layout's digest is the
    index's."""
    manifests = []
    for platform_name, layers in variants.items():
        one = write_layout(path.with_name(path.name + "-" + platform_name.replace("/", "-")),
                           layers)
        body = (one.path / "blobs" / "sha256" / one.manifest_digest[7:]).read_bytes()
        os_name, arch = platform_name.split("/")
        manifests.append((one, {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": one.manifest_digest, "size": len(body),
                                "platform": {"os": os_name, "architecture": arch}}))
    shutil.rmtree(path, ignore_errors=True)
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for one, _ in manifests:
        for blob in (one.path / "blobs" / "sha256").iterdir():
            shutil.copy(blob, blobs / blob.name)
    index = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [d for _, d in manifests]}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (blobs / digest).write_bytes(index)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
        "size": len(index), "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return Layout(path, tag, "sha256:" + digest)


def push(layout: Layout, registry: str, name: str) -> str:
    """Push the layout (every platform of an index) to `registry` (plain HTTP) as
    `name`; the pushed reference."""
    dest = f"{registry}/{name}"
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                    f"oci:{layout.path}:{layout.tag}", f"docker://{dest}"],
                   check=True, capture_output=True, timeout=120)
    return dest


def host_files_layer(programs: tuple[str, ...] = ("sh", "bash", "true", "cat", "ls", "env",
                                                   "sleep", "id", "sha256sum", "head")
                     ) -> list[Entry]:
    """A Debian-like root from the host's own files: some programs and the libraries
    `ldd` says they need, laid out as Debian's merged /usr is (bin -> usr/bin)."""
    paths: set[str] = set()
    for prog in programs:
        exe = shutil.which(prog)
        if exe is None:
            continue
        real = str(Path(exe).resolve())
        paths.add(real)
        out = subprocess.run(["ldd", real], capture_output=True, text=True).stdout
        for line in out.splitlines():
            for word in line.split():
                if word.startswith("/"):
                    paths.add(str(Path(word).resolve()))
                    paths.add(word)
    entries = [symlink("bin", "usr/bin"), symlink("lib", "usr/lib"), symlink("lib64", "usr/lib64"),
               symlink("sbin", "usr/sbin")]
    dirs: set[str] = set()
    seen: set[str] = set()
    for p in sorted(paths):
        rel = p.lstrip("/")
        if rel.startswith(("lib/", "lib64/", "bin/", "sbin/")):
            rel = "usr/" + rel  # the merged /usr: a link's target is under usr/
        if rel in seen:
            continue
        seen.add(rel)
        parent = str(Path(rel).parent)
        for i in range(1, len(Path(parent).parts) + 1):
            d = "/".join(Path(parent).parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(directory(d))
        if Path(p).is_symlink():  # the loader's link: its target is included as well
            entries.append(symlink(rel, os.readlink(p)))
        else:
            entries.append(file(rel, Path(p).read_bytes(), 0o755))
    for prog in programs:
        exe = shutil.which(prog)
        if exe and Path(exe).resolve().name != prog:
            entries.append(symlink(f"usr/bin/{prog}", str(Path(exe).resolve())))
    entries.append(directory("etc"))
    entries.append(file("etc/debian_version", "12\n"))
    return entries


def distroless_layer() -> list[Entry]:
    """A root with no shell at all: one static program (busybox, renamed) and /etc."""
    return [directory("app"), file("app/tool", BUSYBOX.read_bytes(), 0o755),
            directory("etc"), file("etc/os-release", "NAME=distroless-ish\n")]
