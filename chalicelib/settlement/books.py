"""The settlement books: each parcel event that settlement counts, booked in the transaction of the event.

Four events, each a ``BookEntry`` keyed ``{event}#{party}#{month}#{shard}``, range ``{business day}#{parcel id}``:

- ``billed``   (party: channel)  — the split wrote the parcel (``parcels.split``);
- ``payable``  (party: supplier) — the supplier shipped it (``parcels.ship``);
- ``returned`` (party: channel)  — it was cancelled before shipment or refunded after (``refunds.give_back``);
- ``refunded`` (party: supplier) — that return was a refund after shipment, with who bears it.

A statement reads its party's days back with one Query per (event, month, shard), the days a key range: no
scan, no index. The shard (``SHARDS``, from the parcel id) spreads one busy channel's month over several
partitions (one partition key takes about 1,000 write units a second). A parcel reaches each event at most once (its state moves by conditional
writes), and an entry is keyed by the parcel, so a repeated write books nothing twice. Sandbox parcels are
never booked.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterator

from pynamodb.exceptions import DoesNotExist

from chalicelib.channels.models import Channel
from chalicelib.core import audit
from chalicelib.core.clock import business_day, now_iso
from chalicelib.core.errors import NotFound, Unprocessable
from chalicelib.core.models import plain
from chalicelib.core.tx import LabelledTransaction
from chalicelib.orders import parcel_states as ps
from chalicelib.orders.models import Parcel
from chalicelib.settlement import statements
from chalicelib.settlement.models import BookEntry
from chalicelib.supply.models import Supplier

SHARDS = 4
BILLED, PAYABLE, RETURNED, REFUNDED = "billed", "payable", "returned", "refunded"
CHANNEL_EVENTS, SUPPLIER_EVENTS = (BILLED, RETURNED), (PAYABLE, REFUNDED)
LINE_FIELDS = ("goods_id", "sku_id", "qty", "price", "settlement_price", "points")


def shard_of(parcel_id: str) -> int:
    return int(hashlib.sha256(parcel_id.encode()).hexdigest()[:8], 16) % SHARDS


def book(event: str, party: str, day: str, shard: int) -> str:
    return f"{event}#{party}#{day[:7]}#{shard}"


def day_of_stamp(stamp: str) -> str:
    """The business day of one of our ISO timestamps (``now_iso``)."""
    return business_day(datetime.fromisoformat(stamp).timestamp())


def _entry(event: str, party: str, parcel: Parcel, at: float, **extra) -> BookEntry:
    lines = [plain(line) for line in parcel.lines]
    day = business_day(at)
    return BookEntry(book(event, party, day, shard_of(parcel.parcel_id)), f"{day}#{parcel.parcel_id}",
                     parcel_id=parcel.parcel_id, order_id=parcel.order_id, lines=[{k: line[k] for k in LINE_FIELDS} for line in lines],
                     points_per_yuan=int(parcel.points_per_yuan or _rate(parcel.channel_code)), **extra)


def _rate(channel_code: str) -> int:
    """A parcel split before parcels carried their rate: the channel's rate now (the best left to know)."""
    return int(Channel.get(channel_code).points_per_yuan)


def record_billed(tx: LabelledTransaction, parcel: Parcel) -> None:
    """In the split's transaction: the channel owes for this parcel from the business day it was written
    (``created_at``, which a return reads back as its ``billed_day``)."""
    if not parcel.sandbox:
        at = datetime.fromisoformat(parcel.created_at).timestamp()
        tx.put(f"book:billed:{parcel.parcel_id}", _entry(BILLED, f"channel.{parcel.channel_code}", parcel, at))


def record_payable(tx: LabelledTransaction, parcel: Parcel, at: float) -> None:
    """In the shipment's transaction: the platform owes the supplier for this parcel from ``at``'s day."""
    if not parcel.sandbox:
        tx.put(f"book:payable:{parcel.parcel_id}", _entry(PAYABLE, f"supplier.{parcel.supplier_id}", parcel, at))


def record_returned(tx: LabelledTransaction, parcel: Parcel, at: float) -> None:
    """In the transaction that gives a parcel's points back (``parcel`` as it was before: awaiting shipment
    for a cancel, shipped or completed for a refund): off its channel's bill; a refund after shipment also
    goes to the supplier's books with who bears it, the supplier's setting now."""
    if parcel.sandbox:
        return
    shipped = parcel.state in (ps.SHIPPED, ps.COMPLETED)
    borne_by = bearer(parcel.supplier_id) if shipped else None
    billed_day = day_of_stamp(parcel.created_at)
    tx.put(f"book:returned:{parcel.parcel_id}", _entry(
        RETURNED, f"channel.{parcel.channel_code}", parcel, at, billed_day=billed_day, after_shipment=shipped,
        borne_by=borne_by))
    if shipped:
        tx.put(f"book:refunded:{parcel.parcel_id}", _entry(
            REFUNDED, f"supplier.{parcel.supplier_id}", parcel, at, billed_day=billed_day, after_shipment=True,
            borne_by=borne_by))


def bearer(supplier_id: str) -> str:
    """Who bears a refund after shipment of this supplier's parcels: its setting, the supplier by default."""
    try:
        return Supplier.get(supplier_id).refunds_borne_by or statements.SUPPLIER
    except DoesNotExist:
        return statements.SUPPLIER


def read(event: str, party: str, days: list[str]) -> Iterator[BookEntry]:
    """Every entry of one event for ``party`` on ``days``: per month and shard one Query over the days'
    range (paged as needed), keeping only those days."""
    wanted = set(days)
    for month in sorted({day[:7] for day in days}):
        inside = sorted(day for day in days if day[:7] == month)
        for shard in range(SHARDS):
            for entry in BookEntry.query(book(event, party, inside[0], shard),
                                         BookEntry.entry.between(inside[0], inside[-1] + "#~")):
                if entry.entry.split("#", 1)[0] in wanted:
                    yield entry


def movement(entry: BookEntry) -> statements.Movement:
    """An entry as the statement rules take it."""
    day = entry.entry.split("#", 1)[0]
    items = tuple(statements.Item(str(l["goods_id"]), str(l["sku_id"]), int(l["qty"]), int(l["price"]),
                                  int(l["settlement_price"]), int(l["points"])) for l in entry.lines)
    return statements.Movement(entry.parcel_id, entry.order_id, day, items, int(entry.points_per_yuan),
                               billed_day=entry.billed_day or "", after_shipment=bool(entry.after_shipment),
                               borne_by=entry.borne_by or statements.SUPPLIER)


def set_bearer(supplier_id: str, borne_by: str, actor: str) -> dict:
    """Ops set who bears this supplier's refunds after shipment, from now on (refunds already booked keep
    theirs); audited in the same transaction."""
    if borne_by not in statements.BEARERS:
        raise Unprocessable("validation_error", f"borne_by is one of {', '.join(statements.BEARERS)}", "borne_by")
    try:
        supplier = Supplier.get(supplier_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("supplier_not_found", f"no supplier {supplier_id}") from None
    before = supplier.refunds_borne_by or statements.SUPPLIER
    tx = LabelledTransaction()
    tx.update("supplier", supplier, [Supplier.refunds_borne_by.set(borne_by), Supplier.updated_at.set(now_iso())],
              condition=Supplier.supplier_id.exists())
    audit.add(tx, f"supplier#{supplier_id}", actor, "refunds_borne_by", "refunds_borne_by", before, borne_by)
    tx.commit()
    return {"supplier_id": supplier_id, "refunds_borne_by": borne_by}
