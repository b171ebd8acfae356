"""The running period's provisional statement: what a channel or a supplier would be settled for if the period
closed now with nothing more happening, so both sides can check their money before the month ends.

It is the final statement's own computation (``runs.compute`` over the days ``runs.party_days`` gives the
party in the period: the same books, the same pure ``statements`` rules, the same fee), answered as JSON and
marked ``provisional``. It is never written: no export, no ``Statement`` record, no claimed day, so nothing of
it can be fetched as a statement or exported for payment; the final statement, once the period is settled, has
exactly these lines and totals if the books did not move in between.
"""
from __future__ import annotations

import time

from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.core.clock import business_day
from chalicelib.settlement import periods, runs
from chalicelib.settlement.periods import Period


def running_period(party: str, now: float) -> Period:
    """The period the party's today belongs to: a supplier's month; a channel's month or week by its rule of
    today."""
    today = business_day(now)
    if party.startswith("channel."):
        channel = Channel.get(party.split(".", 1)[1])
        kind = periods.rule_on(channels.rules_of(channel), channel.settlement_period or periods.MONTHLY, today)
    else:
        kind = periods.MONTHLY
    return periods.containing(today, kind)


def _sandbox(party: str) -> bool:
    return party.startswith("channel.") and bool(Channel.get(party.split(".", 1)[1]).sandbox)


def statement(party: str, period: Period) -> dict:
    """The party's statement for ``period`` as the run would compute it now, line by line, marked provisional."""
    days = runs.party_days(party, period)
    computed, _ = runs.compute(period, party, days)
    return {"provisional": True, "period_id": period.period_id, "party": party,
            "first_day": days[0] if days else None, "last_day": days[-1] if days else None,
            "columns": list(computed.columns), "lines": [dict(zip(computed.columns, line)) for line in computed.lines],
            "totals": dict(computed.totals),
            "note": "provisional: the period has not closed; not a statement, never exported for payment"}


def current(party: str, now: float | None = None) -> dict:
    """The running period's provisional statement, and when it was computed."""
    now = time.time() if now is None else now
    shown = statement(party, running_period(party, now))
    shown["as_of"] = int(now)
    if _sandbox(party):  # integrators may call it; nothing of a sandbox is booked or settled
        shown["note"] = "provisional, sandbox channel: its orders are never booked and it is never settled"
    return shown
