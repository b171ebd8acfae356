"""Goods, their review, and the master pool.

A supplier publishes goods with per-SKU settlement prices (shipping
included) and stock. New goods and settlement price raises wait for ops
review; ops approve with a base sale price per SKU or reject with a reason.
Approved goods form the master pool. Every price, stock and status change is
written with its audit row in one transaction.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable

from pynamodb.exceptions import DoesNotExist, TransactWriteError

from chalicelib import audit
from chalicelib.errors import Conflict, NotFound, Unprocessable
from chalicelib.models import Goods, condition_failed, now_iso, transaction
from chalicelib.pricing import guard_loss
if TYPE_CHECKING:  # annotations only: pydantic loads with the first request that sends a body
    from chalicelib.schemas import GoodsDraft, GoodsEdit, SkuChange

PENDING, APPROVED, REJECTED, OFF_SALE = "pending_review", "approved", "rejected", "off_sale"
STATUSES = (PENDING, APPROVED, REJECTED, OFF_SALE)


def goods_id_for(supplier_id: str, ref: str) -> str:
    """Stable id from the supplier's own reference: the same row imported twice is one goods."""
    return "G" + hashlib.sha256(f"{supplier_id}:{ref}".encode()).hexdigest()[:15].upper()


def skus_of(goods: Goods) -> dict[str, dict]:
    return goods.skus.as_dict() if goods.skus else {}


def view(g: Goods) -> dict:
    skus = skus_of(g)
    return {
        "goods_id": g.goods_id, "supplier_id": g.supplier_id, "ref": g.ref, "title": g.title,
        "description": g.description, "images": list(g.images or []), "category": g.category,
        "status": g.status, "reject_reason": g.reject_reason, "version": int(g.version),
        "skus": [dict(sku_id=k, **skus[k]) for k in sorted(skus)],
        "created_at": g.created_at, "updated_at": g.updated_at,
    }


def get(goods_id: str) -> Goods:
    try:
        return Goods.get(goods_id)
    except DoesNotExist:
        raise NotFound("goods_not_found", f"no goods {goods_id}") from None


def get_own(supplier_id: str, goods_id: str) -> Goods:
    """A supplier's own goods; another supplier's answers exactly like a missing one."""
    goods = get(goods_id)
    if goods.supplier_id != supplier_id:
        raise NotFound("goods_not_found", f"no goods {goods_id}")
    return goods


def publish(supplier_id: str, draft: GoodsDraft, actor: str) -> Goods:
    goods = Goods(
        goods_id_for(supplier_id, draft.ref), supplier_id=supplier_id, ref=draft.ref, title=draft.title,
        description=draft.description, images=draft.images, category=draft.category, status=PENDING,
        skus={s.sku_id: {"spec": s.spec, "settlement_price": s.settlement_price, "stock": s.stock}
              for s in draft.skus},
    )
    try:
        with transaction() as tx:
            tx.save(goods, condition=Goods.goods_id.does_not_exist())
            audit.add(tx, f"goods#{goods.goods_id}", actor, "published", "status", None, PENDING)
            for s in draft.skus:
                audit.add(tx, f"goods#{goods.goods_id}", actor, "price_set",
                          f"skus.{s.sku_id}.settlement_price", None, s.settlement_price)
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise Conflict("duplicate_ref", f"goods with ref {draft.ref} already exists", "ref") from None
        raise
    return goods


def _commit(goods: Goods, actions: list, changes: Iterable[tuple[str, str, object, object]], actor: str,
            condition=None) -> Goods:
    """Apply ``actions`` if nobody changed the goods since it was read, with one audit row per change."""
    guard = Goods.version == goods.version
    if condition is not None:
        guard = guard & condition
    try:
        with transaction() as tx:
            tx.update(goods, actions + [Goods.version.add(1), Goods.updated_at.set(now_iso())], condition=guard)
            for action, field, old, new in changes:
                audit.add(tx, f"goods#{goods.goods_id}", actor, action, field, old, new)
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise Conflict("concurrent_update", "the goods changed meanwhile; read it again and retry") from None
        raise
    goods.refresh()
    return goods


def edit(supplier_id: str, goods_id: str, change: GoodsEdit, actor: str) -> Goods:
    goods = get_own(supplier_id, goods_id)
    fields = change.model_dump(exclude_none=True)
    if not fields:
        return goods
    actions = [getattr(Goods, name).set(value) for name, value in fields.items()]
    changes = [("edited", name, getattr(goods, name), value) for name, value in fields.items()
               if name in ("title", "category")]
    return _commit(goods, actions, changes, actor)


def change_sku(supplier_id: str, goods_id: str, sku_id: str, change: SkuChange, actor: str) -> Goods:
    """Set a SKU's spec, price or stock. A new SKU or a price raise sends the goods back to review."""
    goods = get_own(supplier_id, goods_id)
    current = skus_of(goods).get(sku_id)
    actions: list = []
    changes: list[tuple[str, str, object, object]] = []
    to_review = False
    path = Goods.skus[sku_id]
    if current is None:
        if change.spec is None or change.settlement_price is None or change.stock is None:
            raise Unprocessable("validation_error", "a new SKU needs spec, settlement_price and stock", "body")
        actions.append(path.set({"spec": change.spec, "settlement_price": change.settlement_price,
                                 "stock": change.stock}))
        changes += [("sku_added", f"skus.{sku_id}", None, change.model_dump())]
        to_review = True
        condition = path.does_not_exist()
    else:
        condition = path.exists()
        if change.spec is not None and change.spec != current["spec"]:
            actions.append(path["spec"].set(change.spec))
            changes.append(("edited", f"skus.{sku_id}.spec", current["spec"], change.spec))
        if change.settlement_price is not None and change.settlement_price != current["settlement_price"]:
            actions.append(path["settlement_price"].set(change.settlement_price))
            raised = change.settlement_price > current["settlement_price"]
            changes.append(("price_raised" if raised else "price_lowered", f"skus.{sku_id}.settlement_price",
                            current["settlement_price"], change.settlement_price))
            to_review = to_review or raised
        if change.stock is not None and change.stock != current["stock"]:
            actions.append(path["stock"].set(change.stock))
            condition = condition & (path["stock"] == current["stock"])
            changes.append(("stock_set", f"skus.{sku_id}.stock", current["stock"], change.stock))
    if not actions:
        return goods
    if to_review and goods.status == APPROVED:
        actions.append(Goods.status.set(PENDING))
        changes.append(("sent_to_review", "status", APPROVED, PENDING))
    return _commit(goods, actions, changes, actor, condition)


def _move(goods: Goods, allowed_from: tuple[str, ...], to: str, actor: str, action: str,
          extra: list | None = None) -> Goods:
    if goods.status not in allowed_from:
        raise Conflict("invalid_status", f"goods {goods.goods_id} is {goods.status}; cannot become {to}")
    return _commit(goods, [Goods.status.set(to)] + (extra or []), [(action, "status", goods.status, to)], actor,
                   Goods.status.is_in(*allowed_from))


def take_off_sale(goods: Goods, actor: str) -> Goods:
    return _move(goods, (APPROVED, PENDING), OFF_SALE, actor, "taken_off_sale")


def submit(goods: Goods, actor: str) -> Goods:
    """Back to review after a rejection or an off-sale period."""
    return _move(goods, (REJECTED, OFF_SALE), PENDING, actor, "submitted", [Goods.reject_reason.remove()])


def approve(goods_id: str, base_prices: dict[str, int], allow_loss: bool, actor: str) -> Goods:
    """Into the master pool at a base sale price per SKU; below settlement only with ``allow_loss``."""
    goods = get(goods_id)
    if goods.status != PENDING:
        raise Conflict("invalid_status", f"goods {goods_id} is {goods.status}, not pending_review")
    skus = skus_of(goods)
    wrong = sorted(set(skus) ^ set(base_prices))
    if wrong:
        raise Unprocessable("validation_error", f"base_prices must name exactly the SKUs {sorted(skus)}",
                            f"base_prices.{wrong[0]}")
    for sku_id, price in base_prices.items():
        guard_loss(price, int(skus[sku_id]["settlement_price"]), allow_loss, f"base_prices.{sku_id}")
    actions = [Goods.skus[sku_id]["base_price"].set(price) for sku_id, price in base_prices.items()]
    # the loss ops accepted here goes with the base price, so channels selling at it may sell (and report it)
    actions += [Goods.skus[sku_id]["base_allow_loss"].set(
        allow_loss and price < int(skus[sku_id]["settlement_price"])) for sku_id, price in base_prices.items()]
    changes = [("base_price_set", f"skus.{sku_id}.base_price", skus[sku_id].get("base_price"), price)
               for sku_id, price in base_prices.items() if skus[sku_id].get("base_price") != price]
    actions += [Goods.status.set(APPROVED), Goods.reject_reason.remove()]
    changes.append(("approved", "status", PENDING, APPROVED))
    return _commit(goods, actions, changes, actor, Goods.status == PENDING)


def reject(goods_id: str, reason: str, actor: str) -> Goods:
    goods = get(goods_id)
    return _move(goods, (PENDING,), REJECTED, actor, "rejected", [Goods.reject_reason.set(reason)])


def list_for_supplier(supplier_id: str) -> list[Goods]:
    return list(Goods.supplier_index.query(supplier_id, scan_index_forward=False))


def list_by_status(status: str) -> list[Goods]:
    if status not in STATUSES:
        raise Unprocessable("validation_error", f"status must be one of {', '.join(STATUSES)}", "status")
    return list(Goods.status_index.query(status, scan_index_forward=False))



def audit_trail(goods_id: str) -> list[dict]:
    return audit.history(f"goods#{goods_id}")
