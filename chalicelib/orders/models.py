"""Orders' tables: the order record, its per-supplier parcels, parcel refunds.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _index_meta, _meta


class OrderMemberIndex(GlobalSecondaryIndex):
    Meta = _index_meta("member-index")
    member_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class OrderPendingIndex(GlobalSecondaryIndex):
    """Sparse: only remote-mode orders still waiting for the channel's deduction."""

    Meta = _index_meta("pending-index")
    pending_channel = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class OrderUnsplitIndex(GlobalSecondaryIndex):
    """Sparse: paid orders not yet split into parcels (their fulfilment may never have started)."""

    Meta = _index_meta("unsplit-index")
    unsplit = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Order(Model):
    """A member's order: lines at the channel price with their settlement price and supplier.

    Its table's stream (new and old images) feeds ``partners.order_figures``: metering and partner-call figures
    derived after the fact, so the checkout writes nothing but its one transaction."""

    Meta = type("Meta", (_meta("orders"),), {"stream_view_type": "NEW_AND_OLD_IMAGES"})
    order_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    period_id = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    status = UnicodeAttribute()
    points_mode = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)
    points = NumberAttribute()
    amount = NumberAttribute()
    failure = UnicodeAttribute(null=True)
    pending_channel = UnicodeAttribute(null=True)
    quota_takes = MapAttribute(null=True)  # quota shard number (as a string) → points debited from it
    # Remote mode: the points this order added to the member's ``MemberRedemption`` counter at checkout,
    # all a release may give back (orders from before the counter added nothing and have none).
    cap_counted = NumberAttribute(null=True)
    resolve_attempts = NumberAttribute(default=0)
    sandbox = BooleanAttribute(default=False)  # a sandbox channel's: never reaches a supplier, never settled
    # Whether the order took its lines from the goods' live ``Stock`` (and so gives them back): False for a
    # sandbox order, which only checks the stock is there (``checkout._stock_updates``); None for orders from
    # before, which all took it.
    holds_stock = BooleanAttribute(null=True)
    # Ship-to the member gave at checkout (name, phone, lines): shown to the member and to the supplier
    # of each of its parcels, nobody else. Orders from before it, and API orders without one, have none.
    address = MapAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    # No index by channel: nothing reads one, and each index costs every order 1 WCU more (issue 7 holds a
    # one-line order's transaction to 10 WCU; a remote order already writes member and pending index entries).
    member_index = OrderMemberIndex()
    pending_index = OrderPendingIndex()
    # the channel's code from the write that makes the order paid until its split: the sweep's work list
    unsplit = UnicodeAttribute(null=True)
    unsplit_index = OrderUnsplitIndex()
    # The channel's points per yuan its points were priced at (checkout), copied to the parcels at the split:
    # settlement turns the points into money at this rate. Orders from before it: the channel's rate at the split.
    points_per_yuan = NumberAttribute(null=True)
    # A prepaid channel's order price, taken from its balance in this order's checkout transaction
    # (``billing.debit``), and from which balance shards (shard number as a string → fen): what a release gives back.
    fee = NumberAttribute(null=True)
    fee_takes = MapAttribute(null=True)
    # The channel calls (password check, deduct, query, cancel) that the request writing this order made and that
    # succeeded, as JSON (``reliability.Permit.figure``), each write its own: the orders stream books them into
    # the partner-call figures (``partners.order_figures``), so the request path writes no stats item.
    partner_calls = UnicodeAttribute(null=True)


class ParcelOrderIndex(GlobalSecondaryIndex):
    Meta = _index_meta("order-index")
    order_id = UnicodeAttribute(hash_key=True)


class ParcelSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Parcel(Model):
    """One supplier's part of a paid order (a sub-order), shipped and refunded on its own.

    ``parcel_id`` is ``{order_id}-{n}``, n = 1.. over the order's suppliers sorted by id, so a re-run of the
    split writes the same keys (refused by ``does_not_exist``). ``lines`` keep the prices frozen at checkout
    and the points allocated to each line (``allocation``); ``state`` moves only by ``parcel_states``, each
    move a conditional write on the state read. A sandbox order's parcels are never shown to a supplier."""

    Meta = _meta("parcels")
    parcel_id = UnicodeAttribute(hash_key=True)
    order_id = UnicodeAttribute()
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    supplier_id = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, price, settlement_price, points, title, spec
    points = NumberAttribute()
    amount = NumberAttribute()
    state = UnicodeAttribute()
    carrier = UnicodeAttribute(null=True)
    tracking_no = UnicodeAttribute(null=True)
    shipped_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    # What a cancel gave back: ``points``, the refund lot's ``expires_at`` (hosted) and ``quota``: "returned"
    # to its open period, or "settlement" when the period had closed (settled against the channel instead).
    returned = MapAttribute(null=True)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    order_index = ParcelOrderIndex()
    supplier_index = ParcelSupplierIndex()
    # The order's points rate (``Order.points_per_yuan``), so a return is valued at the rate its billing was.
    points_per_yuan = NumberAttribute(null=True)


class RefundPendingIndex(GlobalSecondaryIndex):
    """Sparse: only remote-mode refunds still waiting for the channel's answer (the sweep's list)."""

    Meta = _index_meta("pending-index")
    pending_channel = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class RefundSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Refund(Model):
    """The refund of one shipped (or completed) parcel: points go back, the goods stay with the member.

    ``refund_id`` is derived from the parcel id (``refunds.refund_id_for``), so a retried or concurrent
    request names the same refund and a parcel is refunded at most once; it is also the id the channel's
    ``points/refund`` is idempotent by. ``state``: requested → approved → (remote: awaiting_channel →)
    refunded, or rejected (by the supplier or ops, with ``reject_reason``; or by the channel's refusal).
    ``lines`` and ``points`` are the parcel's, with the points allocated to each line: never more than paid."""

    Meta = _meta("refunds")
    refund_id = UnicodeAttribute(hash_key=True)
    parcel_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    supplier_id = UnicodeAttribute()
    points_mode = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, points
    points = NumberAttribute()
    # "refund": a shipped parcel's points back, the goods stay; "cancel": a remote-mode parcel cancelled
    # before shipment, whose points only the channel can give back (then stock and quota go back too).
    action = UnicodeAttribute(default="refund")
    state = UnicodeAttribute()
    reason = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    reject_reason = UnicodeAttribute(null=True)
    pending_channel = UnicodeAttribute(null=True)
    resolve_attempts = NumberAttribute(default=0)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    refunded_at = UnicodeAttribute(null=True)
    pending_index = RefundPendingIndex()
    supplier_index = RefundSupplierIndex()
