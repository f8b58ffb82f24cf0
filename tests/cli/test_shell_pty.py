"""`chaser shell` (no `-c`) and `chaser attach` on a real terminal: a tmux pane.

tmux gives the CLI a real pseudo-terminal (raw mode, SIGWINCH, Ctrl-] as a key) and
shows what is on the screen (`capture-pane`), which is how full-screen programs are
checked. An outer bash in the pane records `stty -g` before and after, and the CLI's
exit code.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_run import cli_env
from tests.conftest import ServerProcess, server_with
from tests.types import Tenant

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (scripts/install.sh --dev)")

CHASER = f"{shlex.quote(sys.executable)} -m chaser"


class Pane:
    """One tmux session (its own server socket) running bash with the CLI's env."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.socket = str(tmp / "tmux.sock")
        # The pane's shell reads its settings from an rc file: a tmux server passes on
        # only part of the environment it was started with.
        rc = tmp / "bashrc"
        wanted = {k: v for k, v in env.items() if k.startswith(("CHASER_", "PATH", "HOME"))}
        rc.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in wanted.items())
                      + "PS1='outer$ '\n")
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-s", "t", "-x", "100", "-y", "30",
                        f"bash --noprofile --rcfile {shlex.quote(str(rc))}"],
                       env={**env, "TERM": "xterm-256color"}, check=True, timeout=30)

    def tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                           text=True, timeout=30, check=True)
        return r.stdout

    def type(self, text: str, enter: bool = True) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self.tmux("send-keys", "-t", "t", "Enter")

    def key(self, name: str) -> None:
        self.tmux("send-keys", "-t", "t", name)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "t")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            m = re.search(pattern, screen, re.MULTILINE)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the screen:\n{screen}")
            time.sleep(0.1)

    def wait_gone(self, pattern: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while re.search(pattern, screen := self.screen(), re.MULTILINE):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} still on the screen:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=30)


@pytest.fixture
def pane(tmp_path: Path, server: ServerProcess, tenant: Tenant) -> Iterator[Pane]:
    p = Pane(tmp_path, cli_env(server.url, tenant.key))
    p.wait_for(r"^outer\$")
    yield p
    p.kill()


def _wrapped(tmp: Path, cli_args: str) -> str:
    """The CLI between two `stty -g` snapshots, then its exit code on the screen."""
    return (f"stty -g > {tmp}/before; {CHASER} {cli_args}; echo \"rc=$?\"; "
            f"stty -g > {tmp}/after")


def assert_restored(tmp: Path) -> None:
    """`stty -g` after the CLI equals before it (the pane writes `after` just after
    printing the exit code: wait for it)."""
    after = tmp / "after"
    deadline = time.monotonic() + 30
    while not (after.exists() and after.read_text()):
        assert time.monotonic() < deadline, "the pane did not write its stty state"
        time.sleep(0.05)
    assert (tmp / "before").read_text() == after.read_text()


def test_shell_interactive_full_screen_and_exit_code(pane: Pane, tmp_path: Path,
                                                     session_id: str) -> None:
    pane.type(_wrapped(tmp_path, f"shell -s {session_id}"))
    pane.wait_for(r"attached to terminal cmd_")
    pane.type("clear; echo $((6*7))")
    pane.wait_for(r"^42\s*$")
    pane.type("stty size")
    pane.wait_for(r"^30 100\s*$")
    pane.tmux("resize-window", "-t", "t", "-x", "120", "-y", "40")
    pane.type("clear; stty size")
    pane.wait_for(r"^40 120\s*$")
    # A full-screen program: vi draws its empty-buffer tildes, takes keys, saves.
    pane.type("vi /tmp/vi-test.txt")
    pane.wait_for(r"^~\s*$")
    pane.type("ihello from vi", enter=False)
    pane.key("Escape")
    screen = pane.wait_for(r"^hello from vi\s*$").string
    assert screen.count("\n~") > 20, screen  # the rest of the 40 rows: empty lines
    pane.type(":wq")
    pane.wait_gone(r"^~\s*$")  # vi restored the screen it found
    pane.wait_for(r"vi /tmp/vi-test.txt\n.*\$\s*$")
    pane.type("clear; cat /tmp/vi-test.txt | tr a-z A-Z")
    pane.wait_for(r"^HELLO FROM VI\s*$")
    pane.type("exit 3")
    pane.wait_for(r"^rc=3\s*$")
    pane.wait_for(r"^outer\$\s*$")
    assert_restored(tmp_path)


def test_detach_and_attach(pane: Pane, tmp_path: Path, session_id: str) -> None:
    pane.type(_wrapped(tmp_path, f"shell -s {session_id}"))
    pane.wait_for(r"attached to terminal cmd_")
    pane.type("export MARK=abc; echo ready-$MARK")
    pane.wait_for(r"^ready-abc\s*$")
    pane.key("C-]")
    m = pane.wait_for(r"Reattach with: chaser attach (cmd_\w+)")
    pane.wait_for(r"^rc=0\s*$")
    assert_restored(tmp_path)
    (tmp_path / "after").unlink()
    pane.type("clear")
    # The session is found from the terminal's id alone.
    pane.type(_wrapped(tmp_path, f"attach {m.group(1)}"))
    pane.wait_for(r"attached to terminal " + m.group(1))
    pane.type("echo $MARK-again")
    pane.wait_for(r"^abc-again\s*$")
    pane.type("exit")
    pane.wait_for(r"^rc=0\s*$")
    assert_restored(tmp_path)


def _cli_pid(pane: Pane) -> int:
    """The `python -m chaser` process running in the pane (a child of its bash)."""
    outer = int(pane.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{outer}/task").iterdir():
            for child in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"chaser" in cmdline:
                    return int(child)
        time.sleep(0.1)
    raise AssertionError("the CLI is not running in the pane")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_detaches_and_restores_the_terminal(pane: Pane, tmp_path: Path,
                                                   session_id: str, sig: int) -> None:
    pane.type(_wrapped(tmp_path, f"shell -s {session_id}"))
    pane.wait_for(r"attached to terminal cmd_")
    pane.type("echo up-$((2+2))")
    pane.wait_for(r"^up-4\s*$")
    os.kill(_cli_pid(pane), sig)
    pane.wait_for(r"detached from terminal (cmd_\w+) \(" + signal.Signals(sig).name)
    pane.wait_for(rf"^rc={128 + sig}\s*$")
    assert_restored(tmp_path)


def test_lost_server_restores_the_terminal(tmp_root: Path, tmp_path: Path) -> None:
    with server_with(tmp_root, {}) as srv:
        pane = Pane(tmp_path, cli_env(srv.url, srv.admin_key))
        try:
            pane.wait_for(r"^outer\$")
            pane.type(_wrapped(tmp_path, "shell --ephemeral"))
            pane.wait_for(r"attached to terminal cmd_")
            pane.type("echo alive-$((3+4))")
            pane.wait_for(r"^alive-7\s*$")
            srv.stop()
            pane.wait_for(r"^error: ")
            pane.wait_for(r"^rc=1\s*$")
            assert "Traceback" not in pane.screen()
            assert_restored(tmp_path)
        finally:
            pane.kill()


class Proxy:
    """A TCP forwarder to the server whose connections can be cut, as a flaky network
    would; it keeps listening, so a client can reconnect through it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.port))
            self.open += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.open = []

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_lost_connection_reattaches_and_loses_nothing(tmp_path: Path, server: ServerProcess,
                                                       tenant: Tenant, session_id: str) -> None:
    proxy = Proxy(server.port)
    pane = Pane(tmp_path, cli_env(proxy.url, tenant.key))
    try:
        pane.wait_for(r"^outer\$")
        pane.type(_wrapped(tmp_path, f"shell -s {session_id}"))
        pane.wait_for(r"attached to terminal cmd_")
        pane.type("(sleep 1.5; echo during-$((5*5))) &")
        pane.wait_for(r"^\[1\] \d+")
        proxy.cut()  # printed while the connection is down: replayed on reattach
        pane.wait_for(r"connection lost; reattaching")
        pane.wait_for(r"^during-25\s*$")
        pane.type("echo back-$((1+1))")
        pane.wait_for(r"^back-2\s*$")
        assert len(re.findall(r"^during-25\s*$", pane.screen(), re.MULTILINE)) == 1
        pane.type("exit 5")
        pane.wait_for(r"^rc=5\s*$")
        assert_restored(tmp_path)
    finally:
        pane.kill()
        proxy.close()


def test_agent_mode_on_a_terminal(pane: Pane, tmp_path: Path, session_id: str) -> None:
    pane.type(_wrapped(tmp_path, f"shell --agent -s {session_id}"))
    pane.wait_for(r"attached to terminal cmd_")
    pane.type("echo agent-$((40+2)); exit 4")
    pane.wait_for(r"agent-42")
    pane.wait_for(r"^rc=4\s*$")
    assert_restored(tmp_path)


def test_piped_input_without_a_terminal(server: ServerProcess, tenant: Tenant,
                                        session_id: str) -> None:
    r = subprocess.run([sys.executable, "-m", "chaser", "shell", "-s", session_id],
                       input="echo piped-$((1+1))\nexit 6\n", capture_output=True,
                       text=True, timeout=90, env=cli_env(server.url, tenant.key))
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "piped-2" in r.stdout


def test_ephemeral_interactive_session_is_deleted(server: ServerProcess,
                                                  tenant: Tenant) -> None:
    r = subprocess.run([sys.executable, "-m", "chaser", "shell", "--ephemeral", "--agent"],
                       input="echo eph-$((3*3))\nexit 2\n", capture_output=True, text=True,
                       timeout=90, env=cli_env(server.url, tenant.key))
    assert r.returncode == 2 and "eph-9" in r.stdout, (r.stdout, r.stderr)
    running = tenant.client.get("/v1/sessions", params={"status": "running"}).json()
    assert running["sessions"] == []


def test_attach_unknown_terminal(server: ServerProcess, tenant: Tenant) -> None:
    r = subprocess.run([sys.executable, "-m", "chaser", "attach", "cmd_nope"],
                       capture_output=True, text=True, timeout=60,
                       env=cli_env(server.url, tenant.key), stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "cmd_nope" in r.stderr
