"""Building the runtime's two small C programs when the server starts.

- the in-sandbox agent (`agent.c`): linked statically, so a sandbox needs nothing from
  its image to start it (no libc, no interpreter, no shell). Without a C compiler or a
  static libc, `build_agent` returns None and sandboxes fall back to the Python agent
  (`agent.py`, run by the default image's python3), which pulled images cannot use.
- the sandbox launcher (`launch.c`), the host process between the server and bwrap;
  without it the server launches through `sh` and `setpriv`, a few ms slower.

Both are compiled on the host rather than shipped as binaries: the sources are
reviewable, and the results match the host's architecture. A build is kept under a name
derived from its source and flags, so an unchanged program is compiled once and reused
by every later start.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("chaser.runtime")

SOURCE = Path(__file__).with_name("agent.c")
# Sources agent.c includes: part of what a build is named by.
INCLUDED = (Path(__file__).with_name("agent_files.c"),)
LAUNCH_SOURCE = Path(__file__).with_name("launch.c")
# No -Werror here: a newer compiler's new warning must not silently cost a server its
# static agent (the test suite builds with -Werror, where a warning is a finding).
CFLAGS = ("-static", "-O2", "-s", "-Wall", "-Wextra")
# The compiler sees nothing of the server's environment (CC, CFLAGS, GCC_EXEC_PREFIX or
# LD_LIBRARY_PATH could change what it builds).
BUILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}
BUILD_TIMEOUT_S = 120
NAME_PREFIX = "agent-"
LAUNCH_PREFIX = "launch-"


def compiler() -> str | None:
    """The host's C compiler (`cc`, else `gcc`), or None."""
    for name in ("cc", "gcc"):
        path = shutil.which(name, path=BUILD_ENV["PATH"])
        if path:
            return path
    return None


def build_agent(out_dir: Path, source: Path = SOURCE) -> Path | None:
    """The static agent built from `source` into `out_dir` (a directory of its own:
    earlier builds in it are removed), or None when this host cannot build it (a
    warning says why; sandboxes then run the Python agent)."""
    return _build(out_dir, source, NAME_PREFIX, "the static agent", _runs,
                  "sandboxes use the Python agent, and images other than 'default' "
                  "cannot run")


def build_launcher(out_dir: Path) -> Path | None:
    """The sandbox launcher built into `out_dir` (a directory of its own), or None when
    this host cannot build it (sandboxes then start through sh and setpriv)."""
    return _build(out_dir, LAUNCH_SOURCE, LAUNCH_PREFIX, "the sandbox launcher",
                  _launcher_runs, "sandboxes start through sh and setpriv, a few ms slower")


def _build(out_dir: Path, source: Path, prefix: str, what: str,
           runs: Callable[[Path], bool], fallback: str) -> Path | None:
    """`source` built statically into `out_dir`, named by a hash of the source and
    flags: one already built from the same source is returned as it is, and other
    builds of earlier sources are removed. A build is written under a temporary name
    and renamed into place, so a crash or a concurrent start never leaves a partial
    binary under the final name."""
    code = source.read_bytes()
    if source.name == SOURCE.name:
        code += b"".join(b"\0" + path.read_bytes() for path in INCLUDED)
    digest = hashlib.sha256(code + b"\0" + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = out_dir / f"{prefix}{digest}"
    if not target.is_file():
        cc = compiler()
        if cc is None:
            log.warning("no C compiler (cc or gcc) on this host: %s; install gcc and "
                        "libc6-dev (scripts/install.sh does)", fallback)
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        if not _compile(cc, source, target, what, runs, fallback):
            return None
    for path in out_dir.glob(prefix + "*"):
        if path != target:
            with contextlib.suppress(OSError):
                path.unlink()
    return target


def _compile(cc: str, source: Path, target: Path, what: str, runs: Callable[[Path], bool],
             fallback: str) -> bool:
    """Compile `source` to `target` atomically; False (with a warning) on failure."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # -I: what agent.c includes is found beside the package's copy too
        proc = subprocess.run([cc, *CFLAGS, "-I", str(SOURCE.parent), "-o", str(tmp),
                               str(source)], env=BUILD_ENV,
                              cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()[-600:]
            log.warning("cannot build %s with %s (%s; a static libc is needed: install "
                        "libc6-dev): %s", what, cc, fallback, detail)
            return False
        if not runs(tmp):
            log.warning("%s built with %s does not run on this host (%s)", what, cc, fallback)
            return False
        tmp.chmod(0o755)
        os.replace(tmp, target)
        log.info("built %s: %s", what, target)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("cannot build %s with %s (%s): %s", what, cc, fallback, e)
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _runs(binary: Path) -> bool:
    """Whether `binary` runs here, tried through its harmless one-shot entry (`exec`,
    running /bin/true). Never its agent mode on the host: that is for PID 1 of a
    sandbox only (it refuses to run as anything else)."""
    proc = subprocess.run([str(binary), "exec"], env={"__SANDBOX_SHELL": "/bin/true"},
                          cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return proc.returncode == 0


def _launcher_runs(binary: Path) -> bool:
    """Whether the launcher runs here: asked to launch nothing, it says how it is used
    and exits 126 (its one failure code)."""
    proc = subprocess.run([str(binary)], env={}, cwd="/", stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)
    return proc.returncode == 126 and b"usage" in proc.stderr
