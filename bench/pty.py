"""Terminals (issue 13, "Speed"): keystroke echo, bulk output, idle memory.

Run as root: `.venv/bin/python bench/pty.py [--echo N] [--mb 100] [--idle 100]`. Prints
  - keystroke echo round trip: one key typed into bash's line editor until its echo is
    back (then a backspace, timed too), through the PTY WebSocket with the SDK's `Pty`,
    beside the floor: the same bash on a local pseudo-terminal (`os.openpty`), and
    `docker exec -it` where a Docker engine runs or can be started;
  - throughput: `cat` of a 100 MB file through a terminal (MB/s), beside `cat` of the
    same bytes on a local pseudo-terminal, and through the socket in exec mode (no
    terminal: the ceiling of the socket and the SDK); meanwhile a process of its own times
    `GET /healthz` and a foreground `exec` in another session (p50/p99, and the same
    while idle), to show the server stays responsive;
  - memory: the server's RSS and the sandbox processes' PSS, before and with 100 idle
    terminals attached.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from _common import docker_engine, docker_image, pct, pss_kb, running_server, sandbox_pids

from chaser.client import Client, Pty  # noqa: E402  (after _common put the repo on the path)

KEY, BACKSPACE = b"a", b"\x7f"
LINE = b"0123456789abcdef" * 4 + b"\n"  # 65 bytes a line: text, as a terminal shows
MB = 1e6


def ms_line(name: str, ms: list[float]) -> None:
    print(f"  {name:<44} p50 {pct(ms, 50):8.3f} ms   p99 {pct(ms, 99):8.3f} ms   "
          f"(n={len(ms)})")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- a local pseudo-terminal: the floor ---------------------------------------------


class LocalPty:
    """A program on a local pseudo-terminal (its controlling terminal)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()

        def controlling_tty() -> None:  # after setsid (start_new_session)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=controlling_tty,
                                     env=env, close_fds=True)
        os.close(slave)

    def read(self, timeout: float = 5.0) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            raise TimeoutError("no output from the local terminal")
        try:
            return os.read(self.master, 1 << 16)
        except OSError:  # EIO: the program ended
            return b""

    def drain(self, quiet: float = 0.5) -> None:
        while select.select([self.master], [], [], quiet)[0]:
            if not self.read():
                return

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def echo_times(send: Callable[[bytes], object], read: Callable[[], bytes], n: int) -> list[float]:
    """Milliseconds from a key sent to its echo read (a key, then a backspace, n each)."""
    out: list[float] = []
    for i in range(n + 20):
        for key in (KEY, BACKSPACE):
            t = time.perf_counter()
            send(key)
            if not read():
                raise RuntimeError("the terminal ended during the echo test")
            if i >= 20:  # warm-up
                out.append((time.perf_counter() - t) * 1000)
    return out


BASH_ENV = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "PS1": "$ ", "HOME": "/tmp"}


def local_echo(n: int) -> list[float]:
    term = LocalPty(["bash", "--norc", "--noprofile", "-i"], BASH_ENV)
    try:
        term.drain()
        return echo_times(lambda b: os.write(term.master, b), term.read, n)
    finally:
        term.close()


def drain_pty(term: Pty, quiet: float = 0.5) -> None:
    from chaser.client import TimeoutError as SdkTimeout

    try:
        while term.read(timeout=quiet):
            pass
    except SdkTimeout:
        pass


def ws_echo(client: Client, session_id: str, n: int) -> list[float]:
    with client.pty(session_id, "human") as term:
        drain_pty(term, 1.0)
        return echo_times(term.send, lambda: term.read(timeout=5), n)


def docker_echo(n: int) -> list[float] | None:
    """`docker exec -it CONTAINER sh`'s echo, on a local terminal; None without Docker."""
    with docker_engine() as up:
        if not up:
            return None
        image = docker_image()
        cid = subprocess.run(["docker", "run", "-d", "--network", "none", image,
                              "sleep", "infinity"], capture_output=True, text=True,
                             check=True).stdout.strip()
        term = LocalPty(["docker", "exec", "-it", cid, "sh"])
        try:
            term.drain(1.0)
            return echo_times(lambda b: os.write(term.master, b), term.read, n)
        finally:
            term.close()
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


# ---- throughput ---------------------------------------------------------------------


def local_cat(path: Path) -> float:
    """MB/s of `cat path` on a local pseudo-terminal (the floor)."""
    term = LocalPty(["cat", str(path)])
    t, got = time.perf_counter(), 0
    while chunk := term.read(30):
        got += len(chunk)
    elapsed = time.perf_counter() - t
    term.close()
    return path.stat().st_size / MB / elapsed


def ws_cat(client: Client, session_id: str, size: int) -> tuple[float, int]:
    """MB/s of `cat` of `size` bytes through a terminal; and the bytes received."""
    with client.pty(session_id, "human", cols=200, rows=50) as term:
        drain_pty(term)
        t, got = time.perf_counter(), 0
        term.send(b"cat /tmp/big; exit\n")
        for chunk in term:
            got += len(chunk)
        elapsed = time.perf_counter() - t
    return size / MB / elapsed, got


def ws_exec_cat(client: Client, session_id: str, size: int) -> float:
    """MB/s of the same `cat` in exec mode (no terminal): the socket's own ceiling."""
    term = client.pty(session_id, "exec", command="cat /tmp/big")
    t = time.perf_counter()
    got = sum(len(chunk) for chunk in term)
    elapsed = time.perf_counter() - t
    assert got == size, (got, size)
    return size / MB / elapsed


PROBE = """
import json, select, sys, time, httpx
url, key, sid = sys.argv[1:4]
out = {"healthz": [], "exec": []}
with httpx.Client(base_url=url, headers={"Authorization": "Bearer " + key}, timeout=60) as c:
    while not select.select([sys.stdin], [], [], 0)[0]:
        t = time.perf_counter(); c.get("/healthz")
        out["healthz"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter(); c.post(f"/v1/sessions/{sid}/exec", json={"command": "true"})
        out["exec"].append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)
print(json.dumps(out))
"""


class Prober:
    """A process of its own timing other requests while the benchmark runs."""

    def __init__(self, url: str, key: str, session_id: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, url, key, session_id],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, list[float]]:
        out, _ = self.proc.communicate("stop\n", timeout=120)
        result: dict[str, list[float]] = json.loads(out)
        return result


def probe_for(url: str, key: str, session_id: str, seconds: float) -> dict[str, list[float]]:
    prober = Prober(url, key, session_id)
    time.sleep(seconds)
    return prober.stop()


# ---- memory -------------------------------------------------------------------------


def idle_memory(client: Client, server_pid: int, srv_pids: Callable[[], set[str]],
                session_id: str, count: int) -> tuple[int, int, int, int]:
    """(server RSS KiB before, with `count` idle terminals; sandbox PSS before, with)."""
    time.sleep(1)
    rss0, pss0 = rss_kb(server_pid), pss_kb(srv_pids())
    terms = [client.pty(session_id, "human") for _ in range(count)]
    try:
        for term in terms:
            term.read(timeout=30)  # the shell is up: its prompt came
        time.sleep(2)
        return rss0, rss_kb(server_pid), pss0, pss_kb(srv_pids())
    finally:
        for term in terms:
            term.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--echo", type=int, default=300, help="keys per echo test")
    parser.add_argument("--mb", type=int, default=100, help="size of the cat test (MB)")
    parser.add_argument("--idle", type=int, default=100, help="idle terminals")
    args = parser.parse_args()
    with running_server() as srv, Client(srv.url, srv.admin_key) as client:
        assert srv.admin_key is not None and srv.proc is not None
        main_session = client.sessions.create()
        other = client.sessions.create()

        print("keystroke echo round trip (a key, then a backspace, into bash)")
        floor = local_echo(args.echo)
        ms_line("local pseudo-terminal (floor)", floor)
        ms_line("PTY WebSocket (SDK Pty, human mode)", ws_echo(client, main_session.id,
                                                             args.echo))
        docker = docker_echo(args.echo)
        if docker is None:
            print("  docker exec -it: skipped (no Docker engine can be started here)")
        else:
            ms_line("docker exec -it (sh)", docker)

        size = args.mb * 1_000_000
        print(f"\nthroughput: cat of a {args.mb} MB text file through a terminal")
        lines = size // len(LINE)
        made = main_session.exec(f"yes {LINE[:-1].decode()} | head -n {lines} > /tmp/big "
                                 "&& stat -c %s /tmp/big", timeout_ms=600_000)
        size = int(made.output.strip())
        local = Path("/tmp") / f"chaser-bench-pty-{os.getpid()}"
        local.write_bytes(LINE * lines)
        try:
            print(f"  local pseudo-terminal (floor)                {local_cat(local):8.1f} MB/s")
        finally:
            local.unlink()
        idle_probe = probe_for(srv.url, srv.admin_key, other.id, 3.0)
        prober = Prober(srv.url, srv.admin_key, other.id)
        rate, got = ws_cat(client, main_session.id, size)
        busy = prober.stop()
        print(f"  PTY WebSocket (SDK Pty, human mode)          {rate:8.1f} MB/s   "
              f"({got / MB:.1f} MB received: the terminal's \\r\\n)")
        print(f"  PTY WebSocket, exec mode (no terminal)       "
              f"{ws_exec_cat(client, main_session.id, size):8.1f} MB/s")
        for name in ("healthz", "exec"):
            print(f"  {name:<8} idle     p50 {pct(idle_probe[name], 50):7.2f} ms  "
                  f"p99 {pct(idle_probe[name], 99):7.2f} ms   (n={len(idle_probe[name])})")
            print(f"  {name:<8} during   p50 {pct(busy[name], 50):7.2f} ms  "
                  f"p99 {pct(busy[name], 99):7.2f} ms   (n={len(busy[name])})")

        print(f"\nmemory: {args.idle} idle terminals (human mode, one session)")
        rss0, rss1, pss0, pss1 = idle_memory(client, srv.proc.pid, lambda: sandbox_pids(srv),
                                             main_session.id, args.idle)
        print(f"  server RSS        {rss0 / 1024:7.1f} MiB -> {rss1 / 1024:7.1f} MiB   "
              f"({(rss1 - rss0) / args.idle:.0f} KiB a terminal)")
        print(f"  sandbox PSS       {pss0 / 1024:7.1f} MiB -> {pss1 / 1024:7.1f} MiB   "
              f"({(pss1 - pss0) / args.idle:.0f} KiB a terminal)")
        for s in (main_session, other):
            s.delete()


if __name__ == "__main__":
    main()
