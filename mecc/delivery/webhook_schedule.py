"""The webhook retry schedule: exponential backoff with full jitter inside a 24 h window.

5 s doubling, at most 1 h per step, for as long as the delivery is younger than 24 h
(QUALITY.md, Webhooks). Pure: the sender in mecc.delivery.webhooks asks when to try again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from mecc.delivery import webhook_client as client

BASE_DELAY = 5.0  # the default of Settings.webhook_base_delay_seconds
MAX_STEP = 3600.0
RETRY_WINDOW = timedelta(hours=24)
Rand = Callable[[], float]


def backoff_ceiling(failures: int, base_delay: float = BASE_DELAY) -> float:
    """The largest delay after this many failures: 5 s, 10 s, 20 s, ... at most 1 h."""
    return min(MAX_STEP, base_delay * 2.0 ** min(max(failures, 1) - 1, 32))


def retry_delay(failures: int, rand: Rand, retry_after: float | None = None, *,
                base_delay: float = BASE_DELAY) -> float:
    """Full jitter in [base delay, ceiling]; never sooner than the receiver's Retry-After."""
    delay = max(base_delay, rand() * backoff_ceiling(failures, base_delay))
    if retry_after is not None:
        delay = max(delay, min(retry_after, client.RETRY_AFTER_CAP))
    return delay


def next_attempt_at(*, failures: int, created_at: datetime, now: datetime, rand: Rand,
                    retry_after: float | None = None,
                    base_delay: float = BASE_DELAY) -> datetime | None:
    """When to try again after a failure at `now`, or None: the 24 h window is spent."""
    if now - created_at >= RETRY_WINDOW:
        return None
    return now + timedelta(seconds=retry_delay(failures, rand, retry_after,
                                               base_delay=base_delay))


def jitter() -> float:
    return random.random()  # noqa: S311 - spreading retries, not a secret
