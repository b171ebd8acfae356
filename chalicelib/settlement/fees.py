"""The platform's service fee a channel owes for a settlement period: the one place the channel statement
asks (``runs`` → ``statements.channel_statement``), so the billing plans plug in here and nowhere else."""
from __future__ import annotations

from chalicelib.settlement.periods import Period


def fee_for(channel_code: str, period: Period) -> int:
    """The fee in fen under the channel's billing plan for ``period``: a zero line until billing plans
    (``partners.billing``) give their pure fee function."""
    return 0
