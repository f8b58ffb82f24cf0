"""The shells terminals run, and agent mode's markers: how a program learns, from the
shell itself, where each command starts and ends.

Agent mode runs bash without readline or startup files (`--noediting --norc`), so
nothing but the shell's own prompt and the commands' output reaches the terminal: no
colours, no bracketed-paste or title sequences, no line editing redraws. Echo is off on
the terminal (the server sets it), so the transcript holds no copy of the input. Two
hooks, passed in the environment so that `exec bash` keeps them, print markers the
server strips from the output and turns into events:

- `PS0`, which bash expands after reading a command line and before running it, prints
  the start marker with the command line taken from the shell's history;
- `PROMPT_COMMAND`, run before each prompt, prints the end marker with `$?`.

Each terminal has its own random nonce in its markers, so output that happens to look
like a marker of another terminal is left alone. Where the image has no bash, sh gets
the end marker in `PS1` (which sh expands, `$?` included) and the server reports the
start when it forwards the line that was typed at the prompt (docs/pty.md).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

MARK = b"\x1b]6973;"
BEL = b"\x07"
MAX_COMMAND_TEXT = 512 * 1024  # a start marker's command line (an MCP shell line, quoted)

# Picks bash where the image has it (what users of `docker exec -it` get), else sh.
HUMAN_SHELL = ('if [ -x /bin/bash ]; then exec /bin/bash -l; fi; '
               'if [ -x /usr/bin/bash ]; then exec /usr/bin/bash -l; fi; exec /bin/sh -l')
AGENT_SHELL = ('if [ -x /bin/bash ]; then exec /bin/bash --noediting --norc -i; fi; '
               'if [ -x /usr/bin/bash ]; then exec /usr/bin/bash --noediting --norc -i; fi; '
               'export PS1="$CHASER_SH_PS1"; unset CHASER_SH_PS1; exec /bin/sh -i')

HUMAN_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
# What tools consult before they colour, page or prompt.
AGENT_ENV = {
    "TERM": "dumb", "NO_COLOR": "1", "CLICOLOR": "0", "PAGER": "cat", "GIT_PAGER": "cat",
    "MANPAGER": "cat", "SYSTEMD_PAGER": "", "LESS": "-FRX", "GIT_TERMINAL_PROMPT": "0",
    "DEBIAN_FRONTEND": "noninteractive", "HISTFILE": "", "HISTCONTROL": "", "HISTIGNORE": "",
    "PS2": "> ",
}

# Terminal noise agent mode removes even when a program emits it anyway: bracketed
# paste on/off and window-title sequences (OSC 0, 1, 2).
NOISE = re.compile(rb"\x1b\[\?2004[hl]|\x1b\][012];[^\x07\x1b]{0,4096}(?:\x07|\x1b\\)")


def shell_argv(mode: str, shell: str | None) -> list[str]:
    """The argv of a terminal's shell: bash where the image has it, unless `shell`."""
    if shell == "sh":
        if mode == "agent":
            return ["/bin/sh", "-c", 'export PS1="$CHASER_SH_PS1"; unset CHASER_SH_PS1; '
                    "exec /bin/sh -i"]
        return ["/bin/sh", "-l"]
    if shell == "bash":
        return (["/bin/bash", "--noediting", "--norc", "-i"] if mode == "agent"
                else ["/bin/bash", "-l"])
    return ["/bin/sh", "-c", AGENT_SHELL if mode == "agent" else HUMAN_SHELL]


@dataclass
class AgentMarkers:
    """One agent-mode terminal's markers: the environment that makes the shell print
    them, and the filter that takes them out of its output and makes them events.

    A `command_end` is reported only for a command whose `command_start` was: the first
    prompt, an empty line and a Ctrl-C at the prompt end no command.
    """

    nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    in_command: bool = False
    marks_starts: bool = True  # False once sh's prompt marker shows starts are unmarked
    _pending: bytes = b""
    _command: bytearray | None = None  # the start marker's command line, while it comes

    def env(self) -> dict[str, str]:
        """Variables that make bash (or sh) print this terminal's markers."""
        mark = "\x1b]6973;" + self.nonce + ";"
        return {
            **AGENT_ENV,
            "PS1": "$ ",
            # $? before anything else runs; the marker first, then the user's hooks.
            "PROMPT_COMMAND": f"printf '{_printf_escaped(mark)}E;%d\\a' \"$?\"",
            # The line just read is the newest history entry (history is on in an
            # interactive bash; HISTCONTROL and HISTIGNORE are emptied so none is skipped).
            "PS0": mark + "S\a$(HISTTIMEFORMAT= builtin fc -ln -0 2>/dev/null)" + mark + "s\a",
            # sh: no PS0 or PROMPT_COMMAND; its PS1 carries the end marker ($? expanded),
            # as P rather than E, which tells the filter that starts are not marked.
            "ENV": "",
            "CHASER_SH_PS1": mark + "P;$?\a$ ",
        }

    def typed(self, data: bytes) -> dict[str, object] | None:
        """Input on its way to the shell: under sh (no start markers), a line typed at
        the prompt starts a command, reported as it is forwarded."""
        if self.marks_starts or self.in_command or b"\n" not in data and b"\r" not in data:
            return None
        line = data.replace(b"\r", b"\n").split(b"\n", 1)[0][:MAX_COMMAND_TEXT]
        if not line.strip():
            return None
        self.in_command = True
        return {"type": "command_start", "command": line.decode(errors="replace")}

    def feed(self, data: bytes) -> list[bytes | dict[str, object]]:
        """Output with the markers taken out: bytes and events, in order."""
        out: list[bytes | dict[str, object]] = []
        for piece in self._split(self._pending + data):
            if isinstance(piece, bytes):
                piece = NOISE.sub(b"", piece)
                if piece:
                    out.append(piece)
            elif piece["type"] == "command_start":
                self.marks_starts = True
                if not self.in_command:  # else sh reported it as typed (then ran bash)
                    self.in_command = True
                    out.append(piece)
            elif self.in_command:
                self.in_command = False
                out.append(piece)
        return out

    def _split(self, buf: bytes) -> list[bytes | dict[str, object]]:
        self._pending = b""
        prefix = MARK + self.nonce.encode() + b";"
        closing = prefix + b"s" + BEL
        out: list[bytes | dict[str, object]] = []
        while buf:
            if self._command is not None:  # inside a start marker: the command line
                end = buf.find(closing)
                cut = len(buf) - _partial_suffix(buf, closing) if end < 0 else end
                if len(self._command) + cut > MAX_COMMAND_TEXT:
                    # No shell wrote this (a history line is shorter): output that looked
                    # like a marker, given back as the output it is.
                    out.append(prefix + b"S" + BEL + bytes(self._command))
                    self._command = None
                    continue
                self._command += buf[:cut]
                if end < 0:
                    self._pending = buf[cut:]
                    break
                out.append({"type": "command_start", "command": _command_line(self._command)})
                self._command = None
                buf = buf[end + len(closing):]
                continue
            at = buf.find(prefix)
            if at < 0:
                keep = _partial_suffix(buf, prefix)
                out.append(buf[:len(buf) - keep])
                self._pending = buf[len(buf) - keep:]
                break
            out.append(buf[:at])
            rest = buf[at + len(prefix):]
            if rest.startswith(b"S" + BEL):
                self._command = bytearray()
                buf = rest[2:]
                continue
            m = END.match(rest)
            if m and int(m.group(2)) <= 255:
                if m.group(1) == b"P":
                    self.marks_starts = False
                out.append({"type": "command_end", "exit_code": int(m.group(2))})
                buf = rest[m.end():]
                continue
            if len(rest) < 6 and PARTIAL_END.fullmatch(rest):
                self._pending = buf[at:]  # a marker cut by the read: the next one ends it
                break
            out.append(buf[at:at + len(prefix)])  # not one of ours after all
            buf = rest
        return out


END = re.compile(rb"([EP]);(\d{1,3})\x07")
PARTIAL_END = re.compile(rb"S?|[EP](;\d{0,3})?")


def _partial_suffix(buf: bytes, marker: bytes) -> int:
    """How many bytes at the end of `buf` begin `marker` (held for the next read)."""
    for n in range(min(len(marker) - 1, len(buf)), 0, -1):
        if marker.startswith(buf[-n:]):
            return n
    return 0


def _command_line(raw: bytearray) -> str:
    """The command line as `fc -ln` printed it: each line indented by a tab (and the
    first by a space more), the terminal's CRLF line ends."""
    text = raw.decode(errors="replace").replace("\r\n", "\n")
    lines = [line[1:] if line.startswith("\t") else line for line in text.split("\n")]
    if lines and lines[0].startswith(" "):
        lines[0] = lines[0][1:]
    return "\n".join(lines).rstrip("\n")


def _printf_escaped(text: str) -> str:
    """`text` for a printf format in single quotes (ESC as \\033)."""
    return text.replace("\\", "\\\\").replace("%", "%%").replace("\x1b", "\\033")
