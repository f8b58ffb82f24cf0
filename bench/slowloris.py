"""What a slowloris flood does to everyone else's requests (connections red team).

Run: `.venv/bin/python bench/slowloris.py [--flood 19000] [--sources 4] [--seconds 10]`.
Starts a server of its own (CHASER_* settings in the environment reach it), measures
/healthz from 127.0.0.1 on a fresh connection per request (as another tenant's client
would connect), then opens `--flood` connections from 127.0.0.2... (`--sources`
addresses) that each send a request line and one header and never the blank line,
re-opening any the server closes, and measures /healthz again while they are held.
Prints medians, the share answered 200, and the server's open descriptors; the floor
beside them is the same request with no flood.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import statistics
import threading
import time

import httpx

from _common import running_server

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def probe(url: str, seconds: float) -> tuple[list[float], int, int]:
    """Milliseconds of each /healthz answered 200, how many were asked, and how many of
    them failed (an error, a timeout or another status)."""
    times, asked, failed = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked += 1
        began = time.perf_counter()
        try:
            ok = httpx.get(url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            times.append((time.perf_counter() - began) * 1000)
        else:
            failed += 1
        time.sleep(0.05)
    return times, asked, failed


class Flood:
    """`n` connections that never finish their request, re-opened when closed."""

    def __init__(self, port: int, n: int, sources: int) -> None:
        self.port, self.n, self.sources = port, n, sources
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, i: int) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((f"127.0.0.{2 + i % self.sources}", 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return
        self.sel.register(s, selectors.EVENT_WRITE, i)

    def _run(self) -> None:
        for i in range(self.n):
            self._connect(i)
        while not self.stop.is_set():
            for key, events in self.sel.select(0.2):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                if events & selectors.EVENT_WRITE and key.events == selectors.EVENT_WRITE:
                    try:
                        s.send(HEAD)
                        self.opened += 1
                        self.sel.modify(s, selectors.EVENT_READ, key.data)
                    except OSError:
                        self._reopen(s, key.data)
                    continue
                try:
                    if not s.recv(4096):
                        self._reopen(s, key.data)
                except OSError:
                    self._reopen(s, key.data)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def _reopen(self, s: socket.socket, i: int) -> None:
        self.sel.unregister(s)
        s.close()
        self._connect(i)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def report(label: str, result: tuple[list[float], int, int]) -> None:
    times, asked, failed = result
    p50 = f"{statistics.median(times):.1f} ms" if times else "none answered"
    print(f"{label}: /healthz p50 {p50}, {asked - failed}/{asked} answered 200")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flood", type=int, default=19000)
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with running_server() as srv:
        assert srv.proc is not None
        report("floor (no flood)", probe(srv.url, a.seconds))
        flood = Flood(srv.port, a.flood, a.sources)
        flood.thread.start()
        time.sleep(3)  # the flood is in
        print(f"flood of {a.flood} from {a.sources} addresses: server holds {fds(srv.proc.pid)} "
              f"descriptors")
        report("under the flood", probe(srv.url, a.seconds))
        print(f"server descriptors at the end: {fds(srv.proc.pid)}; flood connections "
              f"(re)opened: {flood.opened}")
        flood.stop.set()
        flood.thread.join()
        log = srv.log()
    print(f"server log: {log.count('Traceback')} tracebacks, "
          f"{log.count('out of system resource')} accept errors")


if __name__ == "__main__":
    main()
