"""The orders stream consumer (``partners.order_figures``, ``app.order_figures``): paid orders and the partner
calls their requests made are counted from the stream, off the request path — a record delivered twice counts
once, and a record that cannot be read is parked without holding up the rest. The local system runs the consumer
as Lambda's event source mapping does (``tools.stack.LocalStreams``)."""
from __future__ import annotations

import json
import time

import requests

from checkout_helpers import PRICE, SETTLEMENT, make_shop, ok, uid
from chalicelib.billing import metering
from chalicelib.core.clock import business_day
from chalicelib.orders.models import Order
from chalicelib.partners import reliability
from chalicelib.partners.models import ParkedRecord
from chalicelib.partners.order_figures import Call, Paid, derive


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


def image(status: str, calls: list[dict] | None = None) -> dict:
    item = {"order_id": _s("O1"), "channel_code": _s("bank-a"), "status": _s(status), "points": _n(1200),
            "amount": _n(1200), "created_at": _s("2031-01-01T16:00:01.000+00:00"),
            "lines": {"L": [{"M": {"settlement_price": _n(1000), "qty": _n(2)}}]}}
    if calls is not None:
        item["partner_calls"] = _s(json.dumps(calls))
    return item


def record(event_id: str, new: dict | None, old: dict | None = None) -> dict:
    body = {"Keys": {"order_id": _s("O1")}, "SequenceNumber": event_id}
    body |= {"NewImage": new} if new is not None else {}
    body |= {"OldImage": old} if old is not None else {}
    return {"eventID": event_id, "eventName": "MODIFY" if old and new else "INSERT" if new else "REMOVE",
            "dynamodb": body}


CALL = {"id": "cm-1", "api": "password/verify", "minute": 100, "kinds": {"ok": 1}, "h": {"3": 1}}


def test_a_record_counts_the_write_that_made_the_order_paid_and_the_calls_it_carried():
    """Pure: the insert of a paid order counts it on its business day (UTC+8) with the calls it carried; the
    confirm of a remote order counts it and only the calls its own write added; a later write counts nothing."""
    inserted = derive(record("1", image("paid", [CALL])))
    assert inserted.paid == Paid("O1", "bank-a", "2031-01-02", 1200, 1200, 2000)
    assert inserted.calls == [Call("bank-a", "password/verify", 100, {"ok": 1}, {"3": 1})]
    deduct = {**CALL, "id": "cm-2", "api": "points/deduct"}
    confirmed = derive(record("2", image("paid", [deduct]), image("awaiting_deduction", [CALL])))
    assert confirmed.paid is not None and [c.api for c in confirmed.calls] == ["points/deduct"]
    split = derive(record("3", image("paid", [deduct]), image("paid", [deduct])))
    assert (split.paid, split.calls) == (None, [])
    assert derive(record("4", image("awaiting_deduction"))).paid is None
    assert derive(record("5", None, image("paid"))).paid is None


def figures_of(code: str) -> tuple[dict, int]:
    """The channel's metered day (today) and its password calls booked in the last hour."""
    today = business_day()
    day = metering.days(code, today, today).get(today, {})
    return {k: day.get(k, 0) for k in ("orders", "points", "gmv", "cost")}, \
        reliability.stats(code, "password/verify", int(time.time()) - 3600)["calls"]


def test_a_record_processed_twice_counts_once(system, ops):
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, PRICE), 201)
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201
    system.streams.drain()
    once = figures_of(shop.code)
    assert once == ({"orders": 1, "points": PRICE, "gmv": PRICE, "cost": SETTLEMENT}, 1)
    # Lambda delivers the batch again (a retry after a timeout, say): the same records change nothing
    batch = next(e for e in system.streams.delivered
                 if any(r["dynamodb"]["Keys"]["order_id"]["S"] == placed.order_id for r in e["Records"]))
    outcome = system.app.order_figures(batch, None)
    assert outcome["counted"] == 0 and outcome["parked"] == 0, outcome
    assert figures_of(shop.code) == once


def test_a_record_that_cannot_be_read_is_parked_and_the_rest_go_on(system, ops):
    """An order item the consumer cannot read (a paid order without its lines) reaches the stream before a good
    order: the bad record is parked for ops, the good order is counted, and no batch is left failing."""
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, PRICE), 201)
    bad_id = uid("OBAD").upper()
    Order._get_connection().connection.client.put_item(TableName=Order.Meta.table_name, Item={
        "order_id": _s(bad_id), "channel_code": _s(shop.code), "status": _s("paid"), "points": _n(5),
        "amount": _n(5), "created_at": _s("not a time")})
    assert shop.place(requests.Session(), member).status == 201
    failures = len(system.streams.failures)
    system.streams.drain()
    assert figures_of(shop.code)[0]["orders"] == 1
    assert len(system.streams.failures) == failures
    [parked] = [p for p in ParkedRecord.scan() if bad_id in p.record]
    assert parked.record_id.startswith("orders#") and "not a time" in parked.record and "ValueError" in parked.error
