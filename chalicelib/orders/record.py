"""The order record's own lifecycle: its checkout status, its lines and the quota shards it took.

An order is written ``paid`` at checkout (hosted points), or ``awaiting_deduction`` until a remote channel
answers its deduct (then ``paid``, or ``failed`` and released). Once paid it is split into parcels, whose
states it derives from then on (``parcel_states``). Checkout writes these; orders, parcels, refunds and the
invariant check read them here, so none of them imports checkout.
"""
from __future__ import annotations

from chalicelib.core.models import plain
from chalicelib.orders.models import Order

PAID, AWAITING, FAILED = "paid", "awaiting_deduction", "failed"


def lines_of(o: Order) -> list[dict]:
    """Order lines as plain dicts, whether the order was just built or read back."""
    return [plain(line) for line in o.lines]


def shares(raw) -> dict[int, int]:
    """Shard → amount, from an order's map (as built, a dict; as read, a ``MapAttribute``)."""
    takes = plain(raw) or {}
    return {int(shard): int(used) for shard, used in takes.items()}


def quota_takes(order: Order) -> dict[int, int]:
    """The quota shards this order debited and how much from each (orders from before shards: shard 0, all)."""
    return shares(order.quota_takes) or {0: int(order.points)}
