"""The channel's server reading our orders (signed, contract v2), so its own app can show one order centre.

A channel sees only its own orders: another channel's order id answers 404 exactly like an unknown one.
Members are named by the channel's own member id (the one its entry links and grants use).
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.channels.models import Channel
from chalicelib.core.errors import BadRequest, NotFound, Unprocessable
from chalicelib.core.models import get_owned
from chalicelib.members import members
from chalicelib.members.models import Member, MemberLink
from chalicelib.orders import orders, parcels
from chalicelib.orders.models import Order, Parcel

PAGE_MAX = 50
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CREATED_AT = re.compile(r"[0-9T:.+-]{10,40}")


def _view(o: Order, external_id: str | None, of_order: list[Parcel] | None = None) -> dict[str, Any]:
    """What the member's order centre shows (lines, parcels with carrier and tracking, the derived state)."""
    return dict(orders.view(o, of_order), member_id=external_id)


def get(channel: Channel, order_id: str) -> dict[str, Any]:
    """One of the channel's orders with its lines, parcels and state."""
    order = get_owned(Order, order_id, "channel_code", channel.code)
    if order is None:
        raise NotFound("order_not_found", f"no order {order_id}")
    try:
        external_id = Member.get(order.member_id).external_id
    except DoesNotExist:
        external_id = None
    return _view(order, external_id)


def _cursor_out(key: dict | None) -> str | None:
    if not key:
        return None
    plain = {"o": key["order_id"]["S"], "c": key["created_at"]["S"]}
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode()


def _cursor_in(cursor: str | None, member_id: str) -> dict | None:
    if not cursor:
        return None
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        order_id, created_at = str(plain["o"]), str(plain["c"])
    except (ValueError, KeyError, TypeError, RecursionError):
        order_id = created_at = ""
    if not (ORDER_ID.fullmatch(order_id) and CREATED_AT.fullmatch(created_at)):
        raise BadRequest("invalid_cursor", "the cursor is not one this API gave out", "cursor")
    return {"order_id": {"S": order_id}, "member_id": {"S": member_id}, "created_at": {"S": created_at}}


def of_member(channel: Channel, external_id: str, cursor: str | None, limit: str | None) -> dict[str, Any]:
    """A page of the member's orders, newest first; ``next_cursor`` resumes after the last one."""
    try:
        size = int(limit or 20)
    except ValueError:
        size = 0
    if not 1 <= size <= PAGE_MAX:
        raise Unprocessable("validation_error", f"limit must be a whole number from 1 to {PAGE_MAX}", "limit")
    try:
        member_id = MemberLink.get(members.link_key(channel.code, external_id)).member_id
    except DoesNotExist:
        raise NotFound("member_not_found", f"no member {external_id} in channel {channel.code}") from None
    page = Order.member_index.query(member_id, scan_index_forward=False, limit=size,
                                    last_evaluated_key=_cursor_in(cursor, member_id))
    found = [o for o in page if o.channel_code == channel.code]
    grouped = parcels.of_orders(found)  # the page's parcels in one batch read
    return {"orders": [_view(o, external_id, grouped[o.order_id]) for o in found],
            "next_cursor": _cursor_out(page.last_evaluated_key)}
