"""The flash-sale tables: the sale as ops scheduled it, its allotment's shards, and each buyer's count.

Listed with every area's tables in ``chalicelib.tables`` (``ALL_MODELS``), which the deployment template and the
local stack create from."""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _meta


class Sale(Model):
    """A flash sale of one SKU in one channel, as ops scheduled it (what ops and the store read).

    ``allotment`` is the units set aside from the SKU's ``Stock`` when it was scheduled (plus raises);
    checkout never reads or writes this item: what it needs is copied onto every shard (``SaleShard``),
    written in the same transaction as this item. ``status`` is ``scheduled`` until the sale has ended and
    its leftovers went back to stock (``closed``)."""

    Meta = _meta("sales")
    channel_code = UnicodeAttribute(hash_key=True)
    sale_id = UnicodeAttribute(range_key=True)
    goods_id = UnicodeAttribute()
    sku_id = UnicodeAttribute()
    title = UnicodeAttribute(default="")
    spec = UnicodeAttribute(default="")
    price_points = NumberAttribute()
    allotment = NumberAttribute()
    shards = NumberAttribute()
    starts_at = NumberAttribute()
    ends_at = NumberAttribute()
    member_limit = NumberAttribute()
    expected_rate = NumberAttribute(default=1_000)  # checkout attempts/s ops expect at the start: shards, warm capacity
    status = UnicodeAttribute(default="scheduled")
    version = NumberAttribute(default=1)
    # When a checkout first found every shard empty (Unix seconds; set once): the sale's time to sell out.
    sold_out_at = NumberAttribute(null=True)
    # The warm capacity scheduled for its start (``sales.warm``): the scheduled actions' names and figures.
    warm = MapAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)


class SaleShard(Model):
    """One shard of a sale's allotment, keyed ``{channel}#{sale_id}#{n}`` (n = 0..shards-1): each shard its
    own partition key, so the shards spread over partitions (one hash key with shards as sort keys would keep
    them all in one partition, and its limits).

    Per shard ``remaining + sold + returned == allotment``: checkout takes ``remaining`` into ``sold``
    (``remaining >= n``, inside the window), a cancel during the sale gives ``sold`` back to ``remaining``, a
    cancel after it and the close move units to ``returned`` (back in the SKU's ``Stock``). The sale's terms
    (SKU, price, limit, window) are copied here so checkout reads one random shard and nothing else of the sale."""

    Meta = _meta("sale-shards")
    shard_key = UnicodeAttribute(hash_key=True)
    goods_id = UnicodeAttribute()
    sku_id = UnicodeAttribute()
    price_points = NumberAttribute()
    member_limit = NumberAttribute()
    starts_at = NumberAttribute()
    ends_at = NumberAttribute()
    allotment = NumberAttribute()
    remaining = NumberAttribute()
    sold = NumberAttribute(default=0)
    returned = NumberAttribute(default=0)
    closed = BooleanAttribute(default=False)


class SaleBuyer(Model):
    """How many units of a sale one member holds (``bought <= member_limit``, raised in the order's transaction),
    keyed ``{channel}#{sale_id}#{member_id}``: one partition key per buyer, never one hot key per sale."""

    Meta = _meta("sale-buyers")
    buyer_key = UnicodeAttribute(hash_key=True)
    bought = NumberAttribute(default=0)
