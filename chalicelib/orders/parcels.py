"""Parcels: a paid order split into one sub-order per supplier, shipped, completed or cancelled on its own.

``split`` writes every parcel of an order in one transaction with the ``order.paid`` event; the parcel ids
are derived from the order (``{order_id}-{n}``, n over its suppliers by id), so a re-run is refused by the
``does_not_exist`` conditions and writes nothing new. Each later move of a parcel (``transition``) is one
transaction: the parcel's new state, conditioned on the state it was read in (two racing moves cannot both
happen); a condition that its sibling parcels are still as read, so the order state derived from them, and
the order event that goes with a change of it, are right even when siblings move at the same moment; its
audit row; its events; and whatever the caller adds (``extra``: a cancel's or refund's stock, points and quota,
given back by ``refunds``, which decides how a parcel is cancelled). Parcels only move states.

A sandbox channel's order is split like any other, but its parcels are never shown to a supplier.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Callable

from pynamodb.exceptions import DoesNotExist

from chalicelib.billing import metering
from chalicelib.channels import channels
from chalicelib.core import audit
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import BadRequest, Busy, Conflict, NotFound, Unprocessable
from chalicelib.core.models import plain
from chalicelib.core.observability import count
from chalicelib.core.tx import LabelledTransaction, Refused, batch_read, commit_retrying
from chalicelib.members.models import Member
from chalicelib.orders import allocation
from chalicelib.orders.models import Order, Parcel
from chalicelib.core.tx import AGAIN, Commit, retrying
from chalicelib.orders import record
from chalicelib.orders import parcel_states as ps
from chalicelib.partners import events
from chalicelib.settlement import books

ATTEMPTS = 25
PAGE_MAX = 100
# The order event that a change of the derived order state records (states without one record none).
ORDER_EVENTS = {ps.PARTIALLY_SHIPPED: "order.partially_shipped", ps.ORDER_SHIPPED: "order.shipped",
                ps.ORDER_COMPLETED: "order.completed", ps.ORDER_CANCELLED: "order.cancelled",
                ps.PARTIALLY_REFUNDED: "order.partially_refunded", ps.ORDER_REFUNDED: "order.refunded"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- reading -----------------------------------------------------------------------------------------

def _number(parcel_id: str) -> int:
    return int(parcel_id.rsplit("-", 1)[1])


def parcel_ids(order: Order) -> list[str]:
    """The ids an order's parcels have (or will have once split): one per supplier, numbered by supplier id."""
    suppliers = {str(line["supplier_id"]) for line in record.lines_of(order)}
    return [f"{order.order_id}-{n}" for n in range(1, len(suppliers) + 1)]


def of_order(order_id: str, order: Order | None = None) -> list[Parcel]:
    """The order's parcels, read by key and strongly consistent (empty until it is split)."""
    order = order or _order(order_id)
    found = batch_read({Parcel: [(pid,) for pid in parcel_ids(order)]}, consistent=(Parcel,))[Parcel]
    return sorted(found, key=lambda p: _number(p.parcel_id))


def _order(order_id: str) -> Order:
    try:
        return Order.get(order_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("order_not_found", f"no order {order_id}") from None


def _get(parcel_id: str) -> Parcel | None:
    try:
        return Parcel.get(parcel_id, consistent_read=True)
    except DoesNotExist:
        return None


def for_supplier(supplier_id: str, parcel_id: str) -> Parcel:
    """The supplier's own parcel; another supplier's, a sandbox one or none at all answer the same 404."""
    parcel = _get(parcel_id)
    if parcel is None or parcel.supplier_id != supplier_id or parcel.sandbox:
        raise NotFound("parcel_not_found", f"no parcel {parcel_id}")
    return parcel


def for_member(member_id: str, channel_code: str, parcel_id: str) -> Parcel:
    parcel = _get(parcel_id)
    if parcel is None or parcel.member_id != member_id or parcel.channel_code != channel_code:
        raise NotFound("parcel_not_found", f"no parcel {parcel_id}")
    return parcel


# --- split -------------------------------------------------------------------------------------------

def split(order_id: str) -> list[Parcel]:
    """Write the paid order's parcels, and its ``order.paid`` event, in one transaction; once.

    A re-run (a Step Functions retry, a second execution) finds them and writes nothing."""
    order = _order(order_id)
    if order.status != record.PAID:
        raise Conflict("order_not_paid", f"order {order_id} is {order.status}, not paid")
    existing = of_order(order_id, order)
    if existing:
        return existing
    plans = allocation.plan(int(order.points), record.lines_of(order))
    now = now_iso()
    rate = int(order.points_per_yuan or channels.get(order.channel_code).points_per_yuan)  # older orders: today's
    parcels = [Parcel(f"{order_id}-{p.n}", order_id=order_id, channel_code=order.channel_code,
                      member_id=order.member_id, supplier_id=p.supplier_id, lines=p.lines, points=p.points,
                      amount=p.amount, state=ps.AWAITING, sandbox=bool(order.sandbox), created_at=now,
                      updated_at=now, points_per_yuan=rate) for p in plans]
    data = dict(_order_summary(order, parcels), member_id=_external_id(order))

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        for parcel in parcels:
            tx.put(f"parcel:{parcel.parcel_id}", parcel, condition=Parcel.parcel_id.does_not_exist())
            books.record_billed(tx, parcel)  # the channel owes for it from today
        events.record(tx, order.channel_code, "order.paid", order_id, data, sandbox=bool(order.sandbox))
        tx.update("order", order, [Order.unsplit.remove()])  # off the sweep's list of unstarted orders
        return tx

    try:
        commit_retrying(build)
        count("OrdersSplit")
    except Refused:
        pass  # a concurrent run split it first: its parcels are the same ones
    return of_order(order_id, order)


def _order_summary(order: Order, parcels: list[Parcel]) -> dict:
    """What the channel hears of a paid order: its parcels by neutral name, lines without settlement prices."""
    return {"order_id": order.order_id, "state": ps.PAID, "points": int(order.points), "amount": int(order.amount),
            "parcels": [{"parcel_id": p.parcel_id, "name": name(p, len(parcels)), "points": int(p.points),
                         "lines": _lines(p, False)} for p in parcels]}


def _external_id(order: Order) -> str | None:
    """The member as the channel knows it (its own member id), for the channel's events."""
    try:
        return Member.get(order.member_id).external_id
    except DoesNotExist:
        return None


# --- transitions -------------------------------------------------------------------------------------

Extra = Callable[[LabelledTransaction, Parcel, Order], list]


def transition(parcel: Parcel, action: str, actor: str, actions: list | None = None, extra: Extra | None = None,
               reread: Callable[[], Parcel] | None = None, shown: dict | None = None) -> Parcel:
    """Move ``parcel`` by ``action`` in one transaction, retried on a lost race; 409 naming its state if the
    table does not allow it. ``actions`` are further updates of the parcel; ``extra`` adds other items
    (stock, wallet, quota…) to the same transaction and answers more updates of the parcel. Records ``parcel.<to>`` where that is an event kind and
    the order event when the derived order state changes (``ORDER_EVENTS``); ``shown`` are fields the parcel
    event shows as they will be (a shipment's carrier and tracking number)."""
    reread = reread or (lambda: _get(parcel.parcel_id))

    def build(parcel: Parcel) -> Commit[Parcel]:
        to = ps.next_state(parcel.state, action)
        order = _order(parcel.order_id)
        siblings = [p for p in of_order(parcel.order_id, order) if p.parcel_id != parcel.parcel_id]
        before = ps.order_state([parcel.state] + [s.state for s in siblings])
        after = ps.order_state([to] + [s.state for s in siblings])
        stamp = now_iso()
        tx = LabelledTransaction()
        more = extra(tx, parcel, order) if extra is not None else []
        tx.update("parcel", parcel, [Parcel.state.set(to), Parcel.updated_at.set(stamp)] + list(actions or []) + more,
                  condition=Parcel.state == parcel.state)
        for sibling in siblings:
            tx.check(f"sibling:{sibling.parcel_id}", Parcel, sibling.parcel_id, condition=Parcel.state == sibling.state)
        audit.add(tx, f"parcel#{parcel.parcel_id}", actor, action, "state", parcel.state, to)
        total = len(siblings) + 1
        if f"parcel.{to}" in events.KINDS:
            events.record(tx, order.channel_code, f"parcel.{to}", parcel.parcel_id,
                          dict(_parcel_event(parcel, total), **(shown or {}), **_given_back(parcel, to, actor),
                               state=to, order_state=after), sandbox=bool(order.sandbox))
        if after != before and after in ORDER_EVENTS:
            states = {s.parcel_id: s.state for s in siblings} | {parcel.parcel_id: to}
            events.record(tx, order.channel_code, ORDER_EVENTS[after], order.order_id,
                          {"order_id": order.order_id, "state": after,
                           "parcels": [{"parcel_id": pid, "state": states[pid]} for pid in sorted(states, key=_number)]},
                          sandbox=bool(order.sandbox))

        def moved() -> Parcel:
            if to in (ps.CANCELLED, ps.REFUNDED):  # this commit gave the parcel's points back: metered once, here
                metering.parcel_returned(parcel.channel_code, int(parcel.points), int(parcel.amount))
            return reread()

        # Refused: the parcel or a sibling moved since the read; read again (the table then decides).
        return Commit(tx, moved, refused=lambda _: AGAIN)

    return retrying(lambda attempt: reread() if attempt else parcel, build, ATTEMPTS, exhausted=_too_contended)


def _too_contended() -> Parcel:
    raise Busy("busy", "too many concurrent changes to this parcel; retry")


def _given_back(parcel: Parcel, to: str, actor: str) -> dict:
    """What a parcel event tells the channel a cancel or refund gave back: the points (a channel shows its member
    the points coming back, cancelled parcel by parcel), and who cancelled: the member or the shipping deadline."""
    if to == ps.REFUNDED:
        return {"points_returned": int(parcel.points)}
    if to == ps.CANCELLED:
        by = "member" if actor.startswith("member:") else (
            "shipping_deadline" if actor == "system:shipping_deadline" else "platform")
        return {"points_returned": int(parcel.points), "cancelled_by": by}
    return {}


def _parcel_event(parcel: Parcel, total: int) -> dict:
    return {"order_id": parcel.order_id, "parcel_id": parcel.parcel_id, "name": name(parcel, total),
            "carrier": parcel.carrier, "tracking_no": parcel.tracking_no}


def ship(supplier_id: str, parcel_id: str, carrier: str, tracking_no: str) -> Parcel:
    """The supplier ships its own parcel with carrier and tracking number (once: a second ship is a 409)."""
    parcel = for_supplier(supplier_id, parcel_id)

    def payable(tx: LabelledTransaction, current: Parcel, order: Order) -> list:
        books.record_payable(tx, current, time.time())  # the supplier is owed for it from today
        return []

    return transition(parcel, "ship", f"supplier:{supplier_id}",
                      [Parcel.carrier.set(carrier), Parcel.tracking_no.set(tracking_no), Parcel.shipped_at.set(now_iso())],
                      extra=payable, shown={"carrier": carrier, "tracking_no": tracking_no},
                      reread=lambda: for_supplier(supplier_id, parcel_id))


def confirm_receipt(member_id: str, channel_code: str, parcel_id: str) -> Parcel:
    """The member confirms a shipped parcel arrived: completed before the receipt window ends."""
    parcel = for_member(member_id, channel_code, parcel_id)
    return transition(parcel, "complete", f"member:{member_id}", [Parcel.completed_at.set(now_iso())],
                      reread=lambda: for_member(member_id, channel_code, parcel_id))


def complete_shipped(order_id: str) -> list[str]:
    """The end of the receipt window: complete every parcel still shipped (confirmed ones already are)."""
    completed = []
    for parcel in of_order(order_id):
        if parcel.state != ps.SHIPPED:
            continue
        try:
            transition(parcel, "complete", "system:receipt_window", [Parcel.completed_at.set(now_iso())])
        except Conflict as refused:
            if refused.code in ps.REFUSAL_CODES.values():
                continue  # confirmed or refunded meanwhile
            raise
        completed.append(parcel.parcel_id)
    return completed


# --- views -------------------------------------------------------------------------------------------

def name(parcel: Parcel, total: int) -> str:
    """Supplier-neutral: the member and the channel never learn who the supplier is."""
    return f"Parcel {_number(parcel.parcel_id)} of {total}"


def _lines(parcel: Parcel, settlement: bool) -> list[dict]:
    lines = [plain(line) for line in parcel.lines]
    return lines if settlement else [{k: v for k, v in l.items() if k != "settlement_price"} for l in lines]


def _returned(parcel: Parcel, now: float) -> dict | None:
    if parcel.returned is None:
        return None
    returned = plain(parcel.returned)
    if "expires_at" in returned:
        returned["points_expired"] = int(returned["expires_at"]) <= now
    return returned


def member_view(parcel: Parcel, total: int, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    return {"parcel_id": parcel.parcel_id, "name": name(parcel, total), "state": parcel.state,
            "lines": _lines(parcel, False), "points": int(parcel.points), "amount": int(parcel.amount),
            "carrier": parcel.carrier, "tracking_no": parcel.tracking_no, "shipped_at": parcel.shipped_at,
            "completed_at": parcel.completed_at, "returned": _returned(parcel, now),
            "can_cancel": (parcel.state, "cancel") in ps.TRANSITIONS,
            "can_confirm_receipt": (parcel.state, "complete") in ps.TRANSITIONS}


def order_view(order: Order, parcels: list[Parcel]) -> dict:
    """The order's parcels and its derived state (its checkout status until it is split)."""
    if not parcels:
        return {"state": order.status, "parcels": []}
    return {"state": ps.order_state(p.state for p in parcels),
            "parcels": [member_view(p, len(parcels)) for p in parcels]}


def of_orders(found: list[Order]) -> dict[str, list[Parcel]]:
    """Several orders' parcels in as few ``BatchGetItem`` calls as their keys allow (100 keys each)."""
    keys = [(pid,) for order in found for pid in parcel_ids(order)]
    grouped: dict[str, list[Parcel]] = {order.order_id: [] for order in found}
    for start in range(0, len(keys), 100):
        for parcel in batch_read({Parcel: keys[start:start + 100]}, consistent=(Parcel,))[Parcel]:
            grouped[parcel.order_id].append(parcel)
    return {oid: sorted(ps_, key=lambda p: _number(p.parcel_id)) for oid, ps_ in grouped.items()}


def supplier_view(parcel: Parcel, ship_to: dict | None = None) -> dict:
    view = {"parcel_id": parcel.parcel_id, "order_id": parcel.order_id, "state": parcel.state,
            "lines": _lines(parcel, True), "amount": int(parcel.amount), "carrier": parcel.carrier,
            "tracking_no": parcel.tracking_no, "shipped_at": parcel.shipped_at, "completed_at": parcel.completed_at,
            "created_at": parcel.created_at, "updated_at": parcel.updated_at}
    if ship_to is not None:
        view["ship_to"] = ship_to
    return view


def supplier_detail(supplier_id: str, parcel_id: str) -> dict:
    """The supplier's own parcel with where to ship it (the address the member gave at checkout)."""
    parcel = for_supplier(supplier_id, parcel_id)
    address = _order(parcel.order_id).address
    return supplier_view(parcel, plain(address) or {})


def _cursor_out(key: dict | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode() if key else None


def _cursor_in(cursor: str | None, supplier_id: str) -> dict | None:
    """The resume key a cursor carries, only if it is one we gave this supplier (anything else: 400)."""
    if not cursor:
        return None
    invalid = BadRequest("invalid_cursor", "the cursor is not one this API gave out", "cursor")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    names = {"parcel_id", "supplier_id", "created_at"}
    if not isinstance(key, dict) or set(key) != names or any(
            not isinstance(v, dict) or set(v) != {"S"} or not isinstance(v["S"], str) or len(v["S"]) > 200
            for v in key.values()) or key["supplier_id"]["S"] != supplier_id:
        raise invalid
    return key


def list_own(supplier_id: str, state: str | None = None, since: str | None = None, until: str | None = None,
             cursor: str | None = None, limit: str | None = None) -> dict:
    """A page of the supplier's parcels, newest first; ``state`` and a date range (``YYYY-MM-DD``, inclusive,
    UTC) filter it; the cursor is opaque. Sandbox parcels are never listed."""
    if state is not None and state not in ps.STATES:
        raise Unprocessable("validation_error", f"state is one of {', '.join(ps.STATES)}", "state")
    for field, value in (("since", since), ("until", until)):
        if value is not None and not DATE.match(value):
            raise Unprocessable("validation_error", f"{field} is a date YYYY-MM-DD", field)
    size = int(limit) if limit is not None and limit.isdigit() and len(limit) <= 3 else (20 if limit is None else 0)
    if not 1 <= size <= PAGE_MAX:
        raise Unprocessable("validation_error", f"limit must be a whole number from 1 to {PAGE_MAX}", "limit")
    condition = Parcel.created_at.between(since or "0000-00-00", (until or "9999-12-31") + "\uffff")
    filters = Parcel.sandbox == False  # noqa: E712
    if state is not None:
        filters = filters & (Parcel.state == state)
    results = Parcel.supplier_index.query(supplier_id, range_key_condition=condition, filter_condition=filters,
                                          scan_index_forward=False, limit=size,
                                          last_evaluated_key=_cursor_in(cursor, supplier_id))
    items = [supplier_view(p) for p in results]
    last = results.last_evaluated_key if len(items) == size else None
    return {"items": items, "next_cursor": _cursor_out(last)}
