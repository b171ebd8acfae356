"""Billing's tables: daily operating counters and their once-marks, billing plans, prepaid balances and their entries.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _meta


class ChannelDay(Model):
    """One shard of one channel's operating counters for one business day (``billing.metering``), every field
    raised with an atomic ADD as its event happens, so reading a range of days is a Query, never a scan.

    ``meter`` is ``{channel}#{shard}``: each increment picks one of ``metering.SHARDS`` items at random, so a
    busy channel's counters are spread over several partitions (one item takes at most 1,000 writes a second);
    a day's figures are the sums over its shards."""

    Meta = _meta("channel-days")
    meter = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)  # "YYYY-MM-DD" in the business time zone (``clock.business_day``)
    entries = NumberAttribute(null=True)  # members who entered this day (each counted once a day)
    month_members = NumberAttribute(null=True)  # members whose first entry of the month was this day
    orders = NumberAttribute(null=True)  # orders paid
    points = NumberAttribute(null=True)  # points they redeemed
    gmv = NumberAttribute(null=True)  # their amount at channel prices, fen
    cost = NumberAttribute(null=True)  # their amount at settlement prices, fen
    refunds = NumberAttribute(null=True)  # parcels refunded or cancelled after payment
    refund_points = NumberAttribute(null=True)
    refund_amount = NumberAttribute(null=True)  # at channel prices, fen
    refused_quota = NumberAttribute(null=True)  # checkouts refused, by reason (``metering.REASONS``)
    refused_balance = NumberAttribute(null=True)
    refused_stock = NumberAttribute(null=True)
    refused_period = NumberAttribute(null=True)
    refused_password = NumberAttribute(null=True)
    calls = NumberAttribute(null=True)  # signed server-to-server calls the channel made to us (metered)
    calls_refused = NumberAttribute(null=True)  # calls refused because the prepaid balance ran out


class MeterMark(Model):
    """"Already counted": a member's entry in a day or a month, an order paid. Put with ``does_not_exist`` before
    the counter is raised, so a repeated event never counts twice; expires when it can no longer repeat."""

    Meta = _meta("meter-marks")
    mark = UnicodeAttribute(hash_key=True)  # "{channel}#d#{day}#{member}", "{channel}#m#{month}#{member}", "o#{order}"
    expires_at = TTLAttribute()


class BillingPlan(Model):
    """A channel's billing plan from one business day on (``billing.billing``); the plan of a day is the one
    with the latest ``effective_from`` not after it. Amounts in fen."""

    Meta = _meta("billing-plans")
    channel_code = UnicodeAttribute(hash_key=True)
    effective_from = UnicodeAttribute(range_key=True)  # "YYYY-MM-DD"
    kind = UnicodeAttribute()  # none | per_call | per_member | prepaid | package
    call_price = NumberAttribute(default=0)
    member_price = NumberAttribute(default=0)
    order_price = NumberAttribute(default=0)
    monthly_fee = NumberAttribute(default=0)
    included_calls = NumberAttribute(default=0)
    overage_price = NumberAttribute(default=0)
    alert_below = NumberAttribute(default=0)
    set_by = UnicodeAttribute()
    set_at = UnicodeAttribute(default=now_iso)


class PrepaidAccount(Model):
    """One shard of a prepaid channel's balance in fen (``billing.PREPAID_SHARDS`` items; the balance is their
    sum): top-ups add, each metered call or order takes its price with ``balance >= take`` on the shards it takes
    from (``billing``), so none goes below zero. Per shard, ``balance = topped_up - spent``."""

    Meta = _meta("prepaid-accounts")
    channel_code = UnicodeAttribute(hash_key=True)  # shard 0: the channel code; shard i: "{code}#{i}"
    balance = NumberAttribute(default=0)
    topped_up = NumberAttribute(default=0)
    spent = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(default=now_iso)


class PrepaidEntry(Model):
    """A movement of a prepaid balance that must happen once: a top-up (``topup#{id}``, ops' id), written in the
    same transaction as the balance change; ``order#{order_id}``: an order's debit from before orders carried
    their own (``Order.fee``), given back once by ``billing.give_back_legacy``."""

    Meta = _meta("prepaid-entries")
    channel_code = UnicodeAttribute(hash_key=True)
    entry_id = UnicodeAttribute(range_key=True)
    amount = NumberAttribute()
    actor = UnicodeAttribute()
    note = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
