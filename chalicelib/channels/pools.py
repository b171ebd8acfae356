"""Channel sub-pools: which master-pool goods a channel sells, at what price.

The sale view joins each sub-pool item with its goods at read time, so goods
that leave the master pool (off sale, rejected, back in review) leave every
channel's sale view at once, and a price rule is evaluated against the
settlement price in force. Every sub-pool change re-prices the channel
(``quotas.reprice``) in its own transaction: checkouts priced before it fail
their quota shard's pricing-version condition and read the new prices.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from pynamodb.exceptions import DoesNotExist

from chalicelib.channels import channels
from chalicelib.channels.models import Channel, PoolItem
from chalicelib.channels.pricing import SkuPrice, points_for, rule_price, sku_price
from chalicelib.checkout import quotas
from chalicelib.core import audit
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound, Unprocessable
from chalicelib.core.tx import LabelledTransaction, Refused, commit_retrying
from chalicelib.supply import goods as goods_mod
from chalicelib.supply.models import Goods
from chalicelib.supply.prices import guard_loss

if TYPE_CHECKING:  # annotations only: pydantic loads with the first request that sends a body
    from chalicelib.core.schemas import PoolPricing


def _rules(item: PoolItem) -> dict[str, dict]:
    return item.prices.as_dict() if item.prices else {}


def put(code: str, goods_id: str, pricing: PoolPricing, actor: str) -> PoolItem:
    """Add goods to the sub-pool, or replace its prices. Loss prices need ``allow_loss`` per SKU."""
    channel = channels.get(code)
    goods = goods_mod.get(goods_id)
    if goods.status != goods_mod.APPROVED:
        raise Conflict("goods_not_in_master_pool", f"goods {goods_id} is {goods.status}, not approved")
    skus = goods_mod.skus_of(goods)
    rules: dict[str, dict] = {}
    for sku_id, rule in pricing.prices.items():
        if sku_id not in skus:
            raise Unprocessable("validation_error", f"goods {goods_id} has no SKU {sku_id}", f"prices.{sku_id}")
        stored = rule.model_dump(exclude_none=True)
        price, _ = rule_price(stored, int(skus[sku_id]["settlement_price"]))
        guard_loss(price, int(skus[sku_id]["settlement_price"]), rule.allow_loss, f"prices.{sku_id}")
        rules[sku_id] = stored
    try:
        old = _rules(PoolItem.get(code, goods_id))
    except DoesNotExist:
        old = None
    item = PoolItem(code, goods_id, prices=rules, added_by=actor, updated_at=now_iso())
    _commit(channel, lambda tx: tx.put("pool", item),
            lambda tx: audit.add(tx, f"pool#{code}#{goods_id}", actor, "priced" if old is not None else "added",
                                 "prices", old, rules))
    return item


def remove(code: str, goods_id: str, actor: str) -> None:
    try:
        item = PoolItem.get(code, goods_id)
    except DoesNotExist:
        raise NotFound("pool_item_not_found", f"goods {goods_id} is not in channel {code}'s sub-pool") from None
    channel = channels.get(code)
    _commit(channel, lambda tx: tx.delete("pool", item),
            lambda tx: audit.add(tx, f"pool#{code}#{goods_id}", actor, "removed", "prices", _rules(item), None))


def _commit(channel: Channel, change, audited) -> None:
    """A sub-pool change with its audit row and the channel's re-price (``quotas.reprice``) in one
    transaction, so no checkout priced before it can commit after it."""
    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        change(tx)
        audited(tx)
        quotas.reprice(tx, channel)
        return tx

    try:
        commit_retrying(build)
    except Refused:
        raise Conflict("concurrent_update", f"channel {channel.code} changed meanwhile; retry") from None


def _goods_by_id(ids: list[str]) -> dict[str, Goods]:
    return {g.goods_id: g for g in Goods.batch_get(ids)} if ids else {}


def priced_skus(item: PoolItem, goods: Goods) -> dict[str, SkuPrice]:
    rules = _rules(item)
    return {
        sku_id: sku_price(rules.get(sku_id), int(sku["settlement_price"]), int(sku.get("base_price", 0)),
                          bool(sku.get("base_allow_loss", False)))
        for sku_id, sku in goods_mod.skus_of(goods).items()
    }


def ops_view(code: str) -> list[dict]:
    """Every sub-pool item with its prices, and whether members can buy it now."""
    channel = channels.get(code)
    items = list(PoolItem.query(code))
    found = _goods_by_id([i.goods_id for i in items])
    out = []
    for item in items:
        goods = found.get(item.goods_id)
        prices = priced_skus(item, goods) if goods else {}
        on_sale = goods is not None and goods.status == goods_mod.APPROVED and any(p.sellable for p in prices.values())
        out.append({
            "goods_id": item.goods_id, "title": goods.title if goods else None,
            "goods_status": goods.status if goods else "deleted", "on_sale": on_sale,
            "skus": [dict(sku_id=k, points=points_for(p.price, int(channel.points_per_yuan)), loss=p.loss,
                          sellable=p.sellable, **asdict(p)) for k, p in sorted(prices.items())],
            "updated_at": item.updated_at,
        })
    return out


def losses(code: str) -> list[dict]:
    """Prices ops accepted below settlement: the loss the platform carries per unit sold."""
    return [
        {"goods_id": row["goods_id"], "title": row["title"], "sku_id": sku["sku_id"], "price": sku["price"],
         "settlement": sku["settlement"], "loss": sku["loss"], "on_sale": row["on_sale"]}
        for row in ops_view(code) for sku in row["skus"] if sku["loss"] > 0 and sku["allow_loss"]
    ]
