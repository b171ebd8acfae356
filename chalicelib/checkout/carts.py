"""The member's cart, for channels with ``cart_enabled``: kept on the server, priced when read.

The cart stores only what the member chose (goods, SKU, quantity). Prices come from the channel's
sub-pool each time it is read, through ``pools.priced_skus`` like the catalog and checkout, so the
total shown is the total checkout charges. Each change reads the cart and rewrites it whole on the
condition that its ``version`` is still the one read: concurrent changes retry on the new state, so
none is lost and the line bound holds. Checkout is the ordinary order with the cart's lines; once it
is placed, the cart is emptied only if it is still the version the member checked out (a line added
meanwhile stays). A cart untouched for ``TTL_DAYS`` expires.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.channels import pools
from chalicelib.channels.models import Channel, PoolItem
from chalicelib.channels.pricing import points_for
from chalicelib.checkout import checkout
from chalicelib.checkout.models import Cart
from chalicelib.checkout.wallets import spendable, wallet_of
from chalicelib.core import bucket
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Busy, Conflict, NotFound
from chalicelib.core.models import plain
from chalicelib.core.tx import batch_read, condition_failed, write_retrying
from chalicelib.members.models import Member
from chalicelib.orders.models import Order
from chalicelib.orders.orders import lines_of
from chalicelib.supply.models import Goods
from chalicelib.core.tx import AGAIN, Commit, Done, PlainWrite, retrying
from chalicelib.orders.record import FAILED
from chalicelib.supply import goods as goods_mod

MAX_LINES = checkout.MAX_LINES  # a cart is checked out as one order: the order's bounds
MAX_QTY = checkout.MAX_QTY
TTL_DAYS = 30
WRITE_ATTEMPTS = 30

Line = dict  # {"goods_id", "sku_id", "qty"}


def _enabled(channel: Channel) -> None:
    if not channel.cart_enabled:
        raise NotFound("cart_disabled", "this channel has no cart (buy now only)")


def _stored(member_id: str) -> Cart | None:
    try:
        return Cart.get(member_id, consistent_read=True)
    except DoesNotExist:
        return None


def _lines(cart: Cart | None, now: float) -> list[Line]:
    """The cart's lines; none once it expired (TTL deletion runs late, so expiry is judged here too)."""
    if cart is None or (cart.expires_at is not None and cart.expires_at.timestamp() <= now):
        return []
    return [{"goods_id": str(l["goods_id"]), "sku_id": str(l["sku_id"]), "qty": int(l["qty"])}
            for l in (plain(line) for line in cart.lines)]


def with_qty(lines: list[Line], goods_id: str, sku_id: str, qty: int) -> list[Line]:
    """The lines with this SKU's quantity set (0 removes it); a new line goes last, within ``MAX_LINES``."""
    kept = [l for l in lines if (l["goods_id"], l["sku_id"]) != (goods_id, sku_id)]
    if qty == 0:
        return kept
    if len(kept) == len(lines) and len(lines) >= MAX_LINES:
        raise Conflict("cart_full", f"a cart holds at most {MAX_LINES} different items")
    if len(kept) < len(lines):
        return [dict(l, qty=qty) if (l["goods_id"], l["sku_id"]) == (goods_id, sku_id) else l for l in lines]
    return lines + [{"goods_id": goods_id, "sku_id": sku_id, "qty": qty}]


def _change(channel: Channel, member_id: str, change: Callable[[list[Line]], list[Line]]) -> Cart:
    """Read, change and rewrite the cart on the condition that nobody changed it since the read."""

    def build(cart: Cart | None) -> Commit[Cart] | Done[Cart]:
        lines = _lines(cart, time.time())
        new_lines = change(lines)
        if cart is not None and new_lines == lines:
            return Done(cart)
        version = int(cart.version) if cart is not None else 0
        new = Cart(member_id, channel_code=channel.code, lines=new_lines, version=version + 1, updated_at=now_iso(),
                   expires_at=timedelta(days=TTL_DAYS))
        write = PlainWrite(lambda: new.save(
            condition=Cart.member_id.does_not_exist() if cart is None else Cart.version == version), "cart")
        return Commit(write, lambda: new, refused=lambda _: AGAIN)  # changed since the read: on the new state

    return retrying(lambda _: _stored(member_id), build, WRITE_ATTEMPTS, exhausted=_changing_too_fast)


def _changing_too_fast() -> Cart:
    raise Busy("busy", "the cart is changing too fast; retry")


def _on_sale(channel: Channel, goods_id: str, sku_id: str) -> None:
    found = batch_read({PoolItem: [(channel.code, goods_id)], Goods: [(goods_id,)]})
    item, goods = (found[PoolItem] or [None])[0], (found[Goods] or [None])[0]
    sku = pools.priced_skus(item, goods).get(sku_id) if item and goods and goods.status == goods_mod.APPROVED \
        else None
    if sku is None or not sku.sellable:
        raise NotFound("goods_unavailable", f"SKU {sku_id} of {goods_id} is not on sale here")


def put_line(channel: Channel, member: Member, goods_id: str, sku_id: str, qty: int) -> dict:
    """Set one SKU's quantity in the cart (adding the line if new); only goods on sale in this channel."""
    _enabled(channel)
    _on_sale(channel, goods_id, sku_id)
    _change(channel, member.member_id, lambda lines: with_qty(lines, goods_id, sku_id, qty))
    return view(channel, member)


def remove_line(channel: Channel, member: Member, goods_id: str, sku_id: str) -> dict:
    _enabled(channel)
    _change(channel, member.member_id, lambda lines: with_qty(lines, goods_id, sku_id, 0))
    return view(channel, member)


def _balance(channel: Channel, member: Member, now: float) -> int:
    if channel.points_mode == "hosted":
        return spendable(wallet_of(member).lots.as_dict(), now)
    return int(member.remote_points or 0)


def _priced(channel: Channel, lines: list[Line]) -> list[dict]:
    """Each line at the channel's price now; a line no longer on sale stays, marked unavailable."""
    ids = sorted({l["goods_id"] for l in lines})
    found = batch_read({PoolItem: [(channel.code, g) for g in ids], Goods: [(g,) for g in ids]}) if ids else {}
    items = {i.goods_id: i for i in found.get(PoolItem, [])}
    goods = {g.goods_id: g for g in found.get(Goods, []) if g.status == goods_mod.APPROVED}
    stock = goods_mod.stock_items(list(goods.values())) if goods else {}
    rate = int(channel.points_per_yuan)
    out = []
    for line in lines:
        g, item = goods.get(line["goods_id"]), items.get(line["goods_id"])
        sku = pools.priced_skus(item, g).get(line["sku_id"]) if g and item else None
        row = dict(line, available=False, title=g.title if g else None, spec=None, image=None, price=None,
                    points=None, stock_status=None)
        if sku is not None and sku.sellable:
            left = int(stock[(g.goods_id, line["sku_id"])].stock)
            row.update(available=left >= line["qty"], price=sku.price, points=points_for(sku.price, rate),
                        spec=goods_mod.skus_of(g)[line["sku_id"]]["spec"],
                        stock_status="sold_out" if left <= 0 else "short" if left < line["qty"] else "in_stock",
                        image=bucket.image_url(bucket.image_key(g.supplier_id, g.images[0])) if g.images else None)
        out.append(row)
    return out


def view(channel: Channel, member: Member) -> dict:
    """The cart priced now, its total in points and money, and the member's points left after it."""
    _enabled(channel)
    now = time.time()
    cart = _stored(member.member_id)
    lines = _priced(channel, _lines(cart, now))
    ready = [l for l in lines if l["available"]]
    total = sum(l["points"] * l["qty"] for l in ready)
    balance = _balance(channel, member, now)
    return {"lines": lines, "version": int(cart.version) if cart is not None else 0,
            "count": sum(l["qty"] for l in lines), "total_points": total,
            "total_amount": sum(l["price"] * l["qty"] for l in ready), "balance": balance,
            "points_left": balance - total, "ready": bool(lines) and len(ready) == len(lines),
            "max_lines": MAX_LINES, "max_qty": MAX_QTY,
            "expires_at": int(cart.expires_at.timestamp()) if cart is not None and lines else None}


def emptied_by(order: Order, member_id: str, version: int) -> bool:
    """After an order checked out from the cart at ``version``: empty the cart, but only while it is still
    that version and holds exactly the order's lines (a cart changed meanwhile stays as it is). A failed
    order empties nothing. Emptying keeps the item and moves the version on, so an old version never
    matches again."""
    if order.status == FAILED:
        return False
    cart = _stored(member_id)
    if cart is None or int(cart.version) != version:
        return False
    ordered = sorted((l["goods_id"], l["sku_id"], int(l["qty"])) for l in lines_of(order))
    if sorted((l["goods_id"], l["sku_id"], l["qty"]) for l in _lines(cart, time.time())) != ordered:
        return False
    try:
        write_retrying(lambda: cart.update([Cart.lines.set([]), Cart.version.add(1), Cart.updated_at.set(now_iso())],
                                           condition=Cart.version == version))
    except UpdateError as error:
        if condition_failed(error):
            return False
        raise
    return True
