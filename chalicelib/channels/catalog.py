"""What a member sees: its channel's sub-pool, on sale, at its channel's prices.

Prices come from ``pools.priced_skus``, the same function checkout uses, so
the price shown is the price charged. Images are short-lived presigned GET
links (``config.IMAGE_LINK_SECONDS``) to the approved content's images only: a
supplier's pending revision is never linked.
"""
from __future__ import annotations

import base64
import json
import re

from pynamodb.exceptions import DoesNotExist

from chalicelib.channels import pools
from chalicelib.channels.models import Channel, PoolItem, Topic
from chalicelib.channels.pricing import SkuPrice, points_for
from chalicelib.core import bucket
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import BadRequest, NotFound
from chalicelib.supply import goods as goods_mod
from chalicelib.supply.models import Goods

PAGE_MAX = 50
SCAN_BATCH = 50
LOW_STOCK = 10


def _cursor_out(goods_id: str | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps({"g": goods_id}).encode()).decode() if goods_id else None


CURSOR_GOODS = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _cursor_in(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        goods_id = str(json.loads(base64.urlsafe_b64decode(cursor.encode()))["g"])
    except (ValueError, KeyError, TypeError, RecursionError):
        goods_id = ""
    if not CURSOR_GOODS.fullmatch(goods_id):  # it becomes a key condition: bounded like the ids we issue
        raise BadRequest("invalid_cursor", "the cursor is not one this API gave out", "cursor")
    return goods_id


def _stock_status(stock: int) -> str:
    return "sold_out" if stock <= 0 else "low" if stock <= LOW_STOCK else "in_stock"


def _sellable(item: PoolItem, goods: Goods | None) -> dict[str, SkuPrice]:
    if goods is None or goods.status != goods_mod.APPROVED:
        return {}
    return {k: p for k, p in pools.priced_skus(item, goods).items() if p.sellable}


def _image_urls(goods: Goods, limit: int | None = None) -> list[str]:
    """Links to the approved images (the live ``images``; a revision's are not linked until approved)."""
    return [bucket.image_url(bucket.image_key(goods.supplier_id, upload_id))
            for upload_id in list(goods.images or [])[:limit]]


def _card(channel: Channel, goods: Goods, prices: dict[str, SkuPrice], stock: dict) -> dict:
    cheapest = min(p.price for p in prices.values())
    return {"goods_id": goods.goods_id, "title": goods.title, "category": goods.category,
            "image": (_image_urls(goods, 1) or [None])[0], "price_from": cheapest,
            "points_from": points_for(cheapest, int(channel.points_per_yuan)),
            "in_stock": any(int(stock[(goods.goods_id, k)].stock) > 0 for k in prices)}


def _cards(channel: Channel, picked: list[tuple[Goods, dict[str, SkuPrice]]]) -> list[dict]:
    """Cards for the goods picked, with their stock from one batched read of their ``Stock`` items."""
    stock = goods_mod.stock_items([g for g, _ in picked]) if picked else {}
    return [_card(channel, g, prices, stock) for g, prices in picked]


def _matches(goods: Goods, category: str | None, keyword: str | None) -> bool:
    return (not category or goods.category == category) and (not keyword or keyword.lower() in goods.title.lower())


def list_page(channel: Channel, cursor: str | None = None, limit: int = 20, category: str | None = None,
              keyword: str | None = None) -> dict:
    """A page of goods on sale; the cursor is opaque and resumes after the last goods scanned.

    Without filters it reads only as many sub-pool items as the page still needs, plus one to
    know whether another page exists; with filters it scans in batches.
    """
    limit = max(1, min(limit, PAGE_MAX))
    filtered = bool(category or keyword)
    last_key = _cursor_in(cursor)
    cards: list[tuple[Goods, dict[str, SkuPrice]]] = []
    more = False
    while True:
        want = limit - len(cards)
        size = SCAN_BATCH if filtered else want + 1
        batch = list(PoolItem.query(channel.code, PoolItem.goods_id > last_key if last_key else None, limit=size))
        scan = batch if filtered else batch[:want]
        found = {g.goods_id: g for g in Goods.batch_get([i.goods_id for i in scan])} if scan else {}
        for item in scan:
            last_key = item.goods_id
            goods = found.get(item.goods_id)
            prices = _sellable(item, goods)
            if prices and _matches(goods, category, keyword):
                cards.append((goods, prices))
                if len(cards) == limit:
                    break
        if len(cards) == limit:
            more = last_key != batch[-1].goods_id or len(batch) == size
            break
        if len(batch) < size:
            break
    return {"items": _cards(channel, cards), "next_cursor": _cursor_out(last_key) if more else None}


def detail(channel: Channel, goods_id: str) -> dict:
    try:
        item = PoolItem.get(channel.code, goods_id)
        goods = Goods.get(goods_id)
    except DoesNotExist:
        raise NotFound("goods_not_found", f"no goods {goods_id} in this store") from None
    prices = _sellable(item, goods)
    if not prices:
        raise NotFound("goods_not_found", f"no goods {goods_id} in this store")
    skus = goods_mod.skus_of(goods)
    stock = goods_mod.stock_items([goods])
    rate = int(channel.points_per_yuan)
    return {
        "goods_id": goods.goods_id, "title": goods.title, "description": goods.description,
        "category": goods.category, "images": _image_urls(goods),
        "skus": [{"sku_id": k, "spec": skus[k]["spec"], "price": p.price, "points": points_for(p.price, rate),
                  "stock_status": _stock_status(int(stock[(goods_id, k)].stock))} for k, p in sorted(prices.items())],
    }


def categories(channel: Channel) -> list[str]:
    items = list(PoolItem.query(channel.code))
    found = {g.goods_id: g for g in Goods.batch_get([i.goods_id for i in items])} if items else {}
    return sorted({g.category for i in items if (g := found.get(i.goods_id)) and _sellable(i, g)})


def put_topic(channel_code: str, topic_id: str, title: str, position: int, goods_ids: list[str]) -> Topic:
    topic = Topic(channel_code, topic_id, title=title, position=position, goods_ids=goods_ids, updated_at=now_iso())
    topic.save()
    return topic


def delete_topic(channel_code: str, topic_id: str) -> None:
    try:
        Topic.get(channel_code, topic_id).delete()
    except DoesNotExist:
        raise NotFound("topic_not_found", f"no topic {topic_id}") from None


def topics(channel: Channel) -> list[dict]:
    """The store home: each topic's goods that are on sale, in the order ops gave."""
    found_topics = sorted(Topic.query(channel.code), key=lambda t: (int(t.position), t.topic_id))
    wanted = sorted({g for t in found_topics for g in t.goods_ids})
    items = {i.goods_id: i for i in PoolItem.batch_get([(channel.code, g) for g in wanted])} if wanted else {}
    found = {g.goods_id: g for g in Goods.batch_get(list(items))} if items else {}
    sellable = {g: prices for g in items if (prices := _sellable(items[g], found.get(g)))}
    stock = goods_mod.stock_items([found[g] for g in sellable]) if sellable else {}
    return [{"topic_id": topic.topic_id, "title": topic.title,
             "items": [_card(channel, found[g], sellable[g], stock) for g in topic.goods_ids if g in sellable]}
            for topic in found_topics]
