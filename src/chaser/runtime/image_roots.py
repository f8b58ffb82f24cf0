"""Sandboxes on pulled images: what each image root is given, and how it is mounted.

Every unpacked root gets the mount points a sandbox needs and the sandbox's own account
files (`prepare_plan`, applied by the unprivileged unpacker inside the root). A sandbox
binds the root read-only as `/`, the agent read-only at `/.chaser/agent` (a static
binary: nothing of the image's libc, shell or interpreter is needed), and private
writable mounts for what a command writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaser.runtime.images import GENERATED_ETC, SANDBOX_UID, SANDBOX_USER

MOUNTPOINTS = ("proc", "dev", "tmp", "workspace", f"home/{SANDBOX_USER}", ".chaser", "run",
               "var/tmp")
AGENT_IN_SANDBOX = "/.chaser/agent"
# Private, writable, sized like the sandbox's disk: what commands write outside
# /workspace and the home directory (the image itself stays read-only).
SCRATCH = ("/run", "/var/tmp")


def prepare_plan() -> dict[str, Any]:
    """What the unpacker adds to every root: mount points, the agent's mount point, and
    /etc files naming the sandbox's user (merged into the image's accounts)."""
    accounts = GENERATED_ETC["passwd"].splitlines()
    user_line = next(line for line in accounts if line.startswith(SANDBOX_USER + ":"))
    group_line = next(line for line in GENERATED_ETC["group"].splitlines()
                      if line.startswith(SANDBOX_USER + ":"))
    return {
        "mountpoints": list(MOUNTPOINTS),
        "mount_files": [AGENT_IN_SANDBOX.lstrip("/")],
        "etc": {name: GENERATED_ETC[name] for name in ("hosts", "hostname", "resolv.conf")},
        "accounts": {
            "passwd": {"name": SANDBOX_USER, "id": SANDBOX_UID, "line": user_line},
            "group": {"name": SANDBOX_USER, "id": SANDBOX_UID, "line": group_line},
        },
    }


def root_args(rootfs: Path, agent: Path, writable: bool = False) -> list[str]:
    """bubblewrap arguments that mount an image's root (the sandbox's own overlay when
    `writable`, else the image itself read-only), with the agent read-only."""
    return ["--bind" if writable else "--ro-bind", str(rootfs), "/",
            "--ro-bind", str(agent), AGENT_IN_SANDBOX]
