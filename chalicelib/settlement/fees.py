"""The platform's service fee a channel owes for the days a statement settles: the one place the channel
statement asks (``runs``), so how fees are computed changes here and nowhere else."""
from __future__ import annotations

from datetime import date, timedelta

from chalicelib.partners import billing


def fee_for(channel_code: str, days: list[str]) -> int:
    """The fee in fen under the channel's billing plans over ``days`` (consecutive business days, the
    statement's): ``partners.billing.fee_for`` over [first day, the day after the last)."""
    if not days:
        return 0
    end = date.fromisoformat(days[-1]) + timedelta(days=1)
    return int(billing.fee_for(channel_code, days[0], end.isoformat()))
