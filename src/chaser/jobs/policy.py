"""How an attempt's end moves its job on: retried after a backoff, or finished."""

from __future__ import annotations

import random
from dataclasses import dataclass

from chaser.jobs.models import RetryPolicy

# How an attempt ended, as retry_on names it ("deadline" and "cancelled" never retry).
Outcome = str  # "succeeded" | "exit_nonzero" | "timeout" | "infrastructure" | "deadline" | "cancelled"


@dataclass
class AttemptEnd:
    """What one attempt came to."""

    outcome: Outcome
    exit_code: int | None = None
    signal: str | None = None
    end_reason: str | None = None
    failed_step: int | None = None  # pipelines: the step that failed the attempt

    @property
    def attempt_status(self) -> str:
        if self.outcome in ("succeeded", "cancelled"):
            return self.outcome
        return "failed"


def backoff_s(policy: RetryPolicy, failed_attempt: int, rng: random.Random | None = None) -> float:
    """The wait before the attempt after `failed_attempt` (1-based): exponential from
    `initial_backoff_ms`, capped at `max_backoff_ms`, less up to `jitter` of itself
    (so that jobs failing together do not all come back together)."""
    base = policy.initial_backoff_ms * policy.backoff_multiplier ** max(0, failed_attempt - 1)
    delay = min(float(policy.max_backoff_ms), base) / 1000
    return delay * (1 - policy.jitter * (rng or random).random())


def should_retry(policy: RetryPolicy, end: AttemptEnd, attempt: int, max_attempts: int) -> bool:
    """Whether another attempt follows `end` (the job's attempt number `attempt`)."""
    if end.outcome not in policy.retry_on or attempt >= max_attempts:
        return False
    if end.outcome == "exit_nonzero" and end.exit_code in policy.never_retry_exit_codes:
        return False
    return True
