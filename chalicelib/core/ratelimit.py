"""Fixed-window rate limits kept in DynamoDB: one counter item per scope and window.

A use is counted by a conditional update (``count < limit``), so a burst of
concurrent callers can never take more than ``limit`` uses of a window, in
any Lambda instance. The counter expires by TTL after its window.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from pynamodb.exceptions import UpdateError

from chalicelib.core.errors import DomainError
from chalicelib.core.models import RateCounter
from chalicelib.core.tx import condition_failed


class RateLimited(DomainError):
    status = 429


def window_start(now: float, window_seconds: int) -> int:
    return int(now) // window_seconds * window_seconds


def hit(scope: str, limit: int, window_seconds: int, now: float | None = None,
        code: str = "rate_limited", message: str | None = None) -> int:
    """Count one use of ``scope`` in the current window; refuse it (429) once ``limit`` uses were taken.

    Returns the number of uses in the window including this one."""
    now = time.time() if now is None else now
    start = window_start(now, window_seconds)
    counter = RateCounter(f"{scope}#{start}")
    try:
        counter.update(
            [RateCounter.count.add(1),
             RateCounter.expires_at.set(datetime.fromtimestamp(start + 2 * window_seconds, timezone.utc))],
            condition=RateCounter.key.does_not_exist() | (RateCounter.count < limit))
    except UpdateError as exc:
        if condition_failed(exc):
            retry_in = start + window_seconds - int(now)
            raise RateLimited(code, message or f"too many requests; retry in {retry_in} s") from None
        raise
    return int(counter.count)
