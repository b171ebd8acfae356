"""A channel's settlement rule, day by day (pure): which kind of period (``settlement.periods``) settles each of its
business days. A change holds from a day not settled yet (the next business day), and the channel keeps the rule of
every day (``Channel.settlement_rules``: ``{first day: kind}``), so each day is settled by exactly one period."""
from __future__ import annotations

from typing import Mapping

# The rule a channel had before its first change holds from this day (every day of its life).
SINCE_START = "0001-01-01"


def rule_on(rules: Mapping[str, str] | None, current: str, day: str) -> str:
    """The rule of ``day``: the latest change (``{first day: kind}``) on or before it; a channel that never
    changed its rule has ``current`` on every day."""
    since = [d for d in (rules or {}) if d <= day]
    return rules[max(since)] if since and rules else current


def with_change(rules: Mapping[str, str] | None, current: str, new: str, from_day: str) -> dict[str, str]:
    """The rules after a change to ``new`` from ``from_day`` on (a day not settled yet: the next business day).
    The first change also records the rule held until then (from ``SINCE_START``); a change that restores the
    rule of the day before (undone the same day) leaves no entry behind."""
    changed = {d: k for d, k in (rules or {SINCE_START: current}).items() if d < from_day}
    changed[from_day] = new
    kept: dict[str, str] = {}
    for day in sorted(changed):
        if not kept or kept[max(kept)] != changed[day]:
            kept[day] = changed[day]
    return kept
