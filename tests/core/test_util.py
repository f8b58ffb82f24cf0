"""Signal names and numbers as the API accepts them."""

from __future__ import annotations

import signal

import pytest

from chaser.core.util import parse_signal, signal_name
from chaser.errors import BadRequest


@pytest.mark.parametrize("value,expected", [
    ("TERM", signal.SIGTERM), ("SIGTERM", signal.SIGTERM), ("sigkill", signal.SIGKILL),
    ("INT", signal.SIGINT), ("HUP", signal.SIGHUP), ("SIGUSR1", signal.SIGUSR1), ("9", 9), (9, 9),
])
def test_parse_signal(value: str | int, expected: int) -> None:
    assert parse_signal(value) == expected


@pytest.mark.parametrize("value", ["FOO", "SIG", "", "0", 0, 999, "-1", "TERM;", True])
def test_parse_signal_rejects(value: str | int) -> None:
    with pytest.raises(BadRequest) as e:
        parse_signal(value)
    assert e.value.code == "invalid_signal"


def test_signal_name() -> None:
    assert signal_name(15) == "TERM"
    assert signal_name(9) == "KILL"
    assert signal_name(None) is None
