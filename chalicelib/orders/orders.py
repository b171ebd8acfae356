"""The member's order centre and the ops view of orders."""
from __future__ import annotations

from chalicelib.core.errors import NotFound
from chalicelib.core.models import get_owned, plain
from chalicelib.orders import parcels as parcels_mod
from chalicelib.orders.record import lines_of
from chalicelib.orders.models import Order
from chalicelib.orders.models import Parcel


def view(o: Order, parcels: list[Parcel] | None = None) -> dict:
    """The order as its member and its channel see it: with its parcels (by neutral name) and the state derived
    from them once it is split; its checkout ``status`` until then (``state`` repeats it)."""
    parcels = parcels_mod.of_order(o.order_id, o) if parcels is None else parcels
    return {
        **parcels_mod.order_view(o, parcels),
        "order_id": o.order_id, "channel_code": o.channel_code, "status": o.status, "points": int(o.points),
        "amount": int(o.amount), "points_mode": o.points_mode, "period_id": o.period_id, "failure": o.failure,
        "sandbox": bool(o.sandbox),  # a sandbox channel's order: test data, never shipped by a supplier or settled
        "lines": [{k: v for k, v in line.items() if k not in ("settlement_price", "supplier_id")}
                  for line in lines_of(o)],
        "created_at": o.created_at, "updated_at": o.updated_at,
    }


def member_view(o: Order, parcels: list[Parcel] | None = None) -> dict:
    """The member also sees the delivery address given at checkout (the channel never does)."""
    address = plain(o.address)
    return dict(view(o, parcels), address=address)


def member_order_view(parcel: Parcel) -> dict:
    """After a member's move of a parcel: the whole order as the member sees it."""
    return member_view(Order.get(parcel.order_id, consistent_read=True))


def member_views(member_id: str) -> list[dict]:
    """The member's latest orders, their parcels read in one batch."""
    found = of_member(member_id)
    grouped = parcels_mod.of_orders(found)
    return [member_view(o, grouped[o.order_id]) for o in found]


def ops_view(o: Order) -> dict:
    """Ops also see settlement prices, suppliers and how often a pending order was queried."""
    return dict(view(o), member_id=o.member_id, lines=lines_of(o),
                resolve_attempts=int(o.resolve_attempts or 0))


def of_member(member_id: str, limit: int = 50) -> list[Order]:
    return list(Order.member_index.query(member_id, scan_index_forward=False, limit=limit))


def get_for_member(order_id: str, member_id: str) -> Order:
    order = get_owned(Order, order_id, "member_id", member_id)
    if order is None:
        raise NotFound("order_not_found", f"no order {order_id}")
    return order
