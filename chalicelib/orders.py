"""The member's order centre and the ops view of orders."""
from __future__ import annotations

from chalicelib.errors import NotFound
from chalicelib.models import Order, get_owned


def lines_of(o: Order) -> list[dict]:
    """Order lines as plain dicts, whether the order was just built or read back."""
    return [line.as_dict() if hasattr(line, "as_dict") else dict(line) for line in o.lines]


def view(o: Order) -> dict:
    return {
        "order_id": o.order_id, "channel_code": o.channel_code, "status": o.status, "points": int(o.points),
        "amount": int(o.amount), "points_mode": o.points_mode, "period_id": o.period_id, "failure": o.failure,
        "sandbox": bool(o.sandbox),  # a sandbox channel's order: test data, never shipped by a supplier or settled
        "lines": [{k: v for k, v in line.items() if k not in ("settlement_price", "supplier_id")}
                  for line in lines_of(o)],
        "created_at": o.created_at, "updated_at": o.updated_at,
    }


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
