"""Schemathesis hooks for tests/server/test_schemathesis.py (loaded by `st` through the
config's `hooks`): tar bodies (`application/x-tar`, the archive and image-import uploads)
are sent as the raw bytes generated for them, as octet-stream bodies are; archives of
whole system directories are not downloaded."""

from __future__ import annotations

import posixpath
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-tar")
def tar(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Raw bytes as they are (a `format: binary` string is bytes already)."""
    return value if isinstance(value, bytes) else str(value).encode()


# Top-level directories of a sandbox's root (the host's system, read-only): an archive of
# one (or of `/`) is gigabytes, which schemathesis would read whole into memory for each
# such case. Those ask for /workspace instead; everything else is sent as generated.
SYSTEM = frozenset({"", "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32",
                    "media", "mnt", "opt", "proc", "root", "run", "sbin", "srv", "sys", "usr",
                    "var"})


@schemathesis.hook
def before_call(ctx: schemathesis.HookContext, case: schemathesis.Case[Any],
                **kwargs: Any) -> None:
    """An archive download of a whole system directory (see SYSTEM) gets /workspace's
    instead (a filter would not reach the coverage phase's fixed cases)."""
    query = case.query
    if case.method.upper() != "GET" or not case.path.endswith("/archive") or not query:
        return
    path = query.get("path")
    if isinstance(path, str) and "\0" not in path:
        where = posixpath.normpath(posixpath.join("/workspace", path))
        if where.split("/")[1] in SYSTEM:
            query["path"] = "/workspace"
