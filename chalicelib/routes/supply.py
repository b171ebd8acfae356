"""Supply routes: supplier onboarding and keys, goods publishing and review, uploads."""
from __future__ import annotations

from chalicelib.callers.callers import ops_actor, supplier_actor, supplier_of
from chalicelib.core import audit, web
from chalicelib.core.observability import count
from chalicelib.core.routing import Routes
from chalicelib.core.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)
from chalicelib.supply import goods, imports, suppliers

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/suppliers/applications", methods=("POST",), status=201)
def supplier_apply() -> dict:
    supplier = suppliers.apply(web.body(req(), schemas.SupplierApplication))
    count("SupplierApplied")
    return suppliers.supplier_view(supplier)


@route("/ops/suppliers", ops=True)
def ops_supplier_list() -> dict:
    ops_actor(req())
    return {"suppliers": [suppliers.view(s) for s in suppliers.list_by_status(web.query(req(), "status", "applied"))]}


@route("/ops/suppliers", methods=("POST",), ops=True, status=201)
def ops_supplier_create() -> dict:
    actor = ops_actor(req())
    supplier, key = suppliers.create_by_ops(web.body(req(), schemas.SupplierApplication), actor)
    return {"supplier": suppliers.view(supplier), "api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}", ops=True)
def ops_supplier_get(supplier_id: str) -> dict:
    ops_actor(req())
    return {"supplier": suppliers.view(suppliers.get(supplier_id)),
            "keys": [suppliers.key_view(k) for k in suppliers.list_keys(supplier_id)]}


@route("/ops/suppliers/{supplier_id}/approve", methods=("POST",), ops=True)
def ops_supplier_approve(supplier_id: str) -> dict:
    supplier, key = suppliers.approve(supplier_id, ops_actor(req()))
    return {"supplier": suppliers.view(supplier), "api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}/reject", methods=("POST",), ops=True)
def ops_supplier_reject(supplier_id: str) -> dict:
    actor = ops_actor(req())
    return {"supplier": suppliers.view(suppliers.reject(supplier_id, web.body(req(), schemas.Reason).reason, actor))}


@route("/ops/suppliers/{supplier_id}/keys", methods=("POST",), ops=True, status=201)
def ops_supplier_key_issue(supplier_id: str) -> dict:
    actor = ops_actor(req())
    key = suppliers.issue_key(supplier_id, actor, web.body(req(), schemas.KeyRotation).revoke_existing)
    return {"api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}/keys/{key_id}", methods=("DELETE",), ops=True)
def ops_supplier_key_revoke(supplier_id: str, key_id: str) -> dict:
    suppliers.revoke_key(supplier_id, key_id, ops_actor(req()))
    return {"key_id": key_id, "status": "revoked"}


@route("/supplier/me")
def supplier_me() -> dict:
    return suppliers.supplier_view(supplier_of(req()))


@route("/supplier/goods", methods=("POST",), status=201)
def supplier_goods_publish() -> dict:
    supplier, actor = supplier_actor(req())
    created = goods.publish(supplier.supplier_id, web.body(req(), schemas.GoodsDraft), actor)
    count("GoodsPublished")
    return goods.view(created)


@route("/supplier/goods")
def supplier_goods_list() -> dict:
    supplier = supplier_of(req())
    return {"goods": goods.views(goods.list_for_supplier(supplier.supplier_id))}


@route("/supplier/goods/{goods_id}")
def supplier_goods_get(goods_id: str) -> dict:
    supplier = supplier_of(req())
    return goods.view(goods.get_own(supplier.supplier_id, goods_id))


@route("/supplier/goods/{goods_id}", methods=("PATCH",))
def supplier_goods_edit(goods_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    return goods.view(goods.edit(supplier.supplier_id, goods_id, web.body(req(), schemas.GoodsEdit), actor))


@route("/supplier/goods/{goods_id}/skus/{sku_id}", methods=("PUT",))
def supplier_sku_change(goods_id: str, sku_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    return goods.view(goods.change_sku(supplier.supplier_id, goods_id, sku_id, web.body(req(), schemas.SkuChange), actor))


@route("/supplier/goods/{goods_id}/off-sale", methods=("POST",))
def supplier_goods_off_sale(goods_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    return goods.view(goods.take_off_sale(goods.get_own(supplier.supplier_id, goods_id), actor))


@route("/supplier/goods/{goods_id}/submit", methods=("POST",))
def supplier_goods_submit(goods_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    return goods.view(goods.submit(goods.get_own(supplier.supplier_id, goods_id), actor))


@route("/supplier/goods/{goods_id}/audit")
def supplier_goods_audit(goods_id: str) -> dict:
    supplier = supplier_of(req())
    goods.get_own(supplier.supplier_id, goods_id)
    return {"audit": audit.for_supplier(goods.audit_trail(goods_id))}


@route("/supplier/uploads", methods=("POST",), status=201)
def supplier_upload_link() -> dict:
    supplier = supplier_of(req())
    return imports.request_link(supplier.supplier_id, web.body(req(), schemas.UploadRequest))


@route("/supplier/uploads/{upload_id}")
def supplier_upload_get(upload_id: str) -> dict:
    supplier = supplier_of(req())
    return imports.view(imports.get_own(supplier.supplier_id, upload_id))


@route("/ops/goods", ops=True)
def ops_goods_list() -> dict:
    ops_actor(req())
    return {"goods": goods.views(goods.list_by_status(web.query(req(), "status", goods.PENDING)))}


@route("/ops/goods/{goods_id}", ops=True)
def ops_goods_get(goods_id: str) -> dict:
    ops_actor(req())
    return goods.view(goods.get(goods_id))


@route("/ops/goods/{goods_id}/audit", ops=True)
def ops_goods_audit(goods_id: str) -> dict:
    ops_actor(req())
    goods.get(goods_id)
    return {"audit": goods.audit_trail(goods_id)}


@route("/ops/goods/{goods_id}/approve", methods=("POST",), ops=True)
def ops_goods_approve(goods_id: str) -> dict:
    actor = ops_actor(req())
    approval = web.body(req(), schemas.GoodsApproval)
    approved = goods.approve(goods_id, approval.base_prices, approval.allow_loss, actor)
    count("GoodsApproved")  # only approvals that happened (refused ones count as ClientErrors)
    return goods.view(approved)


@route("/ops/goods/{goods_id}/reject", methods=("POST",), ops=True)
def ops_goods_reject(goods_id: str) -> dict:
    actor = ops_actor(req())
    return goods.view(goods.reject(goods_id, web.body(req(), schemas.Reason).reason, actor))


@route("/ops/goods/{goods_id}/off-sale", methods=("POST",), ops=True)
def ops_goods_off_sale(goods_id: str) -> dict:
    actor = ops_actor(req())
    return goods.view(goods.take_off_sale(goods.get(goods_id), actor))


@route("/ops/goods-revisions", ops=True)
def ops_goods_revisions() -> dict:
    """Approved goods whose supplier changed their content: ``state`` pending (default) or rejected."""
    ops_actor(req())
    state = web.query(req(), "state", goods.REVISION_PENDING)
    return {"goods": goods.views(goods.list_revisions(state))}


@route("/ops/goods/{goods_id}/revision/approve", methods=("POST",), ops=True)
def ops_goods_revision_approve(goods_id: str) -> dict:
    actor = ops_actor(req())
    body = web.body(req(), schemas.RevisionApproval)
    return goods.view(goods.approve_revision(goods_id, body.version, actor))


@route("/ops/goods/{goods_id}/revision/reject", methods=("POST",), ops=True)
def ops_goods_revision_reject(goods_id: str) -> dict:
    actor = ops_actor(req())
    return goods.view(goods.reject_revision(goods_id, web.body(req(), schemas.Reason).reason, actor))
