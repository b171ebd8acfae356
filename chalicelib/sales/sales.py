"""Flash sales as ops run them: schedule, edit before the start, raise or lower the allotment while it runs
(never below what is sold), and give the leftovers back to stock after the end.

Scheduling sets the allotment aside from the SKU's ``Stock`` in the same transaction that writes the sale,
its shards and the audit row: a unit is either in normal stock or in one shard of one sale, never both, so
the sale sells exactly its allotment and normal checkout can never take a sale's unit. The store's view of
the sales (``member_view``) carries the server's clock, so countdowns do not trust the phone's.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

from pynamodb.exceptions import UpdateError

from chalicelib.channels import channels, pools
from chalicelib.channels.models import PoolItem
from chalicelib.core import audit, shards as shard_rules
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound, Unprocessable
from chalicelib.core.tx import LabelledTransaction, Refused, batch_read, commit_retrying
from chalicelib.sales import rules, warm
from chalicelib.sales.models import Sale, SaleBuyer, SaleShard
from chalicelib.supply import goods as goods_mod
from chalicelib.supply.models import Goods, Stock

if TYPE_CHECKING:  # the request bodies load pydantic, which only the routes need (~85 ms of cold start)
    from chalicelib.sales.requests import SaleCreate, SaleEdit

SCHEDULED, CLOSED = "scheduled", "closed"
MAX_WINDOW_SECONDS = 7 * 86_400


def sale_key(code: str, sale_id: str) -> str:
    return f"{code}#{sale_id}"


def shard_key(code: str, sale_id: str, shard: int) -> str:
    return f"{code}#{sale_id}#{shard}"


def buyer_key(code: str, sale_id: str, member_id: str) -> str:
    return f"{code}#{sale_id}#{member_id}"


def get(code: str, sale_id: str, consistent: bool = True) -> Sale:
    try:
        return Sale.get(code, sale_id, consistent_read=consistent)
    except Sale.DoesNotExist:
        raise NotFound("sale_not_found", f"channel {code} has no sale {sale_id}") from None


def shards_of(sale: Sale, consistent: bool = True) -> dict[int, SaleShard]:
    keys = [(shard_key(sale.channel_code, sale.sale_id, i),) for i in range(int(sale.shards))]
    found = batch_read({SaleShard: keys}, consistent=(SaleShard,) if consistent else ())[SaleShard]
    return {int(s.shard_key.rsplit("#", 1)[1]): s for s in found}


def _terms(sale: Sale) -> dict:
    """What every shard repeats of the sale (checkout reads a shard, never the sale)."""
    return {"goods_id": sale.goods_id, "sku_id": sale.sku_id, "price_points": int(sale.price_points),
            "member_limit": int(sale.member_limit), "starts_at": int(sale.starts_at), "ends_at": int(sale.ends_at)}


def _check_window(starts_at: int, ends_at: int, now: float) -> None:
    if ends_at <= starts_at:
        raise Unprocessable("validation_error", "ends_at must be after starts_at", "ends_at")
    if ends_at - starts_at > MAX_WINDOW_SECONDS:
        raise Unprocessable("validation_error", "a flash sale lasts at most 7 days", "ends_at")
    if ends_at <= now:
        raise Unprocessable("validation_error", "ends_at is in the past", "ends_at")


def _sellable(code: str, goods_id: str, sku_id: str, price_points: int) -> tuple[Goods, int]:
    """The goods on sale in the channel, and the sale price in fen, at least the SKU's settlement price."""
    channel = channels.get(code)
    if channel.sandbox:
        raise Conflict("sale_in_sandbox", "a sandbox channel cannot run flash sales (no live stock)")
    found = batch_read({Goods: [(goods_id,)], PoolItem: [(code, goods_id)]}, consistent=(PoolItem,))
    goods, item = (found[Goods] or [None])[0], (found[PoolItem] or [None])[0]
    if goods is None or item is None or goods.status != goods_mod.APPROVED:
        raise NotFound("goods_unavailable", f"goods {goods_id} is not on sale in channel {code}")
    sku = pools.priced_skus(item, goods).get(sku_id)
    if sku is None or not sku.sellable:
        raise NotFound("goods_unavailable", f"SKU {sku_id} of {goods_id} is not on sale in channel {code}")
    price = price_in_fen(price_points, int(channel.points_per_yuan))
    if price < sku.settlement:
        raise Conflict("price_below_settlement",
                       f"{price_points} points are {price} fen, below the settlement price {sku.settlement}")
    return goods, price


def price_in_fen(points: int, points_per_yuan: int) -> int:
    """The money a sale price in points stands for at the channel's rate (rounded down: never overstated)."""
    return points * 100 // points_per_yuan


def schedule(code: str, data: SaleCreate, actor: str, now: float | None = None) -> Sale:
    """Write the sale and its shards and set its allotment aside from stock, in one audited transaction."""
    now = time.time() if now is None else now
    _check_window(data.starts_at, data.ends_at, now)
    goods, _ = _sellable(code, data.goods_id, data.sku_id, data.price_points)
    shards = data.shards or rules.shards_for(data.expected_rate)
    if shards > data.allotment:
        shards = data.allotment  # no empty shard: each holds at least one unit
    spec = goods_mod.skus_of(goods)[data.sku_id]["spec"]
    sale = Sale(code, data.sale_id, goods_id=data.goods_id, sku_id=data.sku_id, title=goods.title, spec=spec,
                price_points=data.price_points, allotment=data.allotment, shards=shards, starts_at=data.starts_at,
                ends_at=data.ends_at, member_limit=data.member_limit, expected_rate=data.expected_rate,
                status=SCHEDULED, version=1)
    items = [SaleShard(shard_key(code, data.sale_id, i), allotment=share, remaining=share, sold=0, returned=0,
                       closed=False, **_terms(sale)) for i, share in enumerate(rules.split(data.allotment, shards))]
    goods_mod.stock_items([goods])  # goods from before ``Stock`` items get theirs first

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("sale", sale, condition=Sale.sale_id.does_not_exist())
        for i, item in enumerate(items):
            tx.put(f"shard:{i}", item, condition=SaleShard.shard_key.does_not_exist())
        tx.update("stock", Stock(data.goods_id, data.sku_id), [Stock.stock.add(-data.allotment)],
                  condition=Stock.stock >= data.allotment)
        audit.add(tx, _entity(code, data.sale_id), actor, "sale_scheduled", "sale", None,
                  {k: v for k, v in data.model_dump().items() if k != "sale_id"} | {"shards": shards})
        return tx

    try:
        commit_retrying(build)
    except Refused as refused:
        if "stock" in refused.labels:
            raise Conflict("out_of_stock", f"the SKU has fewer than {data.allotment} units in stock") from None
        raise Conflict("sale_exists", f"channel {code} already has sale {data.sale_id}", "sale_id") from None
    return _warm(sale)


def _warm(sale: Sale) -> Sale:
    """Warm capacity scheduled around the sale's window (``warm``), recorded on the sale."""
    state = warm.schedule(sale.channel_code, sale.sale_id, int(sale.starts_at), int(sale.ends_at),
                          int(sale.expected_rate or 1_000))
    sale.update([Sale.warm.set(state)])
    return sale


def _entity(code: str, sale_id: str) -> str:
    return f"sale#{code}#{sale_id}"


def edit(code: str, sale_id: str, change: SaleEdit, actor: str, now: float | None = None) -> Sale:
    """Before the start: any term but the SKU (the shards are rewritten, stock gives or takes the difference).
    Once it runs: only the allotment, raised or lowered but never below what is sold (``_resize``)."""
    now = time.time() if now is None else now
    sale = get(code, sale_id)
    values = {k: v for k, v in change.model_dump().items() if v is not None}
    if not values:
        raise Unprocessable("validation_error", "nothing to change", "body")
    if sale.status != SCHEDULED or now >= int(sale.ends_at):
        raise Conflict("sale_ended", f"sale {sale_id} has ended")
    if now >= int(sale.starts_at):
        if set(values) != {"allotment"}:
            raise Conflict("sale_started", "a running sale's terms are fixed; only its allotment may change",
                           sorted(set(values) - {"allotment"})[0])
        return _resize(sale, values["allotment"], actor)
    new = {**_terms(sale), "allotment": int(sale.allotment), **values}
    _check_window(new["starts_at"], new["ends_at"], now)
    if "price_points" in values:
        _sellable(code, sale.goods_id, sale.sku_id, new["price_points"])
    delta = new["allotment"] - int(sale.allotment)
    shares = rules.split(new["allotment"], int(sale.shards))
    if min(shares) < 1:
        raise Unprocessable("validation_error", f"at least {sale.shards} units (one per shard)", "allotment")
    old = {k: (int(sale.allotment) if k == "allotment" else _terms(sale)[k]) for k in values}

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("sale", sale, [getattr(Sale, k).set(v) for k, v in values.items()]
                  + [Sale.version.add(1), Sale.updated_at.set(now_iso())],
                  condition=(Sale.version == sale.version) & (Sale.starts_at > int(now)))
        for i, share in enumerate(shares):
            terms = {k: v for k, v in new.items() if k != "allotment"}
            tx.update(f"shard:{i}", SaleShard(shard_key(code, sale_id, i)),
                      [getattr(SaleShard, k).set(v) for k, v in terms.items()]
                      + [SaleShard.allotment.set(share), SaleShard.remaining.set(share)],
                      condition=(SaleShard.sold == 0) & (SaleShard.starts_at > int(now)))
        if delta:
            tx.update("stock", Stock(sale.goods_id, sale.sku_id), [Stock.stock.add(-delta)],
                      condition=(Stock.stock >= delta) if delta > 0 else Stock.sku_id.exists())
        audit.add(tx, _entity(code, sale_id), actor, "sale_edited", ",".join(sorted(values)), old, values)
        return tx

    try:
        commit_retrying(build)
    except Refused as refused:
        if "stock" in refused.labels:
            raise Conflict("out_of_stock", f"the SKU has fewer than {delta} more units in stock") from None
        raise Conflict("concurrent_update", f"sale {sale_id} changed or started meanwhile; read it again") from None
    sale = get(code, sale_id)
    return _warm(sale) if {"starts_at", "ends_at"} & set(values) else sale


def _resize(sale: Sale, allotment: int, actor: str) -> Sale:
    """A running sale's allotment to ``allotment``: a raise takes the units from stock and spreads them over the
    shards (odd units to the emptiest); a cut takes unsold units from the fullest shards back to stock, and is
    refused (``allotment_below_sold``) when fewer are unsold than the cut."""
    code, sale_id = sale.channel_code, sale.sale_id

    def build() -> LabelledTransaction:
        shards = shards_of(sale)
        current = sum(int(s.allotment) for s in shards.values())
        delta = allotment - current
        if delta == 0:
            raise _Unchanged()
        remaining = {i: int(s.remaining) for i, s in shards.items()}
        if delta > 0:
            moves = rules.spread(delta, remaining)
        else:
            taken = shard_rules.take(remaining, -delta) if sum(remaining.values()) >= -delta else None
            if taken is None:
                sold = sum(int(s.sold) + int(s.returned) for s in shards.values())
                raise Conflict("allotment_below_sold", f"{sold} units are sold or gone; the allotment cannot be "
                                                       f"{allotment}", "allotment")
            moves = {i: -n for i, n in taken.items()}
        now = int(time.time())
        tx = LabelledTransaction()
        tx.update("sale", sale, [Sale.allotment.set(allotment), Sale.version.add(1), Sale.updated_at.set(now_iso())],
                  condition=(Sale.status == SCHEDULED) & (Sale.ends_at > now))
        for i, n in moves.items():
            check = (SaleShard.closed == False) & (SaleShard.ends_at > now)  # noqa: E712
            tx.update(f"shard:{i}", shards[i], [SaleShard.allotment.add(n), SaleShard.remaining.add(n)],
                      condition=check & (SaleShard.remaining >= -n) if n < 0 else check)
        tx.update("stock", Stock(sale.goods_id, sale.sku_id), [Stock.stock.add(-delta)],
                  condition=(Stock.stock >= delta) if delta > 0 else Stock.sku_id.exists())
        audit.add(tx, _entity(code, sale_id), actor, "sale_allotment_changed", "allotment", current, allotment)
        return tx

    for _ in range(20):
        try:
            commit_retrying(build)
            break
        except _Unchanged:
            break
        except Refused as refused:
            if "stock" in refused.labels:
                raise Conflict("out_of_stock", "the SKU has not that many more units in stock") from None
            if "sale" in refused.labels:
                raise Conflict("sale_ended", f"sale {sale_id} has ended") from None
            continue  # checkouts took from the shards read: read them again
    else:
        raise Conflict("concurrent_update", "the sale kept selling the units of the cut; retry")
    return get(code, sale_id)


class _Unchanged(Exception):
    """The allotment already is the one asked for."""


def close(sale: Sale, now: float | None = None) -> int:
    """After the end: every shard's unsold units back to the SKU's stock, once; answers how many."""
    now = time.time() if now is None else now
    if sale.status != SCHEDULED or now < int(sale.ends_at):
        return 0
    moved = 0

    def build() -> LabelledTransaction:
        nonlocal moved
        shards = shards_of(sale)
        moved = sum(int(s.remaining) for s in shards.values())
        tx = LabelledTransaction()
        tx.update("sale", sale, [Sale.status.set(CLOSED), Sale.updated_at.set(now_iso())],
                  condition=Sale.status == SCHEDULED)
        for i, s in shards.items():  # a cancel after the end goes to stock, not here: ``remaining`` is still
            tx.update(f"shard:{i}", s, [SaleShard.remaining.set(0), SaleShard.returned.add(int(s.remaining)),
                                        SaleShard.closed.set(True)],
                      condition=(SaleShard.remaining == int(s.remaining)) & (SaleShard.ends_at <= int(now)))
        if moved:
            tx.update("stock", Stock(sale.goods_id, sale.sku_id), [Stock.stock.add(moved)],
                      condition=Stock.sku_id.exists())
        audit.add(tx, _entity(sale.channel_code, sale.sale_id), "platform", "sale_closed", "returned_to_stock",
                  None, moved)
        return tx

    for _ in range(10):
        try:
            commit_retrying(build)
            return moved
        except Refused as refused:
            if "sale" in refused.labels:
                return 0  # closed by someone else
    return 0


def sweep(now: float | None = None) -> dict[str, int]:
    """The scheduler's pass: every ended sale still holding its allotment gives the leftovers back to stock."""
    now = time.time() if now is None else now
    closed = {}
    for sale in Sale.scan(Sale.status == SCHEDULED):
        if int(sale.ends_at) <= now:
            closed[f"{sale.channel_code}/{sale.sale_id}"] = close(sale, now)
    return closed


def mark_sold_out(code: str, sale_id: str, now: float) -> None:
    """The first sell-out's time, once (conditional; a later sell-out after cancels keeps the first)."""
    try:
        Sale(code, sale_id).update([Sale.sold_out_at.set(int(now))],
                                   condition=Sale.sold_out_at.does_not_exist() & Sale.sale_id.exists())
    except UpdateError:
        pass  # already marked by another instance


def _read_many(keys: dict[type, list[tuple]]) -> dict[type, list]:
    """``batch_read`` in requests of at most 100 keys (eventually consistent: a view, not a limit)."""
    flat = [(model, key) for model, wanted in keys.items() for key in wanted]
    found: dict[type, list] = {model: [] for model in keys}
    for at in range(0, len(flat), 100):
        chunk: dict[type, list[tuple]] = {}
        for model, key in flat[at:at + 100]:
            chunk.setdefault(model, []).append(key)
        for model, items in batch_read(chunk).items():
            found[model] += items
    return found


def figures(shards: Iterable[SaleShard]) -> dict[str, int]:
    """The allotment's books over its shards: allotment = remaining + sold + returned."""
    items = list(shards)
    total = lambda f: sum(int(getattr(s, f)) for s in items)  # noqa: E731
    return {"allotment": total("allotment"), "remaining": total("remaining"), "sold": total("sold"),
            "returned": total("returned")}


def ops_view(sale: Sale, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    shards = shards_of(sale)
    return {"channel_code": sale.channel_code, "sale_id": sale.sale_id, "goods_id": sale.goods_id,
            "sku_id": sale.sku_id, "title": sale.title, "spec": sale.spec, "price_points": int(sale.price_points),
            "starts_at": int(sale.starts_at), "ends_at": int(sale.ends_at), "member_limit": int(sale.member_limit),
            "shards": int(sale.shards), "status": sale.status, "version": int(sale.version),
            "state": rules.state(now, int(sale.starts_at), int(sale.ends_at)), "server_time": now,
            **figures(shards.values()), "sold_out": sum(int(s.remaining) for s in shards.values()) == 0,
            "by_shard": {str(i): {"remaining": int(s.remaining), "sold": int(s.sold), "returned": int(s.returned),
                                  "allotment": int(s.allotment)} for i, s in sorted(shards.items())},
            "warm": sale.warm.as_dict() if sale.warm else None,
            # operating data: units sold and given back are above; attempts and refusals by reason are the
            # SaleAttempts and SaleRefused metrics (per channel, sale, reason)
            "sold_out_at": int(sale.sold_out_at) if sale.sold_out_at is not None else None,
            "seconds_to_sold_out": (int(sale.sold_out_at) - int(sale.starts_at)) if sale.sold_out_at is not None
            else None}


def list_ops(code: str) -> list[dict]:
    channels.get(code)
    return [ops_view(s) for s in Sale.query(code)]


def member_view(code: str, member_id: str, now: float | None = None) -> dict:
    """Upcoming and running sales of the channel as its store shows them, with the server's clock: each sale's
    window, price, whether it is sold out and whether this member reached its limit."""
    now = time.time() if now is None else now
    sales = [s for s in Sale.query(code, filter_condition=Sale.ends_at > int(now))]
    keys = {SaleShard: [(shard_key(code, s.sale_id, i),) for s in sales for i in range(int(s.shards))],
            SaleBuyer: [(buyer_key(code, s.sale_id, member_id),) for s in sales]}
    found = _read_many(keys)
    of_shard = {k[0]: s.sale_id for s in sales for k in [(shard_key(code, s.sale_id, i),)
                                                         for i in range(int(s.shards))]}
    of_buyer = {buyer_key(code, s.sale_id, member_id): s.sale_id for s in sales}
    remaining: dict[str, int] = {}
    for shard in found[SaleShard]:
        remaining[of_shard[shard.shard_key]] = remaining.get(of_shard[shard.shard_key], 0) + int(shard.remaining)
    bought = {of_buyer[b.buyer_key]: int(b.bought) for b in found[SaleBuyer]}
    channel = channels.get(code)
    views = []
    for s in sorted(sales, key=lambda s: (int(s.starts_at), s.sale_id)):
        mine = bought.get(s.sale_id, 0)
        views.append({
            "sale_id": s.sale_id, "goods_id": s.goods_id, "sku_id": s.sku_id, "title": s.title, "spec": s.spec,
            "price_points": int(s.price_points), "price": price_in_fen(int(s.price_points), int(channel.points_per_yuan)),
            "starts_at": int(s.starts_at), "ends_at": int(s.ends_at),
            "state": rules.state(now, int(s.starts_at), int(s.ends_at)),
            "allotment": int(s.allotment), "sold_out": remaining.get(s.sale_id, 0) == 0,
            "member_limit": int(s.member_limit), "bought": mine, "limit_reached": mine >= int(s.member_limit)})
    return {"server_time": now, "sales": views}
