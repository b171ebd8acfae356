"""The clock: one way to write a moment and one business day, for every area.

A moment is written as UTC ISO-8601 with milliseconds (every table's ``created_at``/``updated_at``; such stamps
compare as strings, which the pending and unsplit sweeps rely on). The business day is China Standard Time's
(UTC+8), the day the channels, their members and ops live in: settlement's periods and billing's daily counters
both count days by it, so a day's counters and the statement that settles it always agree on where it starts.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

BUSINESS_TZ = timezone(timedelta(hours=8), "CST")


def now_iso(at: float | None = None) -> str:
    """The moment ``at`` (Unix seconds; now by default) as the stamp every table keeps."""
    return datetime.fromtimestamp(time.time() if at is None else at, timezone.utc).isoformat(timespec="milliseconds")


def business_day(at: float | None = None) -> str:
    """The business day (``YYYY-MM-DD``) of a Unix time, now by default."""
    return datetime.fromtimestamp(time.time() if at is None else at, BUSINESS_TZ).date().isoformat()


def midnight(day: str | date) -> float:
    """The Unix time a business day starts."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day, tzinfo=BUSINESS_TZ).timestamp()


def next_day(day: str) -> str:
    """The business day after ``day`` (``YYYY-MM-DD``)."""
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
