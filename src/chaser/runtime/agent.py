"""The in-sandbox agent: PID 1 of a session's sandbox, which every command is forked from.

It runs inside the sandbox (all namespaces, the cgroup, the unprivileged uid, no
capabilities) with only the standard library, and talks to the server over a
SOCK_SEQPACKET socket on its stdin. The server keeps the pipes: it sends the command's
stdin/stdout/stderr file descriptors with each `spawn` (SCM_RIGHTS), so output never
passes through this process.

Why PID 1 and undumpable: commands run as the agent's uid. As the namespace's init, the
agent ignores every signal a command sends it (SIGKILL and SIGSTOP included), and being
undumpable, no command can ptrace it, read its memory or take its socket with
pidfd_getfd. bwrap runs it with --as-pid-1, so no other process in the sandbox holds a
server channel.

Every command gets a shepherd: a fork of the agent that is a child subreaper
(PR_SET_CHILD_SUBREAPER), forks the command and waits. Whatever the command starts, with
setsid, double forks, nohup or disown, stays below its shepherd, so the command's whole
tree can be ended: a SIGKILL from the server (kill, timeout, abandoned request) kills
the shepherd's whole subtree. When the command's main process exits by itself, the
shepherd reports it at once and stays as the subreaper of what the command left running
(as `docker exec` leaves it), until that ends too or the session does. A command that
kills a shepherd loses its processes: anything orphaned to the agent is killed at once.

Messages are JSON objects, one per packet:
  server -> agent: {"op": "spawn", "id", "argv", "env", "cwd", "stdin": bool} + fds
                   {"op": "spawn", ..., "tty": true, "cols", "rows", "echo"} (no fds)
                   {"op": "kill", "pid", "signal"}
  agent -> server: {"op": "ready"}
                   {"op": "started", "id", "pid"} or {"op": "failed", "id", "error", "reason"}
                   (a tty spawn's "started" carries the terminal's master fd)
A tty spawn runs the command on a new terminal of the sandbox's own /dev/pts, as its
controlling terminal; the server reads and writes the master side.
                   {"op": "exit", "id", "pid", "code", "signal"}
When the server's end closes, the agent exits and the kernel ends the whole sandbox.
"""

from __future__ import annotations

# Only C modules besides os and sys: this process starts with every sandbox, and the
# pure-Python json, socket and signal pull in re and enum, which doubled its start (CPU
# that a busy server pays on every session and one-shot run).
import _signal as signal  # type: ignore[import-not-found]  # (no stub: signal without enum)
import _socket as socket
import errno
import os
import select
import sys
import time

TYPE_CHECKING = False  # typing itself costs a start what the C modules save
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from typing import Any, NoReturn

    Message = dict[str, Any]  # a decoded protocol message

try:
    import _json
except ImportError:  # an interpreter built without the accelerator
    _json = None  # type: ignore[assignment]

MAX_PACKET = 8 * 1024 * 1024
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 200
START_TIMEOUT_S = 10.0
FORK_PATIENCE_S = 2.0


def send(sock: socket.socket, msg: Message) -> None:
    sock.send(dumps(msg).encode())


def dumps(msg: Message) -> str:
    """JSON of a flat message (str, int, bool or None values), as json.dumps makes it."""
    if _json is None:
        import json

        return json.dumps(msg)
    parts: list[str] = []
    for key, value in msg.items():
        if value is None or value is True or value is False:
            text = {None: "null", True: "true", False: "false"}[value]
        elif isinstance(value, int):
            text = str(int(value))
        else:
            text = _json.encode_basestring_ascii(str(value))
        parts.append(_json.encode_basestring_ascii(key) + ":" + text)
    return "{" + ",".join(parts) + "}"


class _Scanning:
    """What _json's scanner reads from its context: plain JSON, as json.loads does."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity


def loads(data: bytes) -> Message:
    """A server message (well-formed JSON: the server made it)."""
    text = data.decode()
    if _json is None:
        import json

        return json.loads(text)
    value, _end = _json.make_scanner(_Scanning())(text, 0)  # type: ignore[arg-type]
    return value  # type: ignore[no-any-return]


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """A packet and the descriptors that came with it (socket.recv_fds, without the
    module)."""
    data, ancdata, _flags, _addr = sock.recvmsg(bufsize, socket.CMSG_LEN(maxfds * 4))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(payload) - len(payload) % 4, 4)]
    return data, fds


def prctl(option: int, value: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort on exotic libcs
        pass


def process_table() -> dict[int, int]:
    """{pid: parent pid} of every live process of this sandbox (its /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" or _has_threads(entry):
            parents[int(entry)] = int(fields[1])
    return parents


def _has_threads(pid: str) -> bool:
    """A zombie thread-group leader whose other threads still run: alive, and killable
    (a SIGKILL to it ends the whole group)."""
    try:
        return len(os.listdir("/proc/%s/task" % pid)) > 1
    except OSError:
        return False


def below(roots: Iterable[int], parents: dict[int, int]) -> set[int]:
    """The pids under any of `roots`, walking parent links down."""
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def descendants(root: int) -> set[int]:
    """Live pids below `root`."""
    return below({root}, process_table())


def kill_until_gone(find: Callable[[], Collection[int]]) -> None:
    """SIGKILL what `find()` names until it names nothing (each round sees what the
    last one's kills orphaned)."""
    for _ in range(KILL_ROUNDS):
        pids = find()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_any()


def kill_tree(root: int) -> None:
    """SIGKILL everything below `root` (orphans of killed processes reparent to `root`,
    a subreaper, so the next round's walk sees them)."""
    kill_until_gone(lambda: descendants(root))


def reap_any() -> list[tuple[int, int]]:
    """Reap exited children without blocking (a subreaper inherits orphans' zombies)."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def fork_patiently() -> int:
    """fork(), waiting out a full process table for a moment: processes of a killed
    tree free their pids as they finish exiting, so a fork just after often succeeds."""
    deadline = time.monotonic() + FORK_PATIENCE_S
    while True:
        try:
            return os.fork()
        except BlockingIOError:  # EAGAIN: at the pids limit
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def exec_command(msg: Message, fds: list[int], gate: int) -> NoReturn:
    """In the forked command: take the pipes, reset what the agent changed, wait at the
    gate until the shepherd has reported it, exec."""
    try:
        # Signals first: once setsid makes the command its own group, the server may
        # signal it, and the agent's ignored SIGINT/SIGTERM must not swallow that.
        for sig in range(1, signal.NSIG):
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        os.read(gate, 1)  # EOF once the shepherd reported us: no user code runs before
        os.umask(0o022)  # the server's own umask (077) is not the command's
        if msg.get("stdin"):
            stdin, out, err = fds
        else:
            stdin = os.open("/dev/null", os.O_RDONLY)
            out, err = fds
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (0, 1, 2):  # dup2 onto itself keeps O_CLOEXEC (os.open sets it)
            os.set_inheritable(fd, True)
        os.closerange(3, 65536)
        if msg.get("tty"):  # a session leader takes its terminal: job control, ^C
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.chdir(msg.get("cwd") or "/")
        os.execve(msg["argv"][0], msg["argv"], msg["env"])
    except BaseException as e:  # noqa: BLE001 - report anything and never return
        try:
            os.write(2, ("chaser: cannot start command: %s\n" % e).encode())
        finally:
            os._exit(127)


def shepherd(msg: Message, fds: list[int], report: int) -> NoReturn:
    """The command's subreaper: fork it, report how it ended, then reap what it left.

    Reports go to the agent through `report` (a pipe): "S pid", then "E code" or
    "K signal"; "F reason" when the command could not be forked.
    """
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    gate_r, gate_w = os.pipe()
    try:
        pid = fork_patiently()
    except OSError as e:
        os.write(report, ("F %s\n" % ("pids" if e.errno == errno.EAGAIN else e.strerror)).encode())
        os._exit(0)
    if pid == 0:
        os.close(report)
        os.close(gate_w)
        exec_command(msg, fds, gate_r)
    # Keep only the report pipe and the gate: the command's pipes must close when its
    # processes end, and the agent's other fds (other commands' report pipes) are none
    # of ours.
    keep = sorted((report, gate_w))
    os.closerange(0, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 65536)
    # Reported once the command leads its own session, so a signal the server sends
    # right away reaches its group (killpg before setsid would find no such group).
    for _ in range(1_000_000):
        try:
            if os.getsid(pid) == pid:
                break
        except ProcessLookupError:
            break
        os.sched_yield()
    os.write(report, ("S %d\n" % pid).encode())
    os.close(gate_w)  # the command may run now: the agent will hear of it first
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)  # everything the command started has ended
        if done != pid:
            continue
        if os.WIFSIGNALED(status):
            os.write(report, ("K %d\n" % os.WTERMSIG(status)).encode())
        else:
            os.write(report, ("E %d\n" % os.WEXITSTATUS(status)).encode())
        os.close(report)


class Agent:
    """PID 1's state: the socket, and the shepherd of every running command."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # shepherd pid -> [request id, command pid, report fd or None]
        self.shepherds: dict[int, list[Any]] = {}
        # report fd -> shepherd pid, until the command's end is reported
        self.reports: dict[int, int] = {}
        self.poll = select.poll()
        # closed after each poll round, so no fd number is reused mid-round
        self.closing: list[int] = []
        self.early: dict[int, str] = {}  # report fd -> what was read past the start line

    def spawn(self, msg: Message, fds: list[int]) -> None:
        cwd = msg.get("cwd") or "/"
        if not os.path.isdir(cwd):
            return self.fail(msg, "cwd does not exist in the sandbox or is not a directory",
                             "invalid_cwd")
        if not msg.get("tty"):
            return self.run(msg, fds, None)
        if fds:
            return self.fail(msg, "cannot start the command: a malformed request (a tty "
                             "spawn carries no file descriptors)", "spawn_failed")
        try:
            master, slave = open_terminal(int(msg["cols"]), int(msg["rows"]),
                                          msg.get("echo") is not False)
        except (OSError, KeyError, ValueError, OverflowError) as e:
            return self.fail(msg, "cannot open a terminal in the sandbox: %s" % e,
                             "spawn_failed")
        msg["stdin"] = True
        try:
            self.run(msg, [slave, slave, slave], master)
        finally:
            os.close(master)
            os.close(slave)

    def run(self, msg: Message, fds: list[int], master: int | None) -> None:
        r, w = os.pipe()
        try:
            pid = fork_patiently()
        except OSError as e:
            os.close(r)
            os.close(w)
            return self.fail_fork(msg, e.errno)
        if pid == 0:
            os.close(r)
            self.sock.close()
            shepherd(msg, fds, w)
        os.close(w)
        line, rest = read_line(r, START_TIMEOUT_S)
        if not line:  # it never said it started (stopped by a command?): end it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if line.startswith("S "):
            self.shepherds[pid] = [msg["id"], int(line[2:]), r]
            if rest:  # a quick command's end, read along with its start
                self.early[r] = rest
            self.reports[r] = pid
            self.poll.register(r, select.POLLIN)
            started = dumps({"op": "started", "id": msg["id"], "pid": int(line[2:])}).encode()
            self.sock.sendmsg([started], [] if master is None else [
                (socket.SOL_SOCKET, socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder))])
            return
        os.close(r)
        reason = line[2:].strip() if line.startswith("F ") else "the command could not start"
        if reason == "pids":
            return self.fail_fork(msg, errno.EAGAIN)
        return self.fail(msg, reason, "spawn_failed")

    def fail_fork(self, msg: Message, err: int | None) -> None:
        if err == errno.EAGAIN:
            return self.fail(msg, "the sandbox is at its process limit (its pids limit): "
                             "the command was not started; end some of its processes, or "
                             "wait for them to exit, and try again", "pids_limit")
        return self.fail(msg, "cannot start the command: %s" % os.strerror(err or errno.EIO),
                         "spawn_failed")

    def fail(self, msg: Message, error: str, reason: str) -> None:
        send(self.sock, {"op": "failed", "id": msg["id"], "error": error, "reason": reason})

    def kill(self, pid: int, sig: int) -> None:
        for shep, (_, cmd_pid, fd) in self.shepherds.items():
            if cmd_pid != pid or fd is None:  # only a command still running
                continue
            if sig == signal.SIGKILL:
                # The main process first: it must die of this signal, not exit 137 after
                # reaping a child that died before it (then it would read as exited).
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kill_tree(shep)
                try:
                    os.kill(shep, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                try:
                    os.killpg(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            return

    def report(self, fd: int) -> None:
        """A shepherd wrote (or closed) its report pipe: send the command's end once."""
        shep = self.reports.pop(fd)
        self.poll.unregister(fd)
        entry = self.shepherds[shep]
        req, cmd_pid, _ = entry
        entry[2] = None
        code, sig = None, signal.SIGKILL  # a shepherd killed before it could report
        for line in (self.early.pop(fd, "") + read_all(fd)).splitlines():
            if line.startswith("E "):
                code, sig = int(line[2:]), None
            elif line.startswith("K "):
                code, sig = None, int(line[2:])
        self.closing.append(fd)
        send(self.sock, {"op": "exit", "id": req, "pid": cmd_pid, "code": code, "signal": sig})

    def reap(self) -> None:
        """Reap every child (PID 1 inherits all orphans); a shepherd gone reports last."""
        swept = False
        for pid, status in reap_any():
            entry = self.shepherds.get(pid)
            if entry is None:
                continue
            if entry[2] is not None:
                self.report(entry[2])
            del self.shepherds[pid]
            if os.WIFSIGNALED(status) and not swept:
                self.sweep()  # a killed shepherd orphaned its command's processes to us
                swept = True

    def sweep(self) -> None:
        """Kill every process that is not a shepherd nor below one: what a killed
        shepherd left, which no command answers for any more. Whole chains at once:
        each round takes everything stray, however deep."""
        me = os.getpid()

        def strays() -> list[int]:
            parents = process_table()
            kept = {me, *self.shepherds} | below(self.shepherds, parents)
            return [p for p in parents if p not in kept]

        kill_until_gone(strays)

    def handle(self, data: bytes, fds: list[int]) -> None:
        msg = loads(data)
        if msg["op"] == "spawn":
            try:
                self.spawn(msg, fds)
            finally:
                for fd in fds:
                    os.close(fd)
        elif msg["op"] == "kill":
            for fd in fds:
                os.close(fd)
            self.kill(msg["pid"], msg["signal"])


def open_terminal(cols: int, rows: int, echo: bool) -> tuple[int, int]:
    """A new terminal of this sandbox's devpts, `cols` x `rows`: (master, slave), echo
    off before the command runs unless `echo` (a shell saves the state as it starts)."""
    import fcntl
    import struct
    import termios

    if not (1 <= cols <= 65535 and 1 <= rows <= 65535):
        raise ValueError("a terminal's size is 1-65535 columns and rows")
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    if not echo:
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


def read_line(fd: int, timeout: float) -> tuple[str, str]:
    """The first line from a pipe (within `timeout` seconds), and what was read past it."""
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return "", ""
        try:
            chunk = os.read(fd, 64)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    line, _, rest = data.decode(errors="replace").partition("\n")
    return line, rest


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def main() -> None:
    prctl(PR_SET_DUMPABLE, 0)
    sock = socket.socket(fileno=0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    agent = Agent(sock)
    agent.poll.register(sock, select.POLLIN)
    agent.poll.register(wake_r, select.POLLIN)
    send(sock, {"op": "ready", "pid": os.getpid()})
    while True:
        try:
            ready = [fd for fd, _ in agent.poll.poll()]
        except InterruptedError:
            continue
        for fd in ready:
            if fd in agent.closing:
                continue
            if fd == wake_r:
                os.read(wake_r, 4096)
            elif fd in agent.reports:
                agent.report(fd)
            elif fd == sock.fileno():
                try:
                    data, fds = recv_fds(sock, MAX_PACKET, 3)
                except InterruptedError:
                    continue
                if not data:
                    return
                agent.handle(data, fds)
        agent.reap()
        for fd in agent.closing:
            os.close(fd)
        agent.closing.clear()


if __name__ == "__main__":
    main()
