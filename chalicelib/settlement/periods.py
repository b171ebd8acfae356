"""Settlement periods: calendar months and ISO weeks of business days (no I/O).

The business day is the date in China Standard Time (UTC+8, no daylight saving: ``core.clock``). A period is named by its
calendar: ``2026-01`` is January 2026, ``2026-W05`` the ISO week 5 of 2026 (Monday to Sunday). Everything
settleable is booked on the business day it happened (``clock.business_day``), and a period is the days it covers, so
a period is settled once its last day has ended and ``SETTLE_AFTER_SECONDS`` more have passed: any write
stamped inside the period has committed by then.

Who is settled in which periods: a channel by its ``settlement_period`` (``monthly`` or ``weekly``),
suppliers always monthly. A channel's rule changes from the next business day (``with_change``): the channel
keeps the rule of each day (``rule_on``; both ``channels.settlement_rules``), so a day is settled by the one period of its own day's rule that
contains it (``days_of_kind``) — a period's run never leaves out days because the rule changed before the
run, and never takes days of the other rule. Each day of each party is then claimed by exactly one statement
(``runs``), so a channel that changes its rule is never billed twice for a day, nor skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from chalicelib.channels.settlement_rules import rule_on
from chalicelib.core.clock import business_day, midnight

MONTHLY, WEEKLY = "monthly", "weekly"
KINDS = (MONTHLY, WEEKLY)
# After a period's last day ends: long enough for any transaction stamped inside it to have committed.
SETTLE_AFTER_SECONDS = 3600
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_WEEK = re.compile(r"^(\d{4})-W(0[1-9]|[1-4]\d|5[0-3])$")


@dataclass(frozen=True)
class Period:
    period_id: str
    kind: str
    first_day: date
    last_day: date

    @property
    def starts_at(self) -> int:
        return _midnight(self.first_day)

    @property
    def ends_at(self) -> int:
        """The first second after the period (Unix seconds)."""
        return _midnight(self.last_day + timedelta(days=1))

    def days(self) -> list[str]:
        count = (self.last_day - self.first_day).days + 1
        return [(self.first_day + timedelta(days=i)).isoformat() for i in range(count)]

    def settleable(self, now: float) -> bool:
        return now >= self.ends_at + SETTLE_AFTER_SECONDS


def _midnight(day: date) -> int:
    return int(midnight(day))


def parse(period_id: str) -> Period:
    """The period a name stands for; ValueError for anything else."""
    month = _MONTH.match(period_id)
    if month:
        year, number = int(month[1]), int(month[2])
        first = date(year, number, 1)
        following = date(year + number // 12, number % 12 + 1, 1)
        return Period(period_id, MONTHLY, first, following - timedelta(days=1))
    week = _WEEK.match(period_id)
    if week:
        try:
            first = date.fromisocalendar(int(week[1]), int(week[2]), 1)
        except ValueError:  # week 53 of a year that has 52
            raise ValueError(f"no ISO week {period_id}") from None
        return Period(period_id, WEEKLY, first, first + timedelta(days=6))
    raise ValueError(f"a settlement period is YYYY-MM or YYYY-Www, not {period_id!r} (a quota period, like "
                     f"DEMO, is never settled by its name: settlement goes by calendar month or ISO week)")


def containing(day: str, kind: str) -> Period:
    """The period of ``kind`` a business day belongs to."""
    d = date.fromisoformat(day)
    if kind == MONTHLY:
        return parse(f"{d.year:04d}-{d.month:02d}")
    year, week, _ = d.isocalendar()
    return parse(f"{year:04d}-W{week:02d}")


def recently_settleable(now: float, days: int = 8) -> list[Period]:
    """Periods (both kinds) that ended within the last ``days`` days and may be settled now, oldest first:
    what the scheduler starts (a start already made is refused by its execution name)."""
    today = date.fromisoformat(business_day(now))
    found: dict[str, Period] = {}
    for back in range(1, days + 1):
        day = (today - timedelta(days=back)).isoformat()
        for kind in KINDS:
            period = containing(day, kind)
            if period.last_day.isoformat() == day and period.settleable(now):
                found[period.period_id] = period
    return sorted(found.values(), key=lambda p: (p.ends_at, p.period_id))


def days_of_kind(rules: Mapping[str, str] | None, current: str, period: Period) -> list[str]:
    """The days of ``period`` that a channel settles in it: those whose rule is the period's kind."""
    return [day for day in period.days() if rule_on(rules, current, day) == period.kind]
