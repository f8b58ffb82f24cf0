"""Root filesystems for sandboxes.

The built-in `default` image is the host's own `/usr` (read-only) with a short, explicit
list of harmless `/etc` entries: never the host's `/etc` whole, so no shadow file, no
SSH keys, no sudoers. Users, groups and hosts are generated for the sandbox.
"""

from __future__ import annotations

from pathlib import Path

from chaser.errors import ImageNotFound

DEFAULT_IMAGE = "default"
SANDBOX_USER = "user"
SANDBOX_UID = 1000
SANDBOX_HOSTNAME = "sandbox"

# /etc entries a normal userland needs; everything else of the host's /etc stays hidden.
ETC_ALLOWLIST = (
    "alternatives", "bash.bashrc", "ca-certificates", "debian_version", "environment",
    "gai.conf", "host.conf", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "locale.alias", "localtime", "magic", "magic.mime", "mime.types", "nsswitch.conf",
    "os-release", "profile", "protocols", "python3", "python3.11", "services", "shells",
    "skel", "ssl", "terminfo", "timezone", "vim", "xdg", "mailcap",
)

GENERATED_ETC = {
    "passwd": (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:Sandbox user:/home/{SANDBOX_USER}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ),
    "group": f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
    "hosts": f"127.0.0.1 localhost {SANDBOX_HOSTNAME}\n::1 localhost ip6-localhost ip6-loopback\n",
    "hostname": f"{SANDBOX_HOSTNAME}\n",
    "resolv.conf": "# no network in this sandbox\n",
}


def check_image(image: str | None) -> str:
    """Return the image name to use, or raise ImageNotFound."""
    name = image or DEFAULT_IMAGE
    if name != DEFAULT_IMAGE:
        raise ImageNotFound(
            f"image {name!r} is not available: only the built-in {DEFAULT_IMAGE!r} image "
            "exists on this server (OCI image pulls are not supported yet)"
        )
    return name


def write_generated_etc(directory: Path) -> Path:
    """Write the generated /etc files once per server start; return their directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in GENERATED_ETC.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)
    directory.chmod(0o755)
    return directory


def default_root_args(generated_etc: Path) -> list[str]:
    """bubblewrap arguments that lay out the default image's read-only root."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_ALLOWLIST:
        host = Path("/etc") / name
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), f"/etc/{name}"]
        elif host.exists():
            args += ["--ro-bind", str(host), f"/etc/{name}"]
    for name in GENERATED_ETC:
        args += ["--ro-bind", str(generated_etc / name), f"/etc/{name}"]
    return args
