"""Goods, their review, and the master pool.

A supplier publishes goods with per-SKU settlement prices (shipping
included) and stock. New goods and settlement price raises wait for ops
review; ops approve with a base sale price per SKU or reject with a reason.
Approved goods form the master pool. Every price, stock, status and content
change is written with its audit row in one transaction.

Content (title, description, images, category) of approved goods is never
changed by the supplier directly: the change becomes a pending revision that
ops approve or reject (with a reason the supplier reads) while the goods keep
selling with the approved content. Images are the supplier's own processed
image uploads, referenced by upload id; never a URL.
"""
from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Callable, Iterable

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.core import audit
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound, Unprocessable
from chalicelib.core.tx import condition_failed, lost_race, transaction
from chalicelib.supply.models import Goods, Stock, Upload
from chalicelib.supply.prices import guard_loss
from chalicelib.core.tx import AGAIN, Commit, Done, LabelledTransaction, retrying

if TYPE_CHECKING:  # annotations only: pydantic loads with the first request that sends a body
    from chalicelib.core.schemas import GoodsDraft, GoodsEdit, SkuChange

PENDING, APPROVED, REJECTED, OFF_SALE = "pending_review", "approved", "rejected", "off_sale"
STATUSES = (PENDING, APPROVED, REJECTED, OFF_SALE)
TX_MAX_ITEMS = 100  # DynamoDB's limit of actions in one TransactWriteItems
StockKey = tuple[str, str]  # (goods_id, sku_id)
CONTENT = ("title", "description", "images", "category")
REVISION_PENDING, REVISION_REJECTED = "pending", "rejected"
REVISION_STATES = (REVISION_PENDING, REVISION_REJECTED)
# an upload id, or the key its signed link wrote to: uploads/{supplier_id}/image/{upload_id}
IMAGE_REF = re.compile(r"(?:uploads/([^/]{1,100})/image/)?([0-9a-f]{32})")


def goods_id_for(supplier_id: str, ref: str) -> str:
    """Stable id from the supplier's own reference: the same row imported twice is one goods."""
    return "G" + hashlib.sha256(f"{supplier_id}:{ref}".encode()).hexdigest()[:15].upper()


def skus_of(goods: Goods) -> dict[str, dict]:
    return goods.skus.as_dict() if goods.skus else {}


def content_of(g: Goods) -> dict:
    """The approved (live) content: what members see."""
    return {"title": g.title, "description": g.description or "", "images": list(g.images or []),
            "category": g.category}


def revision_of(g: Goods) -> dict | None:
    return g.revision.as_dict() if g.revision else None


def _revision_view(g: Goods) -> dict | None:
    revision = revision_of(g)
    if revision is None:
        return None
    return {**{k: revision[k] for k in CONTENT}, "state": g.revision_state,
            "reject_reason": revision.get("reject_reason"), "submitted_at": revision.get("submitted_at")}


def view(g: Goods, stock: dict[StockKey, Stock] | None = None) -> dict:
    """The goods with each SKU's stock from its ``Stock`` item (read here unless the caller read it)."""
    skus = skus_of(g)
    stock = stock_items([g], consistent=True) if stock is None else stock
    return {
        "goods_id": g.goods_id, "supplier_id": g.supplier_id, "ref": g.ref, **content_of(g),
        "status": g.status, "reject_reason": g.reject_reason, "version": int(g.version),
        "skus": [dict(sku_id=k, **(skus[k] | {"stock": int(stock[(g.goods_id, k)].stock)})) for k in sorted(skus)],
        "revision": _revision_view(g),
        "created_at": g.created_at, "updated_at": g.updated_at,
    }


def own_images(supplier_id: str, refs: list[str], attached: Iterable[str] = ()) -> list[str]:
    """The upload ids behind ``refs``, each an image this supplier uploaded that passed its checks.

    Anything else is refused before any write: a URL or other text, another supplier's upload (answered
    like a missing one), an upload still unchecked, refused or not an image. Images the goods already
    carry were checked when attached (their upload record may have expired since) and stay accepted.
    """
    ids: list[str] = []
    for i, ref in enumerate(refs):
        match = IMAGE_REF.fullmatch(ref)
        if match is None:
            raise Unprocessable("image_not_upload", "images are upload ids of your own image uploads "
                                "(POST /supplier/uploads with kind image); URLs are not accepted", f"images.{i}")
        if match.group(1) not in (None, supplier_id):
            raise Unprocessable("image_not_owned", f"{ref} is not one of your uploads", f"images.{i}")
        ids.append(match.group(2))
    if len(set(ids)) != len(ids):
        raise Unprocessable("validation_error", "each image may be given once", "images")
    known = set(attached)
    to_check = sorted(set(ids) - known)
    found = {u.upload_id: u for u in Upload.batch_get(to_check)} if to_check else {}
    for i, upload_id in enumerate(ids):
        if upload_id in known:
            continue
        upload = found.get(upload_id)
        if upload is None or upload.supplier_id != supplier_id:
            raise Unprocessable("image_not_owned", f"no image upload {upload_id} of yours", f"images.{i}")
        if upload.kind != "image" or upload.status != "processed":
            raise Unprocessable("image_not_processed", f"upload {upload_id} is a {upload.kind} upload that is "
                                f"{upload.status}, not a processed image", f"images.{i}")
    return ids


def views(goods_list: list[Goods]) -> list[dict]:
    """Many goods' views with one batched stock read."""
    stock = stock_items(goods_list, consistent=True)
    return [view(g, stock) for g in goods_list]


def stock_items(goods_list: Iterable[Goods], consistent: bool = False) -> dict[StockKey, Stock]:
    """Every SKU's ``Stock`` item of these goods, one BatchGetItem.

    Migration: goods from before ``Stock`` items (and a publish whose second step did not run)
    get theirs here, on first read, from the stock and prices on the goods item (``_backfill``).
    """
    goods_list = list(goods_list)
    keys = [(g.goods_id, k) for g in goods_list for k in sorted(skus_of(g))]
    found = {(s.goods_id, s.sku_id): s for s in Stock.batch_get(keys, consistent_read=consistent)} if keys else {}
    for g in goods_list:
        if any((g.goods_id, k) not in found for k in skus_of(g)):
            found.update(_backfill(g))
    return found


def _stock_from(goods: Goods, sku_id: str) -> Stock:
    sku = skus_of(goods)[sku_id]
    return Stock(goods.goods_id, sku_id, stock=int(sku.get("stock", 0)), settlement_price=int(sku["settlement_price"]),
                 base_price=int(sku["base_price"]) if sku.get("base_price") is not None else None,
                 selling=goods.status == APPROVED)


def _backfill(goods: Goods) -> dict[StockKey, Stock]:
    """Create the goods' missing ``Stock`` items from the goods item, as of one unchanged version of it.

    The goods item's ``skus.<id>.stock`` is the stock until its ``Stock`` item exists, and only read here."""
    def read(attempt: int) -> Goods:
        # Changed meanwhile, or the items were created by another read: read the goods again.
        return Goods.get(goods.goods_id, consistent_read=True) if attempt else goods

    def build(goods: Goods) -> Commit[dict[StockKey, Stock]] | Done[dict[StockKey, Stock]]:
        keys = [(goods.goods_id, k) for k in sorted(skus_of(goods))]
        have = {(s.goods_id, s.sku_id): s for s in Stock.batch_get(keys, consistent_read=True)}
        missing = [_stock_from(goods, sku_id) for gid, sku_id in keys if (gid, sku_id) not in have]
        if not missing:
            return Done(have)
        tx = LabelledTransaction()
        tx.check("goods", Goods, goods.goods_id, condition=Goods.version == goods.version)
        for item in missing:
            tx.put(f"stock:{item.sku_id}", item, condition=Stock.sku_id.does_not_exist())
        return Commit(tx, lambda: have | {(s.goods_id, s.sku_id): s for s in missing}, refused=lambda _: AGAIN)

    return retrying(read, build, 10, exhausted=_changed_meanwhile)


def _changed_meanwhile() -> dict[StockKey, Stock]:
    raise Conflict("concurrent_update", "the goods changed meanwhile; read it again and retry")


def _stock_writes(goods_id: str, updates: dict[str, list]) -> Callable[[TransactWrite], None]:
    """Updates of existing ``Stock`` items (by sku_id), to ride in a goods transaction."""
    def add(tx: TransactWrite) -> None:
        for sku_id, actions in sorted(updates.items()):
            if actions:
                tx.update(Stock(goods_id, sku_id), actions, condition=Stock.sku_id.exists())
    return add


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
        description=draft.description, images=own_images(supplier_id, draft.images), category=draft.category,
        status=PENDING,
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
    # Its Stock items in a second step (up to 50 SKUs and their audit rows leave no room in the first);
    # the goods is pending review, so nothing sells in between, and a read backfills them if this step is lost.
    _backfill(goods)
    return goods


def _commit(goods: Goods, actions: list, changes: Iterable[tuple[str, str, object, object]], actor: str,
            condition=None, stock: Callable[[TransactWrite], None] | None = None) -> Goods:
    """Apply ``actions`` if nobody changed the goods since it was read, with one audit row per change
    and, in the same transaction, the ``stock`` writes that mirror them on the SKUs' ``Stock`` items."""
    guard = Goods.version == goods.version
    if condition is not None:
        guard = guard & condition
    try:
        with transaction() as tx:
            tx.update(goods, actions + [Goods.version.add(1), Goods.updated_at.set(now_iso())], condition=guard)
            for action, field, old, new in changes:
                audit.add(tx, f"goods#{goods.goods_id}", actor, action, field, old, new)
            if stock is not None:
                stock(tx)
    except TransactWriteError as exc:
        if condition_failed(exc) or lost_race(exc):
            raise Conflict("concurrent_update", "the goods changed meanwhile; read it again and retry") from None
        raise
    goods.refresh()
    return goods


def edit(supplier_id: str, goods_id: str, change: GoodsEdit, actor: str) -> Goods:
    """Change content: directly while the goods are not on sale; as a pending revision once approved.

    A revision holds the whole proposed content, so ops approve one consistent version; an edit while
    one is pending edits it, and an edit that brings it back to the approved content withdraws it.
    """
    goods = get_own(supplier_id, goods_id)
    fields = change.model_dump(exclude_none=True)
    live, revision = content_of(goods), revision_of(goods)
    pending = revision is not None and goods.revision_state == REVISION_PENDING
    if "images" in fields:
        attached = live["images"] + (revision["images"] if revision else [])
        fields["images"] = own_images(supplier_id, fields["images"], attached)
    if goods.status != APPROVED and not pending:  # not selling: ops review this content with the goods
        changes = [("edited", name, live[name], value) for name, value in fields.items() if live[name] != value]
        if not changes:
            return goods
        actions = [getattr(Goods, name).set(new) for _, name, _, new in changes]
        if revision is not None:  # a rejected revision of an earlier approval is moot now
            actions += [Goods.revision.remove(), Goods.revision_state.remove()]
        return _commit(goods, actions, changes, actor)
    base = {k: revision[k] for k in CONTENT} if pending else live
    proposed = {**base, **fields}
    changes = [("revision_edited", name, base[name], proposed[name]) for name in CONTENT
               if base[name] != proposed[name]]
    if not changes:
        return goods
    if proposed == live:
        actions = [Goods.revision.remove(), Goods.revision_state.remove()]
        changes.append(("revision_withdrawn", "revision", REVISION_PENDING, None))
    else:
        actions = [Goods.revision.set({**proposed, "submitted_at": now_iso()}),
                   Goods.revision_state.set(REVISION_PENDING)]
        if not pending:
            changes.append(("sent_to_review", "revision", goods.revision_state, REVISION_PENDING))
    return _commit(goods, actions, changes, actor)


def _pending_revision(goods_id: str) -> tuple[Goods, dict]:
    goods = get(goods_id)
    revision = revision_of(goods)
    if revision is None or goods.revision_state != REVISION_PENDING:
        raise Conflict("no_pending_revision", f"goods {goods_id} has no content change waiting for review")
    return goods, revision


def approve_revision(goods_id: str, version: int | None, actor: str) -> Goods:
    """Members see the revised content from now on; ``version`` pins the revision ops reviewed."""
    goods, revision = _pending_revision(goods_id)
    if version is not None and version != int(goods.version):
        raise Conflict("revision_changed", f"the goods are at version {int(goods.version)}, not {version}; "
                       "review the revision again")
    live = content_of(goods)
    changes = [("revision_approved", name, live[name], revision[name]) for name in CONTENT
               if live[name] != revision[name]]
    actions = [getattr(Goods, name).set(revision[name]) for name in CONTENT]
    actions += [Goods.revision.remove(), Goods.revision_state.remove()]
    return _commit(goods, actions, changes, actor, Goods.revision_state == REVISION_PENDING)


def reject_revision(goods_id: str, reason: str, actor: str) -> Goods:
    """The approved content stays; the supplier reads the reason on its goods and may edit again."""
    goods, _ = _pending_revision(goods_id)
    actions = [Goods.revision["reject_reason"].set(reason), Goods.revision_state.set(REVISION_REJECTED)]
    changes = [("revision_rejected", "revision.reject_reason", None, reason)]
    return _commit(goods, actions, changes, actor, Goods.revision_state == REVISION_PENDING)


def list_revisions(state: str) -> list[Goods]:
    if state not in REVISION_STATES:
        raise Unprocessable("validation_error", f"state must be one of {', '.join(REVISION_STATES)}", "state")
    return list(Goods.revision_index.query(state, scan_index_forward=False))


def change_sku(supplier_id: str, goods_id: str, sku_id: str, change: SkuChange, actor: str) -> Goods:
    """Set a SKU's spec, price or stock. A new SKU or a price raise sends the goods back to review."""
    goods = get_own(supplier_id, goods_id)
    current = skus_of(goods).get(sku_id)
    held = stock_items([goods], consistent=True)
    actions: list = []
    stock: dict[str, list] = {k: [] for k in skus_of(goods)}  # Stock item updates by sku_id
    changes: list[tuple[str, str, object, object]] = []
    to_review = False
    path = Goods.skus[sku_id]
    stock_now = int(held[(goods_id, sku_id)].stock) if current is not None else None
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
            stock[sku_id].append(Stock.settlement_price.set(change.settlement_price))
            raised = change.settlement_price > current["settlement_price"]
            changes.append(("price_raised" if raised else "price_lowered", f"skus.{sku_id}.settlement_price",
                            current["settlement_price"], change.settlement_price))
            to_review = to_review or raised
        if change.stock is not None and change.stock != stock_now:
            changes.append(("stock_set", f"skus.{sku_id}.stock", stock_now, change.stock))
    if not actions and not changes:
        return goods
    if to_review and goods.status == APPROVED:
        actions.append(Goods.status.set(PENDING))
        changes.append(("sent_to_review", "status", APPROVED, PENDING))
        for sku_actions in stock.values():
            sku_actions.append(Stock.selling.set(False))
    mirror = _stock_writes(goods_id, stock)

    def writes(tx: TransactWrite) -> None:
        mirror(tx)
        if current is None:
            tx.save(Stock(goods_id, sku_id, stock=change.stock, settlement_price=change.settlement_price,
                          selling=False), condition=Stock.sku_id.does_not_exist())
        elif change.stock is not None and change.stock != stock_now:  # checkouts move it too: set what was read
            tx.update(Stock(goods_id, sku_id), [Stock.stock.set(change.stock)], condition=Stock.stock == stock_now)

    return _commit(goods, actions, changes, actor, condition, writes)


def _move(goods: Goods, allowed_from: tuple[str, ...], to: str, actor: str, action: str,
          extra: list | None = None) -> Goods:
    if goods.status not in allowed_from:
        raise Conflict("invalid_status", f"goods {goods.goods_id} is {goods.status}; cannot become {to}")
    stock = None
    if goods.status == APPROVED:  # leaving the master pool: every SKU stops selling in the same transaction
        stock_items([goods])
        stock = _stock_writes(goods.goods_id, {k: [Stock.selling.set(False)] for k in skus_of(goods)})
    return _commit(goods, [Goods.status.set(to)] + (extra or []), [(action, "status", goods.status, to)], actor,
                   Goods.status == goods.status, stock)


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
    if len(changes) + len(skus) + 2 > TX_MAX_ITEMS:  # 49-50 SKUs: their base prices in one audit row, to fit
        changes = [("base_price_set", "skus.*.base_price", {k: skus[k].get("base_price") for k in sorted(skus)},
                    dict(sorted(base_prices.items())))]
    changes.append(("approved", "status", PENDING, APPROVED))
    stock_items([goods])
    stock = _stock_writes(goods_id, {k: [Stock.base_price.set(price), Stock.selling.set(True)]
                                     for k, price in base_prices.items()})
    return _commit(goods, actions, changes, actor, Goods.status == PENDING, stock)


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
