"""What downloads nobody reads cost the server (issue 15, files red team).

Run as root: `.venv/bin/python bench/stalled_downloads.py [--sessions 5] [--per-session 16]`.
Starts a server of its own, writes a 50 MB file in each of N sessions, then opens
`sessions x per-session` downloads of it on raw sockets that send the request and never
read, and prints the server's RSS before and after (the median of three samples taken a
second apart once the stalled downloads have filled what they fill). The send-stall
timeout is set far above the run, so every download is still held when measured.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from _common import running_server


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def sample(pid: int) -> int:
    values = []
    for _ in range(3):
        values.append(rss_kb(pid))
        time.sleep(1)
    return int(statistics.median(values))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--per-session", type=int, default=16)
    args = ap.parse_args()
    n = args.sessions * args.per_session
    env = {"CHASER_FILE_OPS_PER_TENANT": str(n), "CHASER_FILE_OPS_TOTAL": str(n),
           "CHASER_FILE_SEND_STALL_S": "3600", "CHASER_FILE_OP_IDLE_S": "3600"}
    with running_server(env) as srv, srv.client() as c:
        assert srv.proc is not None
        sids = []
        for _ in range(args.sessions):
            sid = c.post("/v1/sessions", json={}).json()["id"]
            r = c.post(f"/v1/sessions/{sid}/exec",
                       json={"command": "head -c 50000000 /dev/urandom > /tmp/z"})
            assert r.status_code == 200, r.text
            sids.append(sid)
        c.get(f"/v1/sessions/{sids[0]}/files", params={"path": "/tmp/z"},
              headers={"Range": "bytes=0-9"})  # warm every code path once
        before = sample(srv.proc.pid)
        held = []
        for sid in sids:
            for _ in range(args.per_session):
                s = socket.create_connection(("127.0.0.1", srv.port))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall((f"GET /v1/sessions/{sid}/files?path=/tmp/z HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {srv.admin_key}\r\n\r\n").encode())
                held.append(s)
        time.sleep(3)
        after = sample(srv.proc.pid)
        print(f"{n} stalled downloads ({args.sessions} sessions x {args.per_session}): "
              f"server RSS {before / 1024:.0f} MB -> {after / 1024:.0f} MB, "
              f"{(after - before) / n:.0f} KB per download")
        for s in held:
            s.close()


if __name__ == "__main__":
    main()
