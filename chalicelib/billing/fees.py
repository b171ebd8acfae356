"""The platform's service fee a channel owes for the days a statement settles: the one place the channel
statement asks (``runs``), so how fees are computed changes here and nowhere else."""
from __future__ import annotations

from datetime import date, timedelta

from chalicelib.billing import billing


def fee_for(channel_code: str, days: list[str]) -> int:
    """The fee in fen under the channel's billing plans over ``days`` (the statement's business days, in
    order): ``billing.billing.fee_for`` over each run of consecutive days, [first day, the day after the
    last). A statement's days have gaps where the channel's rule changed (those days are another statement's),
    and a gap's days are never charged here."""
    total, run = 0, []
    for day in days:
        if run and date.fromisoformat(day) != date.fromisoformat(run[-1]) + timedelta(days=1):
            total += _fee(channel_code, run)
            run = []
        run.append(day)
    return total + (_fee(channel_code, run) if run else 0)


def _fee(channel_code: str, run: list[str]) -> int:
    end = date.fromisoformat(run[-1]) + timedelta(days=1)
    return int(billing.fee_for(channel_code, run[0], end.isoformat()))
