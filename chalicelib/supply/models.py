"""Supply's tables: suppliers and their API keys, goods with their SKUs, each SKU's stock item, image uploads.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _index_meta, _meta


class SupplierStatusIndex(GlobalSecondaryIndex):
    Meta = _index_meta("status-index")
    status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Supplier(Model):
    """A supplier account: applied, active, rejected or suspended."""

    Meta = _meta("suppliers")
    supplier_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    contact_name = UnicodeAttribute()
    phone = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    licence_no = UnicodeAttribute()
    bank_account = MapAttribute()
    status = UnicodeAttribute()
    reject_reason = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    # Who bears a refund of a parcel it already shipped (``settlement.statements``): "supplier" (unset) — it
    # comes off the supplier's next statement — or "platform".
    refunds_borne_by = UnicodeAttribute(null=True)
    status_index = SupplierStatusIndex()


class SupplierKeyIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SupplierKey(Model):
    """An API credential; only the SHA-256 of its secret part is kept."""

    Meta = _meta("supplier-keys")
    key_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    created_at = UnicodeAttribute(default=now_iso)
    revoked_at = UnicodeAttribute(null=True)
    supplier_index = SupplierKeyIndex()


class GoodsSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class GoodsStatusIndex(GlobalSecondaryIndex):
    Meta = _index_meta("status-index")
    status = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class GoodsRevisionIndex(GlobalSecondaryIndex):
    """Sparse: only goods with a content revision (``pending`` for ops to review, or ``rejected``)."""
    Meta = _index_meta("revision-index")
    revision_state = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class Goods(Model):
    """A supplier's goods with its SKUs.

    ``skus`` maps sku_id to ``{spec, settlement_price, base_price, stock}``
    (prices in minor currency units) so one SKU's stock can be changed by a
    conditional update on ``skus.<sku_id>.stock`` without reading the list.
    """

    Meta = _meta("goods")
    goods_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    ref = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    images = ListAttribute(of=UnicodeAttribute, default=list)  # upload ids of the supplier's own images
    category = UnicodeAttribute()
    skus = MapAttribute()
    status = UnicodeAttribute()
    reject_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    version = NumberAttribute(default=1)
    # A supplier's change to approved content (title, description, images, category) waits here for
    # review while members keep seeing the approved fields above; ``revision_state`` keys the sparse index.
    revision = MapAttribute(null=True)
    revision_state = UnicodeAttribute(null=True)
    supplier_index = GoodsSupplierIndex()
    status_index = GoodsStatusIndex()
    revision_index = GoodsRevisionIndex()


class Stock(Model):
    """One SKU's stock and the prices checkout guards, kept apart from its goods item.

    A checkout line writes only this small item (2 WCU in a transaction) instead of the whole
    goods item with every SKU, title and description. ``stock`` is authoritative (checkout takes
    it with ``stock >= qty``); ``settlement_price`` and ``base_price`` mirror the goods' SKU and
    ``selling`` is true while the goods is approved, each written in the same transaction that
    changes it on the goods item, so checkout's conditions here guard the prices and the approval
    it read. Goods from before this item get it on first read (``goods.stock_items``).
    """

    Meta = _meta("stock")
    goods_id = UnicodeAttribute(hash_key=True)
    sku_id = UnicodeAttribute(range_key=True)
    stock = NumberAttribute()
    settlement_price = NumberAttribute()
    base_price = NumberAttribute(null=True)
    selling = BooleanAttribute(default=False)


class Upload(Model):
    """A signed upload link handed to a supplier, and what its object became."""

    Meta = _meta("uploads")
    upload_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    key = UnicodeAttribute()
    content_type = UnicodeAttribute()
    status = UnicodeAttribute(default="issued")
    result = MapAttribute(default=dict)
    created_at = UnicodeAttribute(default=now_iso)
    processed_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()
