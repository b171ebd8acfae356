"""Billing plans: what the platform charges a channel for its use, in fen.

A channel's plan is one of
- ``none``: no fee;
- ``per_call``: ``call_price`` per signed server-to-server call it makes to us;
- ``per_member``: ``member_price`` per monthly unique member (a member who entered in a month counts once in it);
- ``prepaid``: each call costs ``call_price`` and each order ``order_price``, taken from a balance ops top up.
  A debit is a conditional write (``balance >= price``), so the balance never goes below zero; once it cannot
  pay, the channel is refused with 402 ``prepaid_exhausted``; when a debit takes it below ``alert_below``, ops
  are alerted (``PrepaidLow``). Its fee on the statement is nil: it was paid in advance;
- ``package``: ``monthly_fee`` for ``included_calls`` calls a month, ``overage_price`` per call beyond.

Plans are kept by the business day they take effect from; a change made today takes effect tomorrow (a day's
plan never changes once the day has begun, so a statement can always be recomputed) and is audited.

Every fee is additive over days (``plan_fee``): the monthly fee is spread over the month's days so that any run
of days gets ``floor(fee * end / n) - floor(fee * start / n)`` (a whole month gets exactly the fee), overage is
judged against the month's calls so far, and a member counts on the day of its first entry of the month. So the
fee of a period never depends on how periods or plan changes cut the month, and two periods never bill a day twice.
"""
from __future__ import annotations

import calendar
import time
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any, Callable

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.core import audit
from chalicelib.core.errors import Conflict, DomainError, Unprocessable
from chalicelib.core.models import (
    BillingPlan,
    Channel,
    LabelledTransaction,
    Order,
    PrepaidAccount,
    PrepaidEntry,
    Refused,
    commit_retrying,
    condition_failed,
    now_iso,
    write_retrying,
)
from chalicelib.core.observability import count, logger
from chalicelib.partners import metering

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
    today = metering.day_of()
    key = (channel_code, today)
    cached = _CACHE.get(key)
    if cached is None or cached[0] < time.monotonic():
        cached = (time.monotonic() + PLAN_CACHE_SECONDS, plans(channel_code))
        _CACHE[key] = cached
    return plan_on(cached[1], today)


def set_plan(channel: Channel, plan: Plan, actor: str, now: float | None = None) -> Plan:
    """Make ``plan`` the channel's plan from the next business day on, with its audit row, in one transaction.
    A second change the same day replaces the first (both audited); today's plan is never touched."""
    tomorrow = (date.fromisoformat(metering.day_of(now)) + timedelta(days=1)).isoformat()
    before = plan_on(plans(channel.code), tomorrow)
    plan = Plan(**{**asdict(plan), "effective_from": tomorrow})
    item = BillingPlan(channel.code, tomorrow, set_by=actor, set_at=now_iso(),
                       **{k: v for k, v in asdict(plan).items() if k != "effective_from"})

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("plan", item)
        tx.put("audit", audit.row(f"channel#{channel.code}", actor, "billing_plan_set", "billing_plan",
                                  view(before), view(plan)))
        return tx

    commit_retrying(build)
    for key in [k for k in _CACHE if k[0] == channel.code]:  # this process reads it again
        _CACHE.pop(key, None)
    return plan


def plans_view(channel_code: str) -> dict[str, Any]:
    history = plans(channel_code)
    today = metering.day_of()
    current = plan_on(history, today)
    upcoming = [view(p) for p in history if p.effective_from > today]
    return {"channel": channel_code, "today": today, "current": view(current), "upcoming": upcoming,
            "history": [view(p) for p in history], "prepaid": prepaid_view(channel_code, current)}


# --- the fee line of a statement --------------------------------------------------------------------------

def _days_of(period_start: Any, period_end: Any) -> list[str]:
    """The business days of a period [start, end): those whose midnight falls inside it, so consecutive
    periods share no day and miss none. Ends are Unix seconds, ``date``s or ``YYYY-MM-DD``."""
    def instant(value: Any) -> float:
        return metering.midnight(value) if isinstance(value, (date, str)) else float(value)

    start, end = instant(period_start), instant(period_end)
    day = date.fromisoformat(metering.day_of(start))
    if metering.midnight(day) < start:
        day += timedelta(days=1)
    found = []
    while metering.midnight(day) < end:
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


# --- prepaid balance --------------------------------------------------------------------------------------

def _account(channel_code: str) -> PrepaidAccount | None:
    try:
        return PrepaidAccount.get(channel_code, consistent_read=True)
    except DoesNotExist:
        return None


def prepaid_view(channel_code: str, plan: Plan | None = None) -> dict[str, Any] | None:
    """The balance, if the channel has (or had) a prepaid account."""
    account = _account(channel_code)
    if account is None:
        return None
    plan = plan or plan_today(channel_code)
    balance = int(account.balance)
    return {"balance": balance, "topped_up": int(account.topped_up), "spent": int(account.spent),
            "alert_below": plan.alert_below if plan.kind == PREPAID else None,
            "low": plan.kind == PREPAID and balance < plan.alert_below}


def _exhausted(channel_code: str) -> PrepaidExhausted:
    metering.metric("PrepaidExhausted", channel_code)
    count("PrepaidExhausted")
    return PrepaidExhausted("prepaid_exhausted",
                            f"channel {channel_code}'s prepaid balance is used up; ask the platform to top it up")


def _alert(channel_code: str, plan: Plan, after: int, price: int) -> None:
    """The debit that took the balance below the plan's threshold tells ops (once per crossing)."""
    if after < plan.alert_below <= after + price:
        logger.warning("prepaid balance low", extra={"channel": channel_code, "balance": after,
                                                     "alert_below": plan.alert_below})
        metering.metric("PrepaidLow", channel_code)
        count("PrepaidLow")


def admit_call(channel: Channel) -> None:
    """A signed call from the channel's server, after its signature was proven: metered, and on a prepaid plan
    paid for first (402 ``prepaid_exhausted`` when the balance cannot pay; the call does nothing else)."""
    plan = plan_today(channel.code)
    price = plan.call_price if plan.kind == PREPAID else 0
    if price:
        account = PrepaidAccount(channel.code)
        try:
            write_retrying(lambda: account.update(
                [PrepaidAccount.balance.add(-price), PrepaidAccount.spent.add(price)],
                condition=PrepaidAccount.balance >= price))
        except UpdateError as error:
            if not condition_failed(error):
                raise
            metering.call_refused(channel.code)
            raise _exhausted(channel.code) from None
        _alert(channel.code, plan, int(account.balance), price)
    metering.call(channel.code)


def _order_entry(channel_code: str, order_id: str) -> PrepaidEntry:
    return PrepaidEntry(channel_code, f"order#{order_id}")


def _charge_order(channel_code: str, order_id: str, plan: Plan) -> bool:
    """Take the order's price once per order id; True if this call took it, False if it was taken before."""
    price = plan.order_price

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        entry = _order_entry(channel_code, order_id)
        entry.amount, entry.actor = price, "checkout"
        tx.put("entry", entry, condition=PrepaidEntry.entry_id.does_not_exist())
        tx.update("balance", PrepaidAccount(channel_code),
                  [PrepaidAccount.balance.add(-price), PrepaidAccount.spent.add(price)],
                  condition=PrepaidAccount.balance >= price)
        return tx

    try:
        commit_retrying(build)
    except Refused as refused:
        if "entry" in refused.labels:
            return False
        raise _exhausted(channel_code) from None
    account = _account(channel_code)
    if account is not None:
        _alert(channel_code, plan, int(account.balance), price)
    return True


def give_back_order(channel_code: str, order_id: str) -> None:
    """An order's price back to the balance, if one was taken; once (the entry's delete is the proof). For a
    checkout refused, and a remote order released (``checkout._release``: the channel refused or never deducted)."""
    try:
        entry = PrepaidEntry.get(channel_code, f"order#{order_id}", consistent_read=True)
    except DoesNotExist:
        return

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.delete("entry", entry, condition=PrepaidEntry.entry_id.exists())
        tx.update("balance", PrepaidAccount(channel_code),
                  [PrepaidAccount.balance.add(int(entry.amount)), PrepaidAccount.spent.add(-int(entry.amount))])
        return tx

    try:
        commit_retrying(build)
    except Refused:
        pass  # given back by another caller


def charged_checkout(channel: Channel, order_id: str, place: Callable[[], tuple[Order, bool]]
                     ) -> tuple[Order, bool]:
    """Run a member's checkout (``place``) on a prepaid plan with an order price: the price is taken first
    (402 when the balance cannot pay, before anything is reserved), once per order id however often the member
    retries, and given back when the checkout is refused (a 4xx with no order; a remote order the channel does
    not deduct gives it back when it is released). Any other plan: ``place`` alone."""
    plan = plan_today(channel.code)
    if plan.kind != PREPAID or not plan.order_price:
        return place()
    took = _charge_order(channel.code, order_id, plan)
    try:
        return place()
    except DomainError as error:
        if took and error.status < 500 and not Order.count(order_id, consistent_read=True):
            give_back_order(channel.code, order_id)
        raise


def top_up(channel: Channel, topup_id: str, amount: int, actor: str, note: str | None = None
           ) -> tuple[dict[str, Any], bool]:
    """Add ``amount`` fen to the channel's prepaid balance, once per ``topup_id`` (a retry answers the same; the
    same id with another amount is 409 ``topup_id_reused``), audited in the same transaction."""
    entry = PrepaidEntry(channel.code, f"topup#{topup_id}", amount=amount, actor=actor, note=note)

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("entry", entry, condition=PrepaidEntry.entry_id.does_not_exist())
        tx.update("balance", PrepaidAccount(channel.code),
                  [PrepaidAccount.balance.add(amount), PrepaidAccount.topped_up.add(amount),
                   PrepaidAccount.updated_at.set(now_iso())])
        tx.put("audit", audit.row(f"channel#{channel.code}", actor, "prepaid_topped_up", "prepaid_balance",
                                  None, {"topup_id": topup_id, "amount": amount}))
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

