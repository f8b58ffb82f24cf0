"""A message that floods the log (asyncio's failed accepts, out of fds) is throttled."""

from __future__ import annotations

import logging

import pytest

from chaser.server.run import Throttle


def test_a_flooding_message_passes_once_per_period_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test-throttle")
    throttle = Throttle("socket.accept() out of system resource", every=3600)
    log.addFilter(throttle)
    try:
        with caplog.at_level(logging.ERROR, logger="test-throttle"):
            for _ in range(1000):
                log.error("socket.accept() out of system resource\nexception: %s", "EMFILE")
            log.error("something else")
            throttle.last -= 3600  # an hour on
            log.error("socket.accept() out of system resource\nexception: %s", "EMFILE")
    finally:
        log.removeFilter(throttle)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and messages[1] == "something else"
    assert messages[0].endswith("EMFILE") and "999 more like it" in messages[2]
