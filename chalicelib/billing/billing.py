"""Billing plans: what the platform charges a channel for its use, in fen.

A channel's plan is one of
- ``none``: no fee;
- ``per_call``: ``call_price`` per signed server-to-server call it makes to us;
- ``per_member``: ``member_price`` per monthly unique member (a member who entered in a month counts once in it);
- ``prepaid``: each call costs ``call_price`` and each order ``order_price``, taken from a balance ops top up,
  kept in ``PREPAID_SHARDS`` items. A debit is a conditional write on the shard(s) it takes from (``balance >=
  take``), so the balance never goes below zero; once it cannot pay, the channel is refused with 402
  ``prepaid_exhausted``; when a debit takes it below ``alert_below``, ops are alerted (``PrepaidLow``). An
  order's price is taken in the order's own checkout transaction (so at most once per order id, and never for an
  order that does not exist) and given back in the transaction that releases the order, if it fails before
  anything was delivered (``checkout._release``). Its fee on the statement is nil: it was paid in advance;
- ``package``: ``monthly_fee`` for ``included_calls`` calls a month, ``overage_price`` per call beyond.

Plans are kept by the business day they take effect from; a channel's first plan takes effect at once, and a
change made today takes effect tomorrow (a day's plan never changes once the day has begun, so a statement can
always be recomputed) and is audited.

Every fee is additive over days (``plan_fee``): the monthly fee is spread over the month's days so that any run
of days gets ``floor(fee * end / n) - floor(fee * start / n)`` (a whole month gets exactly the fee), overage is
judged against the month's calls so far, and a member counts on the day of its first entry of the month. So the
fee of a period never depends on how periods or plan changes cut the month, and two periods never bill a day twice.
"""
from __future__ import annotations

import calendar
import random
import time
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.billing import metering
from chalicelib.billing.models import BillingPlan, PrepaidAccount, PrepaidEntry
from chalicelib.channels.models import Channel
from chalicelib.core import audit, shards
from chalicelib.core.clock import business_day, midnight, now_iso
from chalicelib.core.errors import Busy, Conflict, DomainError, Unprocessable
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import (
    AGAIN,
    Commit,
    Done,
    LabelledTransaction,
    Refused,
    commit_retrying,
    condition_failed,
    retrying,
    write_retrying,
)

NONE, PER_CALL, PER_MEMBER, PREPAID, PACKAGE = "none", "per_call", "per_member", "prepaid", "package"
# The price fields each kind uses; every other must be 0.
FIELDS = {
    NONE: (),
    PER_CALL: ("call_price",),
    PER_MEMBER: ("member_price",),
    PREPAID: ("call_price", "order_price", "alert_below"),
    PACKAGE: ("monthly_fee", "included_calls", "overage_price"),
}
AMOUNT_MAX = 10**12  # fen; far above any real figure, far below DynamoDB's 38 digits
PLAN_CACHE_SECONDS = 60.0
# The balance lives in this many items (``account_key``), so a busy channel's orders and calls do not all write
# one item (at most 1,000 writes a second): each debit takes from one shard, or from several when none can pay alone.
PREPAID_SHARDS = 8
PAY_ATTEMPTS = 25


class PrepaidExhausted(DomainError):
    status = 402


@dataclass(frozen=True)
class Plan:
    kind: str = NONE
    call_price: int = 0
    member_price: int = 0
    order_price: int = 0
    monthly_fee: int = 0
    included_calls: int = 0
    overage_price: int = 0
    alert_below: int = 0
    effective_from: str = ""


@dataclass(frozen=True)
class Usage:
    """What a channel used on a run of days of one month, under one plan."""

    calls: int = 0
    members: int = 0  # members whose first entry of the month fell on these days
    orders: int = 0
    calls_before: int = 0  # calls earlier in the same month (a package's allowance is monthly)
    first_day: int = 0  # the run's first day of the month, 0-based
    days: int = 1
    month_days: int = 30


def _spread(total: int, start: int, end: int, n: int) -> int:
    """Days ``start`` to ``end`` (exclusive) of an ``n``-day month's share of ``total``: exact over the month."""
    return total * end // n - total * start // n


def plan_fee(plan: Plan, usage: Usage) -> int:
    """The fee in fen for ``usage`` under ``plan`` (pure)."""
    if plan.kind == PER_CALL:
        return usage.calls * plan.call_price
    if plan.kind == PER_MEMBER:
        return usage.members * plan.member_price
    if plan.kind == PACKAGE:
        included = plan.included_calls
        over = max(0, usage.calls_before + usage.calls - included) - max(0, usage.calls_before - included)
        return (_spread(plan.monthly_fee, usage.first_day, usage.first_day + usage.days, usage.month_days)
                + over * plan.overage_price)
    return 0  # none; prepaid: paid in advance, debit by debit


def check_plan(kind: str, prices: dict[str, int]) -> Plan:
    """A plan from ops' input: only the kind's own fields, each a whole number of fen in bounds, and the
    ones that make the kind mean something set. 422 ``invalid_plan`` naming the field otherwise."""
    if kind not in FIELDS:
        raise Unprocessable("invalid_plan", f"kind must be one of {', '.join(FIELDS)}", "kind")
    for name, value in prices.items():
        if name not in FIELDS[kind] and value:
            raise Unprocessable("invalid_plan", f"a {kind} plan has no {name}", name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= AMOUNT_MAX:
            raise Unprocessable("invalid_plan", f"{name} must be a whole number of fen from 0 to {AMOUNT_MAX}", name)
    plan = Plan(kind, **{name: value for name, value in prices.items() if name in FIELDS[kind]})
    needed = {PER_CALL: ("call_price",), PER_MEMBER: ("member_price",), PACKAGE: ("included_calls", "overage_price")}
    for name in needed.get(kind, ()):
        if not getattr(plan, name):
            raise Unprocessable("invalid_plan", f"a {kind} plan needs {name} above 0", name)
    if kind == PREPAID and not (plan.call_price or plan.order_price):
        raise Unprocessable("invalid_plan", "a prepaid plan needs call_price or order_price above 0", "call_price")
    return plan


def _plan_of(item: BillingPlan) -> Plan:
    return Plan(item.kind, **{f.name: int(getattr(item, f.name) or 0) for f in fields(Plan)
                              if f.name not in ("kind", "effective_from")}, effective_from=item.effective_from)


def view(plan: Plan) -> dict[str, Any]:
    return {"kind": plan.kind, **{name: getattr(plan, name) for name in FIELDS[plan.kind]},
            "effective_from": plan.effective_from or None}


# --- plans by day -----------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], tuple[float, list[Plan]]] = {}


def plans(channel_code: str) -> list[Plan]:
    """Every plan the channel ever had, oldest first (one Query)."""
    return [_plan_of(item) for item in BillingPlan.query(channel_code)]


def plan_on(history: list[Plan], day: str) -> Plan:
    """The plan in force on ``day``: the latest one effective on or before it."""
    current = Plan()
    for plan in history:
        if plan.effective_from <= day:
            current = plan
    return current


def plan_today(channel_code: str) -> Plan:
    """Today's plan, on every signed call and checkout. A day's plan cannot change once the day has begun
    (changes take effect the next day), so the plans read today are kept per (channel, day) in the process,
    refreshed every minute all the same."""
    today = business_day()
    key = (channel_code, today)
    cached = _CACHE.get(key)
    if cached is None or cached[0] < time.monotonic():
        cached = (time.monotonic() + PLAN_CACHE_SECONDS, plans(channel_code))
        _CACHE[key] = cached
    return plan_on(cached[1], today)


def set_plan(channel: Channel, plan: Plan, actor: str, now: float | None = None) -> Plan:
    """Make ``plan`` the channel's plan, with its audit row, in one transaction: the channel's first plan from
    today (a new channel starts on it at once; today was billed under no plan, so nothing billed changes), any
    later one from the next business day on. A second
    change the same day replaces the first (both audited); a plan already in force today is never touched."""
    today = business_day(now)
    history = plans(channel.code)
    starts = today if not history else (date.fromisoformat(today) + timedelta(days=1)).isoformat()
    before = plan_on(history, starts)
    plan = Plan(**{**asdict(plan), "effective_from": starts})
    item = BillingPlan(channel.code, starts, set_by=actor, set_at=now_iso(),
                       **{k: v for k, v in asdict(plan).items() if k != "effective_from"})

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("plan", item)
        audit.add(tx, f"channel#{channel.code}", actor, "billing_plan_set", "billing_plan",
                  view(before), view(plan))
        return tx

    commit_retrying(build)
    for key in [k for k in _CACHE if k[0] == channel.code]:  # this process reads it again
        _CACHE.pop(key, None)
    return plan


def plans_view(channel_code: str) -> dict[str, Any]:
    history = plans(channel_code)
    today = business_day()
    current = plan_on(history, today)
    upcoming = [view(p) for p in history if p.effective_from > today]
    return {"channel": channel_code, "today": today, "current": view(current), "upcoming": upcoming,
            "history": [view(p) for p in history], "prepaid": prepaid_view(channel_code, current)}


# --- the fee line of a statement --------------------------------------------------------------------------

def _days_of(period_start: Any, period_end: Any) -> list[str]:
    """The business days of a period [start, end): those whose midnight falls inside it, so consecutive
    periods share no day and miss none. Ends are Unix seconds, ``date``s or ``YYYY-MM-DD``."""
    def instant(value: Any) -> float:
        return midnight(value) if isinstance(value, (date, str)) else float(value)

    start, end = instant(period_start), instant(period_end)
    day = date.fromisoformat(business_day(start))
    if midnight(day) < start:
        day += timedelta(days=1)
    found = []
    while midnight(day) < end:
        found.append(day.isoformat())
        day += timedelta(days=1)
    return found


def fee_for(channel_code: str, period_start: Any, period_end: Any) -> int:
    """The plan fee line of the channel's statement for a period [start, end) (Unix seconds, dates or
    ``YYYY-MM-DD``): each day of the period billed under the plan in force that day, from the metered
    counters (one Query per counter shard, from the first month's first day for a package's allowance)."""
    period = _days_of(period_start, period_end)
    if not period:
        return 0
    history = plans(channel_code)
    counters = metering.days(channel_code, period[0][:8] + "01", period[-1])
    total = 0
    run: list[str] = []

    def bill(run: list[str]) -> int:
        first = date.fromisoformat(run[0])
        n = calendar.monthrange(first.year, first.month)[1]
        used = [counters.get(d, {}) for d in run]
        before = sum(c.get("calls", 0) for d, c in counters.items() if d[:7] == run[0][:7] and d < run[0])
        usage = Usage(calls=sum(u.get("calls", 0) for u in used), members=sum(u.get("month_members", 0) for u in used),
                      orders=sum(u.get("orders", 0) for u in used), calls_before=before, first_day=first.day - 1,
                      days=len(run), month_days=n)
        return plan_fee(plan_on(history, run[0]), usage)

    for day in period:  # runs of days in one month under one plan
        if run and (day[:7] != run[0][:7] or plan_on(history, day) != plan_on(history, run[0])):
            total += bill(run)
            run = []
        run.append(day)
    return total + bill(run)


# --- prepaid balance ---------------------------------------------------------------------------------------

def account_key(channel_code: str, shard: int) -> str:
    """Shard 0 is keyed by the channel code itself (the balance from before shards); shard i by ``code#i``."""
    return channel_code if shard == 0 else f"{channel_code}#{shard}"


def account_keys(channel_code: str) -> list[tuple[str]]:
    """The keys of the channel's ``PREPAID_SHARDS`` balance items, for a batch read."""
    return [(account_key(channel_code, i),) for i in range(PREPAID_SHARDS)]


def balances(channel_code: str, items: list[PrepaidAccount]) -> dict[int, int]:
    """Shard → balance, from the shard items as read (a shard never written holds 0)."""
    found = {item.channel_code: int(item.balance or 0) for item in items}
    return {i: found.get(account_key(channel_code, i), 0) for i in range(PREPAID_SHARDS)}


def _accounts(channel_code: str) -> list[PrepaidAccount]:
    return list(PrepaidAccount.batch_get([key for key, in account_keys(channel_code)], consistent_read=True))


def prepaid_view(channel_code: str, plan: Plan | None = None) -> dict[str, Any] | None:
    """The balance (the sum over its shards), if the channel has (or had) a prepaid account."""
    accounts = _accounts(channel_code)
    if not accounts:
        return None
    plan = plan or plan_today(channel_code)
    total = lambda name: sum(int(getattr(a, name) or 0) for a in accounts)  # noqa: E731
    balance = total("balance")
    return {"balance": balance, "topped_up": total("topped_up"), "spent": total("spent"),
            "alert_below": plan.alert_below if plan.kind == PREPAID else None,
            "low": plan.kind == PREPAID and balance < plan.alert_below}


def exhausted(channel_code: str) -> PrepaidExhausted:
    """The refusal of a call or an order the balance cannot pay (counted, and shown on the dashboard)."""
    metering.metric("PrepaidExhausted", channel_code)
    count("PrepaidExhausted")
    return PrepaidExhausted("prepaid_exhausted",
                            f"channel {channel_code}'s prepaid balance is used up; ask the platform to top it up")


def alert(channel_code: str, plan: Plan, after: int, price: int) -> None:
    """The debit that took the balance below the plan's threshold tells ops (once per crossing, as far as the
    debit's own read of the balance can tell)."""
    if after < plan.alert_below <= after + price:
        logger.warning("prepaid balance low", extra={"channel": channel_code, "balance": after,
                                                     "alert_below": plan.alert_below})
        metering.metric("PrepaidLow", channel_code)
        count("PrepaidLow")


def take(available: dict[int, int], price: int) -> dict[int, int] | None:
    """Which balance shards pay ``price``: one at random that covers it alone, else the fullest in turn (so a
    debit is never refused while the balance as a whole can pay); None when the whole balance cannot."""
    return shards.take(available, price)


def debit(tx: LabelledTransaction, channel_code: str, takes: dict[int, int]) -> None:
    """In the caller's transaction: take ``takes`` from the balance shards, each with ``balance >= its take``
    (label ``prepaid:{shard}``), so the balance never goes below zero however many debits race."""
    for shard, amount in sorted(takes.items()):
        tx.update(f"prepaid:{shard}", PrepaidAccount(account_key(channel_code, shard)),
                  [PrepaidAccount.balance.add(-amount), PrepaidAccount.spent.add(amount)],
                  condition=PrepaidAccount.balance >= amount)


def credit(tx: LabelledTransaction, channel_code: str, takes: dict[int, int]) -> None:
    """In the caller's transaction: give back exactly what ``debit`` took, to the shards it took it from."""
    for shard, amount in sorted(takes.items()):
        tx.update(f"prepaid:{shard}", PrepaidAccount(account_key(channel_code, shard)),
                  [PrepaidAccount.balance.add(amount), PrepaidAccount.spent.add(-amount)])


def order_plan(channel: Channel) -> Plan | None:
    """Today's plan if it charges each order a price from the prepaid balance (checkout then reads the balance
    shards with its other reads and takes the price in the order's own transaction), else None."""
    plan = plan_today(channel.code)
    return plan if plan.kind == PREPAID and plan.order_price else None


def admit_call(channel: Channel) -> None:
    """A signed call from the channel's server, after its signature was proven: metered, and on a prepaid plan
    paid for first (402 ``prepaid_exhausted`` when the balance cannot pay; the call does nothing else).

    The price comes from one balance shard picked at random with a conditional ADD (no read); only when that
    shard cannot pay are all shards read and the price taken from those that can, in one transaction."""
    plan = plan_today(channel.code)
    price = plan.call_price if plan.kind == PREPAID else 0
    if price:
        after = _pay_call(channel.code, price)
        if after is None:
            metering.call_refused(channel.code)
            raise exhausted(channel.code)
        alert(channel.code, plan, after, price)
    metering.call(channel.code)


def _pay_call(channel_code: str, price: int) -> int | None:
    """Take ``price`` from the balance; what the balance held after it as far as this debit saw, or None when
    the whole balance cannot pay."""
    account = PrepaidAccount(account_key(channel_code, random.randrange(PREPAID_SHARDS)))
    try:
        write_retrying(lambda: account.update([PrepaidAccount.balance.add(-price), PrepaidAccount.spent.add(price)],
                                              condition=PrepaidAccount.balance >= price))
        return int(account.balance)
    except UpdateError as error:
        if not condition_failed(error):
            raise

    def build(accounts: list[PrepaidAccount]) -> Commit[int] | Done[None]:
        shards = balances(channel_code, accounts)
        takes = take(shards, price)
        if takes is None:
            return Done(None)
        tx = LabelledTransaction()
        debit(tx, channel_code, takes)
        # Refused: another debit took from the same shards first; read again.
        return Commit(tx, lambda: sum(shards.values()) - price, refused=lambda _: AGAIN)

    return retrying(lambda _: _accounts(channel_code), build, PAY_ATTEMPTS, exhausted=_too_many_calls)


def _too_many_calls() -> int:
    raise Busy("busy", "too many calls at once; retry")


def give_back_legacy(channel_code: str, order_id: str) -> None:
    """An order's price taken, before prices were taken in the order's own transaction, as a ``PrepaidEntry``
    (``order#{id}``): back to the balance once (the entry's delete is the proof). For remote orders placed before
    that change and released after it (``checkout._release``); a later order carries its own ``fee_takes``."""
    try:
        entry = PrepaidEntry.get(channel_code, f"order#{order_id}", consistent_read=True)
    except DoesNotExist:
        return

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.delete("entry", entry, condition=PrepaidEntry.entry_id.exists())
        credit(tx, channel_code, {0: int(entry.amount)})
        return tx

    try:
        commit_retrying(build)
    except Refused:
        pass  # given back by another caller


def _spread_over_shards(amount: int) -> dict[int, int]:
    """A top-up split over the balance shards (shares differ by at most 1 fen, the total exact)."""
    return {i: amount // PREPAID_SHARDS + (i < amount % PREPAID_SHARDS) for i in range(PREPAID_SHARDS)
            if amount // PREPAID_SHARDS + (i < amount % PREPAID_SHARDS)}


def top_up(channel: Channel, topup_id: str, amount: int, actor: str, note: str | None = None
           ) -> tuple[dict[str, Any], bool]:
    """Add ``amount`` fen to the channel's prepaid balance (spread over its shards), once per ``topup_id`` (a retry
    answers the same; the same id with another amount is 409 ``topup_id_reused``), audited in the same transaction."""
    entry = PrepaidEntry(channel.code, f"topup#{topup_id}", amount=amount, actor=actor, note=note)

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("entry", entry, condition=PrepaidEntry.entry_id.does_not_exist())
        for shard, share in _spread_over_shards(amount).items():
            tx.update(f"balance:{shard}", PrepaidAccount(account_key(channel.code, shard)),
                      [PrepaidAccount.balance.add(share), PrepaidAccount.topped_up.add(share),
                       PrepaidAccount.updated_at.set(now_iso())])
        audit.add(tx, f"channel#{channel.code}", actor, "prepaid_topped_up", "prepaid_balance",
                  None, {"topup_id": topup_id, "amount": amount})
        return tx

    try:
        commit_retrying(build)
        created = True
    except Refused:
        earlier = PrepaidEntry.get(channel.code, f"topup#{topup_id}", consistent_read=True)
        if int(earlier.amount) != amount:
            raise Conflict("topup_id_reused", f"top-up {topup_id} was made with another amount", "topup_id") from None
        created = False
    return {"topup_id": topup_id, "amount": amount, "prepaid": prepaid_view(channel.code)}, created

