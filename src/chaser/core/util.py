"""Small helpers the core shares: ids, timestamps, signal names."""

from __future__ import annotations

import re
import secrets
import signal
from datetime import UTC, datetime

from chaser.errors import BadRequest
from chaser.models import SIGNAL_NAME_PATTERN


def new_id(prefix: str) -> str:
    """A short random id such as `ses_3f9a...`: unguessable, so ids leak nothing."""
    return f"{prefix}_{secrets.token_hex(10)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_signal(value: str | int) -> int:
    """`TERM`, `SIGTERM`, `sigterm`, `15` or 15 -> 15; anything else is a BadRequest."""
    # The OpenAPI schema states these same rules (chaser.models.KillRequest).
    if isinstance(value, bool):
        raise BadRequest("signal must be a name or a number", "invalid_signal")
    if isinstance(value, int) or re.fullmatch(r"[0-9]+", value):
        if isinstance(value, str) and len(value) > 6:  # int() refuses 4300+ digits
            raise BadRequest("unknown signal number", "invalid_signal")
        num = int(value)
        if 1 <= num < signal.NSIG:
            return num
        raise BadRequest(f"unknown signal number {num}", "invalid_signal")
    if not re.fullmatch(SIGNAL_NAME_PATTERN, value):
        raise BadRequest(f"unknown signal {value[:50]!r}", "invalid_signal")
    name = value.upper()
    return int(getattr(signal.Signals, name if name.startswith("SIG") else "SIG" + name))


def signal_name(num: int | None) -> str | None:
    """15 -> 'TERM' (the form the API reports)."""
    if num is None:
        return None
    try:
        return signal.Signals(num).name.removeprefix("SIG")
    except ValueError:
        return str(num)
