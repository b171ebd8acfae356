"""Figures from the orders table's DynamoDB Stream (``app.order_figures``): what the request path no longer writes.

A paid order commits in one transaction and nothing else is written for it on the request path; what is counted
about it is derived here, after the fact, from the stream record of the write that made it paid (hosted: its
insert; remote: the confirm) and from the channel calls that the writing request made, carried on the order
(``Order.partner_calls``):

- metering: the business day (of its placing) gets the order, its points, GMV and cost (``ChannelDay``);
- the per-minute partner-call figures (``PartnerStats``) of those calls (they all succeeded: a failed call books
  its own figures at once, because the breaker judges on them).

``derive`` is pure. ``consume`` writes a batch in transactions that put, with ``does_not_exist``, a mark per
record — ``o#{order_id}`` for the one record that made an order paid (the mark the request path used before),
``r#{eventID}`` for any other — beside the counters' ADDs, summed per item over the records: a record processed
twice (Lambda retries a batch) counts once. A
record ``derive`` cannot read is parked (``ParkedRecord``, counted ``StreamRecordParked``, alarmed) and the rest go
on; a write that fails raises, and Lambda retries the batch (the marks make that safe).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from chalicelib.billing import metering
from chalicelib.billing.models import ChannelDay, MeterMark
from chalicelib.core.clock import business_day, midnight
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import LabelledTransaction, Refused, commit_retrying
from chalicelib.partners import reliability
from chalicelib.partners.models import ParkedRecord

PAID = "paid"
MARK_DAYS = 2  # a stream keeps a record 24 hours: its mark outlives every redelivery
RECORDS_PER_TRANSACTION = 40  # a mark each, and the counters they add, stay within 100 items
PARKED_DAYS = 14


@dataclass(frozen=True)
class Paid:
    """An order that became paid: counted on the business day it was placed."""

    order_id: str
    channel_code: str
    day: str
    points: int
    gmv: int
    cost: int


@dataclass(frozen=True)
class Call:
    """One successful channel call carried on an order (``reliability.Permit.figure``)."""

    channel_code: str
    api: str
    minute: int
    kinds: dict[str, int]
    latency: dict[str, int]


@dataclass
class Derived:
    event_id: str
    paid: Paid | None = None
    calls: list[Call] = field(default_factory=list)


def _value(attribute: dict[str, Any]) -> Any:
    """A DynamoDB-JSON attribute as plain Python (the stream's images carry the item as written)."""
    (kind, value), = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return Decimal(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _value(v) for k, v in value.items()}
    if kind == "L":
        return [_value(v) for v in value]
    raise ValueError(f"unexpected attribute type {kind}")


def _image(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    image = record["dynamodb"].get(name)
    return None if image is None else {k: _value(v) for k, v in image.items()}


def _calls(image: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    raw = (image or {}).get("partner_calls")
    return {str(c["id"]): c for c in json.loads(raw)} if raw else {}


def derive(record: dict[str, Any]) -> Derived:
    """What one orders-stream record adds (pure): the order if this write made it paid, and the channel calls
    this write carried that the item did not carry before. Raises on a record it cannot read."""
    event_id = str(record["eventID"])
    new, old = _image(record, "NewImage"), _image(record, "OldImage")
    if new is None:  # a removal: nothing happened to count
        return Derived(event_id)
    derived = Derived(event_id)
    if new["status"] == PAID and (old is None or old.get("status") != PAID):
        placed = datetime.fromisoformat(new["created_at"]).timestamp()
        cost = sum(int(line["settlement_price"]) * int(line["qty"]) for line in new["lines"])
        derived.paid = Paid(new["order_id"], new["channel_code"], business_day(placed), int(new["points"]),
                            int(new["amount"]), cost)
    before = _calls(old)
    for call_id, call in _calls(new).items():
        if call_id not in before:
            derived.calls.append(Call(new["channel_code"], str(call["api"]), int(call["minute"]),
                                      {str(k): int(v) for k, v in call["kinds"].items()},
                                      {str(k): int(v) for k, v in call["h"].items()}))
    return derived


def _park(record: dict[str, Any], error: Exception) -> None:
    """Keep a record that cannot be read for ops (and say so), instead of retrying it forever."""
    event_id = str(record.get("eventID", "?"))
    logger.error("orders stream record parked", extra={"event_id": event_id, "error": repr(error)})
    count("StreamRecordParked")
    ParkedRecord(f"orders#{event_id}", record=json.dumps(record, default=str)[:300_000], error=repr(error)[:1000],
                 expires_at=datetime.now(timezone.utc) + timedelta(days=PARKED_DAYS)).save()


def _mark(d: Derived) -> tuple[str, MeterMark]:
    """The record's "counted" mark: the order's (``o#{id}``, the mark the request path used before) when the
    record made it paid — one record per order does, so it names the record too — else the record's own."""
    if d.paid is not None:
        expires = midnight(d.paid.day) + metering.ORDER_MARK_DAYS * 86400
        return f"o#{d.paid.order_id}", MeterMark(f"o#{d.paid.order_id}",
                                                 expires_at=datetime.fromtimestamp(expires, timezone.utc))
    return f"r#{d.event_id}", MeterMark(f"r#{d.event_id}", expires_at=datetime.now(timezone.utc) + timedelta(
        days=MARK_DAYS))


def _build(chunk: list[Derived]) -> LabelledTransaction:
    """The chunk's marks and its counters' ADDs, summed per item, in one transaction."""
    tx = LabelledTransaction()
    days: dict[tuple[str, str], Counter] = {}
    stats: dict[tuple[str, int, str], tuple[Counter, Counter, Counter]] = {}
    for d in chunk:
        label, mark = _mark(d)
        tx.put(label, mark, condition=MeterMark.mark.does_not_exist())
        if d.paid is not None:
            days.setdefault((d.paid.channel_code, d.paid.day), Counter()).update(
                {"orders": 1, "points": d.paid.points, "gmv": d.paid.gmv, "cost": d.paid.cost})
        for c in d.calls:
            calls, kinds, latency = stats.setdefault((c.channel_code, c.minute, c.api), (Counter(), Counter(), Counter()))
            calls["calls"] += 1
            kinds.update(c.kinds)
            latency.update(c.latency)
    for (channel_code, day), sums in sorted(days.items()):
        item = ChannelDay(f"{channel_code}#{random.randrange(metering.SHARDS)}", day)
        tx.update(f"day:{channel_code}:{day}", item, [getattr(ChannelDay, k).add(int(n)) for k, n in sums.items()])
    for (channel_code, minute, api), (calls, kinds, latency) in sorted(stats.items()):
        item, actions = reliability.stats_update(channel_code, api, minute, calls["calls"], 0, kinds, latency)
        tx.update(f"stats:{channel_code}:{minute}:{api}", item, actions)
    return tx


def _commit(chunk: list[Derived]) -> list[Derived]:
    """Write one chunk once: the records this call counted (one whose mark exists was counted before)."""
    chunk = [d for d in chunk if d.paid is not None or d.calls]
    while chunk:
        try:
            commit_retrying(lambda: _build(chunk))
            return chunk
        except Refused as refused:
            seen = {label for label in refused.labels if label.startswith(("o#", "r#"))}
            if not seen:
                raise
            chunk = [d for d in chunk if _mark(d)[0] not in seen]
    return []


def consume(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """One batch of orders-stream records (the Lambda event's ``Records``): parked, skipped (processed before or
    nothing to count) and counted, by number."""
    derived: list[Derived] = []
    parked = 0
    for record in records:
        try:
            derived.append(derive(record))
        except Exception as error:  # noqa: BLE001 - a record that cannot be read must not hold up the others
            _park(record, error)
            parked += 1
    written = 0
    for i in range(0, len(derived), RECORDS_PER_TRANSACTION):
        counted = _commit(derived[i:i + RECORDS_PER_TRANSACTION])
        written += len(counted)
        for order in (d.paid for d in counted if d.paid is not None):
            metering.metric("ChannelOrders", order.channel_code)
            metering.metric("ChannelGMV", order.channel_code, order.gmv)
    return {"records": len(derived) + parked, "counted": written, "parked": parked}
