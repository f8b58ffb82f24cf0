"""What a file operation answers is the sandbox's: only well-formed numbers are taken."""

from __future__ import annotations

import pytest

from chaser.core.transfers import _numbers
from chaser.errors import BadGateway


def test_answer_lines_are_parsed_strictly() -> None:
    assert _numbers("10 0 10", 3) == (10, 0, 10)
    assert _numbers(" 7\n", 1) == (7,)
    for bad in ("abc", "1 2", "-1 0 0", "1.5 0 0", "\u0665 0 0", "1 2 3 4", "",
                "99999999999999999999 0 0"):
        with pytest.raises(BadGateway):
            _numbers(bad, 3)
