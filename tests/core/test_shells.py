"""Agent mode's marker filter: markers out, events in order, whatever the reads cut."""

from __future__ import annotations

from chaser.core.shells import MAX_COMMAND_TEXT, AgentMarkers

Piece = bytes | dict[str, object]


def marks(m: AgentMarkers) -> tuple[bytes, bytes, bytes]:
    prefix = b"\x1b]6973;" + m.nonce.encode() + b";"
    return prefix + b"S\x07", prefix + b"s\x07", prefix


def feed_all(m: AgentMarkers, chunks: list[bytes]) -> list[Piece]:
    out: list[Piece] = []
    for chunk in chunks:
        out += m.feed(chunk)
    return out


def squash(pieces: list[Piece]) -> list[Piece]:
    """Adjacent bytes joined (how reads cut the output does not matter)."""
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += p
        else:
            out.append(p)
    return out


def session(m: AgentMarkers) -> bytes:
    start, close, prefix = marks(m)
    return (prefix + b"E;0\x07$ " + start + b"\techo hi" + close + b"hi\r\n" + prefix
            + b"E;0\x07$ " + start + b"\t false" + close + prefix + b"E;1\x07$ ")


EXPECTED: list[Piece] = [
    b"$ ", {"type": "command_start", "command": "echo hi"}, b"hi\r\n",
    {"type": "command_end", "exit_code": 0}, b"$ ", {"type": "command_start", "command": "false"},
    {"type": "command_end", "exit_code": 1}, b"$ "]


def test_markers_become_events_in_order() -> None:
    m = AgentMarkers()
    assert squash(m.feed(session(m))) == EXPECTED


def test_every_cut_of_the_reads_gives_the_same_events() -> None:
    m0 = AgentMarkers()
    data = session(m0)
    for cut in range(1, len(data)):
        m = AgentMarkers(nonce=m0.nonce)
        assert squash(feed_all(m, [data[:cut], data[cut:]])) == EXPECTED, cut
    m = AgentMarkers(nonce=m0.nonce)
    assert squash(feed_all(m, [data[i:i + 1] for i in range(len(data))])) == EXPECTED


def test_other_terminals_markers_and_impossible_codes_are_output() -> None:
    m = AgentMarkers()
    _, _, prefix = marks(m)
    other = b"\x1b]6973;ffffffffffff;E;0\x07"
    big = prefix + b"E;999\x07"
    out = squash(m.feed(other + big + b"tail"))
    assert out == [other + big + b"tail"]


def test_a_start_marker_that_never_closes_gives_its_output_back() -> None:
    m = AgentMarkers()
    start, _, prefix = marks(m)
    body = b"x" * (MAX_COMMAND_TEXT + 10)
    out = squash(feed_all(m, [start, body[:1000], body[1000:], prefix + b"E;0\x07"]))
    assert out[0] == start + body  # nothing lost
    assert len(out) == 1  # and no end without a start


def test_noise_is_stripped_and_ends_without_a_start_are_dropped() -> None:
    m = AgentMarkers()
    _, _, prefix = marks(m)
    out = squash(m.feed(b"\x1b[?2004h\x1b]0;title\x07$ " + prefix + b"E;130\x07$ \x1b[?2004l"))
    assert out == [b"$ $ "]


def test_sh_prompts_mark_no_starts_so_typed_lines_do() -> None:
    m = AgentMarkers()
    _, _, prefix = marks(m)
    assert m.feed(prefix + b"P;0\x07$ ") == [b"$ "] and not m.marks_starts
    assert m.typed(b"  \n") is None
    assert m.typed(b"ls -l\nmore") == {"type": "command_start", "command": "ls -l"}
    assert m.typed(b"second\n") is None  # one command at a time
    assert m.feed(b"out\r\n" + prefix + b"P;2\x07") == [
        b"out\r\n", {"type": "command_end", "exit_code": 2}]
