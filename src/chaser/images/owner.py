"""Work on the image cache's files, done as the cache's own unprivileged host uid.

Image content is hostile input, and a pull is a tenant's request: nothing that reads
layers or touches files made from them runs as root. The cache owner is a host uid no
sandbox ever runs as (the first of this data dir's uid block); its helpers get a fixed
environment, an argv of server-made values only, and the files they work on as
inherited descriptors or paths inside the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # installed for the default image; readable by any uid
FIXED_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
UNPACK_SOURCE = (Path(__file__).with_name("unpack.py")).read_text()
# Delete a tree the owner made, whatever modes its image gave its directories.
REMOVE_TREE = 'chmod -R u+rwX -- "$1" 2>/dev/null; rm -rf -- "$1"'


class Owner:
    """Runs helpers as the image cache's uid."""

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.setpriv = shutil.which("setpriv") or "setpriv"
        python = SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else None
        self.python = python or shutil.which("python3") or "python3"

    def _argv(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:  # tests of the cache as a plain user: already unprivileged
            return argv
        # --pdeathsig: a helper never outlives the server (a hung unpack would otherwise
        # hold its files, and nothing would ever end it).
        return [self.setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=KILL", "--", *argv]

    async def run(self, argv: list[str], stdin: bytes = b"", pass_fds: tuple[int, ...] = (),
                  timeout: float | None = None,
                  tmpdir: Path | None = None) -> tuple[int, bytes, bytes]:
        """Run `argv` as the owner; (exit code, stdout, stderr). Killed at `timeout`.
        `tmpdir`, a directory of the owner's, is its TMPDIR and HOME."""
        env = dict(FIXED_ENV)
        if tmpdir is not None:
            env.update(TMPDIR=str(tmpdir), HOME=str(tmpdir))
        proc = await asyncio.create_subprocess_exec(
            *self._argv(argv), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd="/", pass_fds=pass_fds,
            start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except BaseException:  # timed out or cancelled: the helper must not outlive us
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        return proc.returncode or 0, out, err

    async def unpack(self, plan: bytes, pass_fds: tuple[int, ...],
                     timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run the unpacker (`unpack.py`, from its source: no path of ours to reach)."""
        return await self.run([self.python, "-I", "-S", "-c", UNPACK_SOURCE], plan, pass_fds,
                              timeout)

    async def remove_tree(self, path: Path) -> None:
        """Delete a tree of the owner's (never as root: its links are an image's)."""
        if not path.exists() and not path.is_symlink():
            return
        await self.run(["/bin/sh", "-c", REMOVE_TREE, "sh", str(path)], timeout=600)

    def chown_new(self, path: Path) -> None:
        """Give a directory the server just made (empty) to the owner."""
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.uid, follow_symlinks=False)
