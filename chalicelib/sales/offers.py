"""A sale's part in the one checkout transaction, and what a cancel gives back.

Checkout of a line that names a sale (``sale_id``) reads one random shard of the sale's allotment and the
member's buyer item (one strongly consistent ``BatchGetItem``), refuses before any write what the reads already
decide (``rules.refusal``: not started, ended, limit reached, sold out), prices the line at the sale price,
and adds to the order's transaction the shard's take (``remaining >= n`` inside the window) and the member's
count (``bought <= limit - n``). The line takes nothing from the SKU's normal ``Stock``: its units were set
aside when the sale was scheduled. When the random shard is short, every shard is read and the units are
taken across them (``core.shards.take``: one shard that covers it, else the fullest in turn), so a leftover in any
shard still sells and "sold out" is said only when the shards together are empty.

The only thing read from the sale item is its shard count, which never changes after scheduling: it is kept
for the life of the function, so no checkout reads the one (hot) sale item.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

from chalicelib.billing import metering
from chalicelib.core import cache, shards as shard_rules
from chalicelib.core.errors import Conflict, DomainError, NotFound, Unprocessable
from chalicelib.core.tx import LabelledTransaction, batch_read
from chalicelib.sales import rules, sales
from chalicelib.sales.models import SaleBuyer, SaleShard

REFUSALS = {"sale_not_started": "the sale has not started yet", "sale_ended": "the sale has ended",
            "sale_limit_reached": "you already bought as many as this sale allows",
            "sale_sold_out": "the sale is sold out"}
_SHARD_COUNTS: dict[tuple[str, str], int] = {}  # (channel, sale) → shards: fixed when the sale is scheduled
# (channel, sale) → when this instance last read every shard empty. Within the checkout cache's bound
# (``core.cache.BOUND``) it refuses without reading anything of the sale: after a sell-out, the crowd still
# pressing the button reads no shard (units a cancel gives back sell again once the bound has passed).
_SOLD_OUT: dict[tuple[str, str], float] = {}


def shard_count(code: str, sale_id: str) -> int:
    known = _SHARD_COUNTS.get((code, sale_id))
    if known is None:
        known = _SHARD_COUNTS[(code, sale_id)] = int(sales.get(code, sale_id).shards)
    return known


def refused(reason: str, code: str, sale_id: str) -> DomainError:
    """The refusal, counted per sale and reason (an EMF metric: operating data that costs no write)."""
    metering.metric("SaleRefused", code, sale=sale_id, reason=reason)
    return Conflict(reason, REFUSALS[reason])


def sold_out_here(code: str, lines: Sequence[Any]) -> str | None:
    """The sale a line names that this instance saw sold out less than the cache bound ago, if any."""
    if cache.BOUND <= 0:
        return None
    for line in lines:
        at = _SOLD_OUT.get((code, getattr(line, "sale_id", None) or ""))
        if at is not None and time.monotonic() - at < cache.BOUND:
            return line.sale_id
    return None


@dataclass
class Offer:
    """One checkout's sale line: the shards it takes from and how much, at the sale's price and limit."""

    code: str
    sale_id: str
    goods_id: str
    sku_id: str
    qty: int
    price_points: int
    member_limit: int
    member_id: str
    takes: dict[int, int]

    def covers(self, line: Any) -> bool:
        return (line.goods_id, line.sku_id) == (self.goods_id, self.sku_id)

    def add(self, tx: LabelledTransaction, lines: list[dict], now: float) -> None:
        """The shard take(s) and the member's count in the order's transaction; the order's line records the
        sale and its takes (what a cancel gives back). Labels start ``sale:``: any of them refused means read
        again (the reads then refuse, or take elsewhere)."""
        for shard, n in sorted(self.takes.items()):
            tx.update(f"sale:shard:{shard}", SaleShard(sales.shard_key(self.code, self.sale_id, shard)),
                      [SaleShard.remaining.add(-n), SaleShard.sold.add(n)],
                      condition=(SaleShard.remaining >= n) & (SaleShard.starts_at <= int(now))
                      & (SaleShard.ends_at > int(now)) & (SaleShard.closed == False))  # noqa: E712
        room = self.member_limit - self.qty
        tx.update("sale:member", SaleBuyer(sales.buyer_key(self.code, self.sale_id, self.member_id)),
                  [SaleBuyer.bought.add(self.qty)],
                  condition=SaleBuyer.bought.does_not_exist() | (SaleBuyer.bought <= room))
        for line in lines:
            if self.covers(_Line(line["goods_id"], line["sku_id"])):
                line["sale_id"] = self.sale_id
                line["sale_takes"] = {str(shard): n for shard, n in self.takes.items()}


@dataclass(frozen=True)
class _Line:
    goods_id: str
    sku_id: str


def offer(code: str, member_id: str, lines: Sequence[Any], now: float, rnd: random.Random | None = None
          ) -> Offer | None:
    """The sale part of a checkout (None when no line names a sale), from fresh strongly consistent reads;
    raises the sale's refusal when the reads decide it (no write made)."""
    named = [line for line in lines if getattr(line, "sale_id", None)]
    if not named:
        return None
    if len(lines) > 1:
        raise Unprocessable("validation_error", "a flash-sale item is bought on its own (one line)", "lines")
    line = named[0]
    metering.metric("SaleAttempts", code, sale=line.sale_id)
    count = shard_count(code, line.sale_id)
    pick = (rnd or random).randrange(count)
    buyer = (sales.buyer_key(code, line.sale_id, member_id),)
    found = batch_read({SaleShard: [(sales.shard_key(code, line.sale_id, pick),)], SaleBuyer: [buyer]},
                       consistent=(SaleShard, SaleBuyer))
    shards = {pick: found[SaleShard][0]} if found[SaleShard] else {}
    first = shards.get(pick)
    if first is None or (first.goods_id, first.sku_id) != (line.goods_id, line.sku_id):
        raise NotFound("sale_not_found", f"sale {line.sale_id} does not sell {line.goods_id}/{line.sku_id} here")
    bought = int(found[SaleBuyer][0].bought) if found[SaleBuyer] else 0
    takes = {pick: line.qty} if int(first.remaining) >= line.qty else None
    if takes is None and not _refusal(first, shards, False, bought, line.qty, now):
        shards = {int(s.shard_key.rsplit("#", 1)[1]): s for s in batch_read(
            {SaleShard: [(sales.shard_key(code, line.sale_id, i),) for i in range(count)]},
            consistent=(SaleShard,))[SaleShard]}
        takes = shard_rules.take({i: int(s.remaining) for i, s in shards.items()}, line.qty, rnd)
    code_ = _refusal(first, shards, takes is None, bought, line.qty, now)
    if code_ == "sale_sold_out":
        if (code, line.sale_id) not in _SOLD_OUT:  # once per instance: the sale's first sell-out, if first
            sales.mark_sold_out(code, line.sale_id, now)
        _SOLD_OUT[(code, line.sale_id)] = time.monotonic()
    if code_:
        raise refused(code_, code, line.sale_id)
    assert takes is not None
    return Offer(code, line.sale_id, line.goods_id, line.sku_id, line.qty, int(first.price_points),
                 int(first.member_limit), member_id, takes)


def _refusal(shard: SaleShard, shards: dict[int, SaleShard], all_read: bool, bought: int, qty: int,
             now: float) -> str | None:
    return rules.refusal(rules.Attempt(now, int(shard.starts_at), int(shard.ends_at),
                                       {i: int(s.remaining) for i, s in shards.items()}, all_read, bought,
                                       int(shard.member_limit), qty))


def give_back(tx: LabelledTransaction, order: Any, lines: Sequence[dict], now: float) -> list[dict]:
    """For a cancelled parcel's ``lines`` of ``order``: each sale line's units back to the shards they came
    from while the sale runs (``sold`` down, ``remaining`` up), or to the SKU's normal stock after it ends
    (``sold`` down, ``returned`` up, and the stock in the caller's update); the member's count comes back
    either way. Answers the lines whose units go to normal stock (every line of an order without a sale)."""
    sold = {(l["goods_id"], l["sku_id"]): l for l in _order_lines(order) if l.get("sale_id")}
    to_stock = []
    for line in lines:
        sale_line = sold.get((line["goods_id"], line["sku_id"]))
        if sale_line is None:
            to_stock.append(line)
            continue
        code, sale_id, qty = order.channel_code, sale_line["sale_id"], int(line["qty"])
        takes = {int(k): int(v) for k, v in dict(sale_line["sale_takes"]).items()}
        keys = [(sales.shard_key(code, sale_id, i),) for i in sorted(takes)]
        shards = batch_read({SaleShard: keys}, consistent=(SaleShard,))[SaleShard]
        running = bool(shards) and all(rules.give_back_to(now, int(s.ends_at), bool(s.closed)) == "allotment"
                                       for s in shards)
        for shard, n in sorted(takes.items()):
            key = SaleShard(sales.shard_key(code, sale_id, shard))
            if running:
                tx.update(f"sale:shard:{shard}", key, [SaleShard.sold.add(-n), SaleShard.remaining.add(n)],
                          condition=(SaleShard.sold >= n) & (SaleShard.ends_at > int(now))
                          & (SaleShard.closed == False))  # noqa: E712
            else:
                tx.update(f"sale:shard:{shard}", key, [SaleShard.sold.add(-n), SaleShard.returned.add(n)],
                          condition=SaleShard.sold >= n)
        tx.update("sale:member", SaleBuyer(sales.buyer_key(code, sale_id, order.member_id)),
                  [SaleBuyer.bought.add(-qty)], condition=SaleBuyer.bought >= qty)
        if not running:
            to_stock.append(line)
    return to_stock


def _order_lines(order: Any) -> list[dict]:
    return [line.as_dict() if hasattr(line, "as_dict") else dict(line) for line in order.lines]
