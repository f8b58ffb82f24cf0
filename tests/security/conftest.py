"""Prints the security catalogue's result table at the end of the run (and nothing else:
shared fixtures live in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.security._attacks import ROWS, format_table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    if ROWS:
        terminalreporter.write_sep("=", "security catalogue: attack results")
        terminalreporter.write_line(format_table(ROWS))
