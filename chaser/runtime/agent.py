"""The in-sandbox agent: the long-lived process every command of a sandbox is forked from.

It runs inside the sandbox (all namespaces, the cgroup, the unprivileged uid, no
capabilities) with only the standard library, and talks to the server over a
SOCK_SEQPACKET socket on its stdin. The server keeps the pipes: it sends the command's
stdin/stdout/stderr file descriptors with each `spawn` (SCM_RIGHTS), so output never
passes through this process.

Messages are JSON objects, one per packet:
  server -> agent: {"op": "spawn", "id", "argv", "env", "cwd", "stdin": bool} + fds
                   {"op": "kill", "pid", "signal"}
  agent -> server: {"op": "ready"}
                   {"op": "started", "id", "pid"} or {"op": "failed", "id", "error"}
                   {"op": "exit", "id", "pid", "code", "signal"}
When the server's end closes, the agent exits and the sandbox goes with it.
"""

import json
import os
import select
import signal
import socket
import sys

MAX_PACKET = 4 * 1024 * 1024


def send(sock, msg):
    sock.send(json.dumps(msg).encode())


def spawn(msg, fds):
    """Fork the command in a new session (so its whole tree is one process group)."""
    cwd = msg.get("cwd") or "/"
    if not os.path.isdir(cwd):
        return None, "cwd %s does not exist or is not a directory" % cwd
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if msg.get("stdin"):
                stdin, out, err = fds
            else:
                stdin = os.open("/dev/null", os.O_RDONLY)
                out, err = fds
            os.dup2(stdin, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.closerange(3, 65536)
            for sig in range(1, signal.NSIG):  # ignored signals would be inherited
                if sig not in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        signal.signal(sig, signal.SIG_DFL)
                    except (OSError, ValueError):
                        pass
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.chdir(cwd)
            os.execve(msg["argv"][0], msg["argv"], msg["env"])
        except BaseException as e:  # noqa: BLE001 - report anything and never return
            try:
                os.write(2, ("chaser: cannot start command: %s\n" % e).encode())
            finally:
                os._exit(127)
    return pid, None


def make_undumpable():
    """Commands run as the agent's uid; an undumpable agent cannot be traced by them, nor
    its /proc entries (fds, memory) read. Commands get dumpable back when they exec."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: BLE001 - best effort on exotic libcs
        pass


def main():
    make_undumpable()
    sock = socket.socket(fileno=0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children = {}  # pid -> request id
    send(sock, {"op": "ready", "pid": os.getpid()})
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        if sock in ready:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 3)
            except InterruptedError:
                continue
            if not data:
                return
            msg = json.loads(data)
            if msg["op"] == "spawn":
                pid, error = spawn(msg, fds)
                for fd in fds:
                    os.close(fd)
                if pid is None:
                    send(sock, {"op": "failed", "id": msg["id"], "error": error})
                else:
                    children[pid] = msg["id"]
                    send(sock, {"op": "started", "id": msg["id"], "pid": pid})
            elif msg["op"] == "kill":
                pid, sig = msg["pid"], msg["signal"]
                if pid in children:
                    try:
                        os.killpg(pid, sig)
                    except ProcessLookupError:
                        pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            req = children.pop(pid, None)
            if req is None:
                continue
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            send(sock, {"op": "exit", "id": req, "pid": pid, "code": code, "signal": sig})


if __name__ == "__main__":
    sys.exit(main())
