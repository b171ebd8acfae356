"""Metering: per channel and business day, what its members and its server did (entries, orders, points, GMV,
cost, refunds, checkout refusals by reason, inbound server-to-server calls), counted as each event happens.

Every count is an atomic ADD on a small ``ChannelDay`` item, made after the business write committed and never
inside it, so a lost increment can never fail the event: it is logged and counted (``MeteringFailed``, alarmed)
instead. Paid orders are not counted on the request path at all: the orders stream counts them
(``partners.order_figures``), so a checkout writes only its transaction. Events that can repeat (a member entering
twice a day) first put a ``MeterMark`` with ``does_not_exist``; only the writer that created the mark raises the
counter. Reading a range of days is one Query per shard, never a scan.

Each increment goes to one of ``SHARDS`` items picked at random (``{channel}#{n}``, separate partitions): one
item takes at most 1,000 write units a second and every increment here costs one, so a single item would cap a
channel at roughly 1,000 metered events a second (orders, calls and entries together); four items lift that to
about 4,000 for four Queries when ops read the figures.
"""
from __future__ import annotations

import calendar
import random
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Iterator

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pynamodb.exceptions import PutError

from chalicelib.billing.models import ChannelDay, MeterMark
from chalicelib.core.clock import business_day, midnight
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import condition_failed, write_retrying

SHARDS = 4
COUNTERS = ("entries", "month_members", "orders", "points", "gmv", "cost", "refunds", "refund_points",
            "refund_amount", "refused_quota", "refused_balance", "refused_stock", "refused_period",
            "refused_password", "calls", "calls_refused")
# Checkout refusals by the limit that refused them. The per-member cap is the member's own share of the quota.
REASONS = {
    "quota_exhausted": "quota", "member_cap_exceeded": "quota",
    "insufficient_points": "balance",
    "out_of_stock": "stock",
    "period_ended": "period",
    "wrong_password": "password", "wrong_otp": "password", "payment_locked": "password",
    "otp_expired": "password", "otp_used": "password",
}
ORDER_MARK_DAYS = 120  # an order's "counted" mark (``o#{order}``) outlives any redelivery of its records


def month_end(day: str) -> float:
    """The Unix time the month of ``day`` ends."""
    d = date.fromisoformat(day)
    return midnight(d.replace(day=calendar.monthrange(d.year, d.month)[1])) + 86400


def metric(name: str, channel_code: str, value: float = 1, unit: str = MetricUnit.Count, **dimensions: str) -> None:
    """One EMF metric with the channel (and any further dimension), for the per-channel dashboard widgets."""
    with single_metric(name=name, unit=unit, value=value, namespace="ChannelMall") as m:
        m.add_dimension(name="channel", value=channel_code)
        for key, val in dimensions.items():
            m.add_dimension(name=key, value=val)


def _add(channel_code: str, day: str, amounts: dict[str, int]) -> bool:
    """ADD ``amounts`` to one of the channel-day's shards; False (logged, counted) if the write failed."""
    item = ChannelDay(f"{channel_code}#{random.randrange(SHARDS)}", day)
    actions = [getattr(ChannelDay, name).add(int(n)) for name, n in amounts.items() if n]
    try:
        if actions:
            write_retrying(lambda: item.update(actions))
        return True
    except Exception:  # noqa: BLE001 - a counter must never fail the business event it counts
        logger.exception("metering failed", extra={"channel": channel_code, "day": day, "amounts": amounts})
        count("MeteringFailed")
        return False


def _first(mark: str, expires_at: float) -> bool:
    """Put the mark; True only for the writer that created it (the event was not counted before)."""
    try:
        MeterMark(mark, expires_at=datetime.fromtimestamp(expires_at, timezone.utc)).save(
            condition=MeterMark.mark.does_not_exist())
    except PutError as error:
        if condition_failed(error):
            return False
        raise
    return True


def entry(channel_code: str, member_id: str, at: float | None = None) -> None:
    """A member entered: counted once per day (``entries``), and once per month (``month_members``, on the day
    of the month's first entry: the monthly unique members a per-member plan bills, additive over days)."""
    at = time.time() if at is None else at
    day = business_day(at)
    try:
        daily = _first(f"{channel_code}#d#{day}#{member_id}", midnight(day) + 2 * 86400)
        monthly = daily and _first(f"{channel_code}#m#{day[:7]}#{member_id}", month_end(day) + 2 * 86400)
    except Exception:  # noqa: BLE001 - see ``_add``
        logger.exception("metering failed", extra={"channel": channel_code, "event": "entry"})
        count("MeteringFailed")
        return
    if daily and _add(channel_code, day, {"entries": 1, "month_members": int(monthly)}):
        metric("ChannelEntries", channel_code)


def parcel_returned(channel_code: str, points: int, amount: int) -> None:
    """A parcel refunded or cancelled after payment, with its points and amount (called once, by the transition
    that committed it)."""
    if _add(channel_code, business_day(), {"refunds": 1, "refund_points": points, "refund_amount": amount}):
        metric("ChannelRefunds", channel_code)


def refused(channel_code: str, code: str) -> None:
    """A checkout refused by a limit (``REASONS``); other errors are not refusals of a redemption."""
    reason = REASONS.get(code)
    if reason is None:
        return
    if _add(channel_code, business_day(), {f"refused_{reason}": 1}):
        metric("RedemptionRefused", channel_code, reason=reason)
        count("RedemptionRefused")  # all channels together: the refusal-spike alarm's metric


@contextmanager
def refusals(channel_code: str) -> Iterator[None]:
    """Meter the refusal a checkout raises, and let it through."""
    try:
        yield
    except DomainError as error:
        refused(channel_code, error.code)
        raise


def call(channel_code: str) -> None:
    """A signed server-to-server call the channel made to us, admitted."""
    if _add(channel_code, business_day(), {"calls": 1}):
        metric("InboundCalls", channel_code)


def call_refused(channel_code: str) -> None:
    """A signed call refused because the channel's prepaid balance ran out."""
    _add(channel_code, business_day(), {"calls_refused": 1})


def days(channel_code: str, first: str, last: str) -> dict[str, dict[str, int]]:
    """The channel's counters per business day from ``first`` to ``last`` (inclusive), days without any left
    out: one Query per shard."""
    found: dict[str, dict[str, int]] = {}
    for shard in range(SHARDS):
        for item in ChannelDay.query(f"{channel_code}#{shard}", ChannelDay.day.between(first, last)):
            sums = found.setdefault(item.day, dict.fromkeys(COUNTERS, 0))
            for name in COUNTERS:
                sums[name] += int(getattr(item, name) or 0)
    return found
