"""Root filesystems for sandboxes.

The built-in `default` image is the host's own `/usr` (read-only) with a short, explicit
list of harmless `/etc` entries: never the host's `/etc` whole, so no shadow file, no
SSH keys, no sudoers. Users, groups and hosts are generated for the sandbox.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from chaser.runtime.oneshot import ONESHOT_WRAPPER

DEFAULT_IMAGE = "default"
SANDBOX_USER = "user"
SANDBOX_UID = 1000
SANDBOX_HOSTNAME = "sandbox"
SANDBOX_PYTHON = "/usr/bin/python3"  # the host's /usr is the default image's
STATIC_AGENT = ".chaser/agent"  # in the root; bwrap.py binds it into pulled images too

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


def build_default_root(directory: Path, agent: Path, static_agent: Path | None = None) -> Path:
    """Lay out the default image's root once per server start; sandboxes bind it read-only.

    One prepared directory costs bubblewrap one mount where thirty /etc binds cost
    thirty: this is most of what makes a fresh sandbox cheap. The host's /usr is bound
    on top at run time; /etc holds copies of the allowlist and the generated files.
    `/.chaser` holds the agents: `static_agent` (the C build, when there is one) as
    `agent`, which sandboxes on pulled images bind too, and the Python `agent`
    (`agent.py` and its byte-code), the fallback when there is none.
    """
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("usr", "proc", "dev", "tmp", "workspace", f"home/{SANDBOX_USER}", "etc", "var",
                ".chaser", "run"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            (staging / name).symlink_to(host.readlink())
        elif host.is_dir():
            (staging / name).mkdir()  # a mount point: bound at run time
    (staging / "var" / "tmp").symlink_to("/tmp")
    for name in ETC_ALLOWLIST:
        src, dst = Path("/etc") / name, staging / "etc" / name
        try:
            if src.is_symlink():
                dst.symlink_to(src.readlink())
            elif src.is_dir():
                shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("private"))
            elif src.is_file():
                shutil.copy2(src, dst)
        except OSError:
            continue  # unreadable or vanished: the sandbox simply goes without it
    for name, text in GENERATED_ETC.items():
        (staging / "etc" / name).write_text(text)
    shutil.copy2(agent, staging / ".chaser" / "agent.py")
    _compile(staging / ".chaser" / "agent.py")
    for path in (staging, *staging.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    if static_agent is not None:
        shutil.copyfile(static_agent, staging / STATIC_AGENT)
        (staging / STATIC_AGENT).chmod(0o755)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory


def _compile(source: Path) -> None:
    """Byte-compile the agent beside itself with the interpreter sandboxes run it with,
    so no sandbox start pays for compiling it (a script is never cached)."""
    code = "import py_compile, sys; py_compile.compile(sys.argv[1], sys.argv[2], doraise=True)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([SANDBOX_PYTHON, "-I", "-S", "-c", code, str(source),
                        str(source.with_suffix(".pyc"))],
                       env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def has_static_agent(rootfs: Path) -> bool:
    """Whether the default image's root at `rootfs` holds the static (C) agent."""
    return (rootfs / STATIC_AGENT).is_file()


def agent_argv(rootfs: Path) -> list[str]:
    """How a sandbox starts its agent, by what the default image's root at `rootfs`
    holds: the static one, else the Python one (byte-compiled when that worked)."""
    if has_static_agent(rootfs):
        return ["/" + STATIC_AGENT]
    name = "agent.pyc" if (rootfs / ".chaser" / "agent.pyc").is_file() else "agent.py"
    return [SANDBOX_PYTHON, "-I", "-S", f"/.chaser/{name}"]


def oneshot_argv(rootfs: Path) -> list[str]:
    """A one-shot sandbox's command (the request comes in its environment, see
    oneshot.py): the static agent's `exec` entry, which needs no shell of the image's
    to apply the request, else the shell wrapper."""
    if has_static_agent(rootfs):
        return ["/" + STATIC_AGENT, "exec"]
    return ["/bin/sh", "-c", ONESHOT_WRAPPER]


def root_args(rootfs: Path) -> list[str]:
    """bubblewrap arguments that mount the default image's read-only root."""
    args = ["--ro-bind", str(rootfs), "/", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / name
        if host.is_dir() and not host.is_symlink():
            args += ["--ro-bind", str(host), f"/{name}"]
    return args
