"""Small helpers the core shares: ids, timestamps, signal names."""

from __future__ import annotations

import secrets
import signal
from datetime import UTC, datetime

from chaser.errors import BadRequest


def new_id(prefix: str) -> str:
    """A short random id such as `ses_3f9a...`: unguessable, so ids leak nothing."""
    return f"{prefix}_{secrets.token_hex(10)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_signal(value: str | int) -> int:
    """`TERM`, `SIGTERM`, `sigterm`, `15` or 15 -> 15; anything else is a BadRequest."""
    if isinstance(value, bool):
        raise BadRequest("signal must be a name or a number", "invalid_signal")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        if isinstance(value, str) and len(value.strip()) > 6:  # int() refuses 4300+ digits
            raise BadRequest("unknown signal number", "invalid_signal")
        num = int(value)
        if 1 <= num < signal.NSIG:
            return num
        raise BadRequest(f"unknown signal number {num}", "invalid_signal")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
    if not isinstance(sig, signal.Signals):
        raise BadRequest(f"unknown signal {value!r}", "invalid_signal")
    return int(sig)


def signal_name(num: int | None) -> str | None:
    """15 -> 'TERM' (the form the API reports)."""
    if num is None:
        return None
    try:
        return signal.Signals(num).name.removeprefix("SIG")
    except ValueError:
        return str(num)
