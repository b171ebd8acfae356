"""Channel Mall: HTTP routes and Lambda entry points. Business rules live in chalicelib."""
from __future__ import annotations

import functools
from typing import Any, Callable

from aws_lambda_powertools.logging import correlation_paths
from chalice import Chalice, ConvertToMiddleware, IAMAuthorizer, Rate, Response

from chalicelib import (
    audit, carts, catalog, channel_orders, channels, checkout, entry, fulfilment, goods, imports, members, orders,
    parcels, payment_auth, pools, quotas, refunds, sandbox, sessions, store, suppliers, wallets, web, webhooks,
)
from chalicelib.errors import DomainError, Forbidden, Unprocessable
from chalicelib.observability import count, logger, metrics, tracer
from chalicelib.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)

app = Chalice(app_name="channel-mall")
app.register_middleware(ConvertToMiddleware(
    logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)), "http")
app.register_middleware(ConvertToMiddleware(metrics.log_metrics), "all")
_tracer = tracer()
if _tracer is not None:  # only where tracing is on: the X-Ray SDK costs ~110 ms of cold start
    app.register_middleware(ConvertToMiddleware(_tracer.capture_lambda_handler), "all")

# Admin routes are IAM-authorised in every deployed stage; chalice local admits
# them and ``web.ops_actor`` demands the local-only token instead.
ops_iam = IAMAuthorizer()


@app.middleware("http")
def error_contract(event: Any, get_response: Callable) -> Response:
    return web.chalice_error_to_contract(get_response(event))


def route(path: str, methods: tuple[str, ...] = ("GET",), ops: bool = False, status: int = 200) -> Callable:
    """Register a JSON route whose ``DomainError``s become contract errors and other faults a bare 500."""
    def register(view: Callable) -> Callable:
        @functools.wraps(view)
        def handle(**params: str) -> Response:
            try:
                web.check_path_params(params)
                result = view(**params)
                return result if isinstance(result, Response) else Response(
                    body=result, status_code=status, headers=web.JSON)
            except DomainError as error:
                count("ClientErrors")
                return web.error_response(error)
            except Exception:
                logger.exception("unhandled error", extra={"path": path})
                count("ServerErrors")
                return web.internal_error()
        return app.route(path, methods=list(methods), authorizer=ops_iam if ops else None)(handle)
    return register


def req():
    return app.current_request


# --- suppliers: onboarding -------------------------------------------------

@route("/suppliers/applications", methods=("POST",), status=201)
def supplier_apply() -> dict:
    supplier = suppliers.apply(web.body(req(), schemas.SupplierApplication))
    count("SupplierApplied")
    return suppliers.supplier_view(supplier)


@route("/ops/suppliers", ops=True)
def ops_supplier_list() -> dict:
    web.ops_actor(req())
    return {"suppliers": [suppliers.view(s) for s in suppliers.list_by_status(web.query(req(), "status", "applied"))]}


@route("/ops/suppliers", methods=("POST",), ops=True, status=201)
def ops_supplier_create() -> dict:
    actor = web.ops_actor(req())
    supplier, key = suppliers.create_by_ops(web.body(req(), schemas.SupplierApplication), actor)
    return {"supplier": suppliers.view(supplier), "api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}", ops=True)
def ops_supplier_get(supplier_id: str) -> dict:
    web.ops_actor(req())
    return {"supplier": suppliers.view(suppliers.get(supplier_id)),
            "keys": [suppliers.key_view(k) for k in suppliers.list_keys(supplier_id)]}


@route("/ops/suppliers/{supplier_id}/approve", methods=("POST",), ops=True)
def ops_supplier_approve(supplier_id: str) -> dict:
    supplier, key = suppliers.approve(supplier_id, web.ops_actor(req()))
    return {"supplier": suppliers.view(supplier), "api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}/reject", methods=("POST",), ops=True)
def ops_supplier_reject(supplier_id: str) -> dict:
    actor = web.ops_actor(req())
    return {"supplier": suppliers.view(suppliers.reject(supplier_id, web.body(req(), schemas.Reason).reason, actor))}


@route("/ops/suppliers/{supplier_id}/keys", methods=("POST",), ops=True, status=201)
def ops_supplier_key_issue(supplier_id: str) -> dict:
    actor = web.ops_actor(req())
    key = suppliers.issue_key(supplier_id, actor, web.body(req(), schemas.KeyRotation).revoke_existing)
    return {"api_key": key.api_key, "key_id": key.key_id}


@route("/ops/suppliers/{supplier_id}/keys/{key_id}", methods=("DELETE",), ops=True)
def ops_supplier_key_revoke(supplier_id: str, key_id: str) -> dict:
    suppliers.revoke_key(supplier_id, key_id, web.ops_actor(req()))
    return {"key_id": key_id, "status": "revoked"}


# --- suppliers: own goods and uploads ---------------------------------------

def _supplier_actor():
    supplier = web.supplier(req())
    return supplier, f"supplier:{supplier.supplier_id}"


@route("/supplier/me")
def supplier_me() -> dict:
    return suppliers.supplier_view(web.supplier(req()))


@route("/supplier/goods", methods=("POST",), status=201)
def supplier_goods_publish() -> dict:
    supplier, actor = _supplier_actor()
    created = goods.publish(supplier.supplier_id, web.body(req(), schemas.GoodsDraft), actor)
    count("GoodsPublished")
    return goods.view(created)


@route("/supplier/goods")
def supplier_goods_list() -> dict:
    supplier = web.supplier(req())
    return {"goods": goods.views(goods.list_for_supplier(supplier.supplier_id))}


@route("/supplier/goods/{goods_id}")
def supplier_goods_get(goods_id: str) -> dict:
    supplier = web.supplier(req())
    return goods.view(goods.get_own(supplier.supplier_id, goods_id))


@route("/supplier/goods/{goods_id}", methods=("PATCH",))
def supplier_goods_edit(goods_id: str) -> dict:
    supplier, actor = _supplier_actor()
    return goods.view(goods.edit(supplier.supplier_id, goods_id, web.body(req(), schemas.GoodsEdit), actor))


@route("/supplier/goods/{goods_id}/skus/{sku_id}", methods=("PUT",))
def supplier_sku_change(goods_id: str, sku_id: str) -> dict:
    supplier, actor = _supplier_actor()
    return goods.view(goods.change_sku(supplier.supplier_id, goods_id, sku_id, web.body(req(), schemas.SkuChange), actor))


@route("/supplier/goods/{goods_id}/off-sale", methods=("POST",))
def supplier_goods_off_sale(goods_id: str) -> dict:
    supplier, actor = _supplier_actor()
    return goods.view(goods.take_off_sale(goods.get_own(supplier.supplier_id, goods_id), actor))


@route("/supplier/goods/{goods_id}/submit", methods=("POST",))
def supplier_goods_submit(goods_id: str) -> dict:
    supplier, actor = _supplier_actor()
    return goods.view(goods.submit(goods.get_own(supplier.supplier_id, goods_id), actor))


@route("/supplier/goods/{goods_id}/audit")
def supplier_goods_audit(goods_id: str) -> dict:
    supplier = web.supplier(req())
    goods.get_own(supplier.supplier_id, goods_id)
    return {"audit": audit.for_supplier(goods.audit_trail(goods_id))}


@route("/supplier/uploads", methods=("POST",), status=201)
def supplier_upload_link() -> dict:
    supplier = web.supplier(req())
    return imports.request_link(supplier.supplier_id, web.body(req(), schemas.UploadRequest))


@route("/supplier/uploads/{upload_id}")
def supplier_upload_get(upload_id: str) -> dict:
    supplier = web.supplier(req())
    return imports.view(imports.get_own(supplier.supplier_id, upload_id))


@route("/supplier/parcels")
def supplier_parcels() -> dict:
    supplier = web.supplier(req())
    params = req().query_params or {}
    return parcels.list_own(supplier.supplier_id, params.get("state"), params.get("since"), params.get("until"),
                            params.get("cursor"), params.get("limit"))


@route("/supplier/parcels/{parcel_id}")
def supplier_parcel(parcel_id: str) -> dict:
    return parcels.supplier_detail(web.supplier(req()).supplier_id, parcel_id)


@route("/supplier/parcels/{parcel_id}/ship", methods=("POST",))
def supplier_parcel_ship(parcel_id: str) -> dict:
    supplier = web.supplier(req())
    data = web.body(req(), schemas.Shipment)
    return parcels.supplier_view(parcels.ship(supplier.supplier_id, parcel_id, data.carrier, data.tracking_no))


@route("/supplier/refunds")
def supplier_refunds() -> dict:
    return {"refunds": refunds.list_for_supplier(web.supplier(req()).supplier_id, web.query(req(), "state"))}


@route("/supplier/refunds/{refund_id}/approve", methods=("POST",))
def supplier_refund_approve(refund_id: str) -> dict:
    supplier, actor = _supplier_actor()
    return refunds.supplier_view(refunds.approve(refunds.for_supplier(supplier.supplier_id, refund_id), actor))


@route("/supplier/refunds/{refund_id}/reject", methods=("POST",))
def supplier_refund_reject(refund_id: str) -> dict:
    supplier, actor = _supplier_actor()
    reason = web.body(req(), schemas.Reason).reason
    return refunds.supplier_view(refunds.reject(refunds.for_supplier(supplier.supplier_id, refund_id), actor, reason))


@app.on_cw_event({"source": ["aws.s3"], "detail-type": ["Object Created"],
                  "detail": {"object": {"key": [{"prefix": "uploads/"}]}}}, name="upload_created")
def upload_created(event) -> dict:
    """S3 → EventBridge: check and import what a supplier uploaded through a signed link."""
    detail = event.detail
    result = imports.process_object(detail["bucket"]["name"], detail["object"]["key"])
    count("UploadsRefused" if "refused" in result else "UploadsProcessed")
    logger.info("upload processed", extra={"key": detail["object"]["key"], "result": result})
    return result


# --- ops: goods review and the master pool ----------------------------------

@route("/ops/goods", ops=True)
def ops_goods_list() -> dict:
    web.ops_actor(req())
    return {"goods": goods.views(goods.list_by_status(web.query(req(), "status", goods.PENDING)))}


@route("/ops/goods/{goods_id}", ops=True)
def ops_goods_get(goods_id: str) -> dict:
    web.ops_actor(req())
    return goods.view(goods.get(goods_id))


@route("/ops/goods/{goods_id}/audit", ops=True)
def ops_goods_audit(goods_id: str) -> dict:
    web.ops_actor(req())
    goods.get(goods_id)
    return {"audit": goods.audit_trail(goods_id)}


@route("/ops/goods/{goods_id}/approve", methods=("POST",), ops=True)
def ops_goods_approve(goods_id: str) -> dict:
    actor = web.ops_actor(req())
    approval = web.body(req(), schemas.GoodsApproval)
    approved = goods.approve(goods_id, approval.base_prices, approval.allow_loss, actor)
    count("GoodsApproved")  # only approvals that happened (refused ones count as ClientErrors)
    return goods.view(approved)


@route("/ops/goods/{goods_id}/reject", methods=("POST",), ops=True)
def ops_goods_reject(goods_id: str) -> dict:
    actor = web.ops_actor(req())
    return goods.view(goods.reject(goods_id, web.body(req(), schemas.Reason).reason, actor))


@route("/ops/goods/{goods_id}/off-sale", methods=("POST",), ops=True)
def ops_goods_off_sale(goods_id: str) -> dict:
    actor = web.ops_actor(req())
    return goods.view(goods.take_off_sale(goods.get(goods_id), actor))


@route("/ops/goods-revisions", ops=True)
def ops_goods_revisions() -> dict:
    """Approved goods whose supplier changed their content: ``state`` pending (default) or rejected."""
    web.ops_actor(req())
    state = web.query(req(), "state", goods.REVISION_PENDING)
    return {"goods": goods.views(goods.list_revisions(state))}


@route("/ops/goods/{goods_id}/revision/approve", methods=("POST",), ops=True)
def ops_goods_revision_approve(goods_id: str) -> dict:
    actor = web.ops_actor(req())
    body = web.body(req(), schemas.RevisionApproval)
    return goods.view(goods.approve_revision(goods_id, body.version, actor))


@route("/ops/goods/{goods_id}/revision/reject", methods=("POST",), ops=True)
def ops_goods_revision_reject(goods_id: str) -> dict:
    actor = web.ops_actor(req())
    return goods.view(goods.reject_revision(goods_id, web.body(req(), schemas.Reason).reason, actor))


# --- ops: channels, sub-pools and pricing ------------------------------------

@route("/ops/channels", ops=True)
def ops_channel_list() -> dict:
    web.ops_actor(req())
    return {"channels": [channels.view(c, web.base_url(req())) for c in channels.list_all()]}


@route("/ops/channels", methods=("POST",), ops=True, status=201)
def ops_channel_create() -> dict:
    actor = web.ops_actor(req())
    channel = channels.create(web.body(req(), schemas.ChannelCreate), actor)
    return {"channel": channels.view(channel, web.base_url(req())), "secret": channel.secret,
            "webhook_secret": channel.webhook_secret}


@route("/ops/channels/{code}", ops=True)
def ops_channel_get(code: str) -> dict:
    web.ops_actor(req())
    return channels.view(channels.get(code), web.base_url(req()))


@route("/ops/channels/{code}", methods=("PATCH",), ops=True)
def ops_channel_edit(code: str) -> dict:
    actor = web.ops_actor(req())
    return channels.view(channels.edit(code, web.body(req(), schemas.ChannelFields), actor), web.base_url(req()))


@route("/ops/channels/{code}/suspend", methods=("POST",), ops=True)
def ops_channel_suspend(code: str) -> dict:
    actor = web.ops_actor(req())
    return channels.view(channels.set_status(code, channels.SUSPENDED, actor), web.base_url(req()))


@route("/ops/channels/{code}/resume", methods=("POST",), ops=True)
def ops_channel_resume(code: str) -> dict:
    actor = web.ops_actor(req())
    return channels.view(channels.set_status(code, channels.ACTIVE, actor), web.base_url(req()))


@route("/ops/channels/{code}/secret", methods=("POST",), ops=True)
def ops_channel_rotate_secret(code: str) -> dict:
    actor = web.ops_actor(req())
    channel, secret = channels.rotate_secret(code, web.body(req(), schemas.SecretRotation).overlap_seconds, actor)
    return {"channel": channels.view(channel, web.base_url(req())), "secret": secret}


@route("/ops/channels/{code}/webhook-secret", methods=("POST",), ops=True)
def ops_channel_rotate_webhook_secret(code: str) -> dict:
    actor = web.ops_actor(req())
    channel, secret = channels.rotate_webhook_secret(code, web.body(req(), schemas.SecretRotation).overlap_seconds,
                                                     actor)
    return {"channel": channels.view(channel, web.base_url(req())), "webhook_secret": secret}


@route("/ops/channels/{code}/webhooks/parked", ops=True)
def ops_webhooks_parked(code: str) -> dict:
    web.ops_actor(req())
    return {"events": [webhooks.view(e) for e in webhooks.parked(code)]}


@route("/ops/channels/{code}/webhooks/redrive", methods=("POST",), ops=True)
def ops_webhooks_redrive(code: str) -> dict:
    return webhooks.redrive(code, web.ops_actor(req()))


@route("/ops/channels/{code}/audit", ops=True)
def ops_channel_audit(code: str) -> dict:
    web.ops_actor(req())
    channels.get(code)
    return {"audit": channels.audit_trail(code)}


@route("/ops/channels/{code}/pool", ops=True)
def ops_pool_list(code: str) -> dict:
    web.ops_actor(req())
    return {"items": pools.ops_view(code)}


@route("/ops/channels/{code}/pool/{goods_id}", methods=("PUT",), ops=True)
def ops_pool_put(code: str, goods_id: str) -> dict:
    actor = web.ops_actor(req())
    item = pools.put(code, goods_id, web.body(req(), schemas.PoolPricing), actor)
    return {"channel_code": item.channel_code, "goods_id": item.goods_id, "prices": item.prices.as_dict()}


@route("/ops/channels/{code}/pool/{goods_id}", methods=("DELETE",), ops=True)
def ops_pool_remove(code: str, goods_id: str) -> dict:
    pools.remove(code, goods_id, web.ops_actor(req()))
    return {"channel_code": code, "goods_id": goods_id, "removed": True}


@route("/ops/channels/{code}/losses", ops=True)
def ops_pool_losses(code: str) -> dict:
    web.ops_actor(req())
    return {"losses": pools.losses(code)}


@route("/ops/channels/{code}/topics", ops=True)
def ops_topic_list(code: str) -> dict:
    web.ops_actor(req())
    return {"topics": catalog.topics(channels.get(code))}


@route("/ops/channels/{code}/topics/{topic_id}", methods=("PUT",), ops=True)
def ops_topic_put(code: str, topic_id: str) -> dict:
    web.ops_actor(req())
    channels.get(code)
    data = web.body(req(), schemas.TopicInput)
    topic = catalog.put_topic(code, topic_id, data.title, data.position, data.goods_ids)
    return {"topic_id": topic.topic_id, "title": topic.title, "position": int(topic.position),
            "goods_ids": list(topic.goods_ids)}


@route("/ops/channels/{code}/topics/{topic_id}", methods=("DELETE",), ops=True)
def ops_topic_delete(code: str, topic_id: str) -> dict:
    web.ops_actor(req())
    catalog.delete_topic(code, topic_id)
    return {"topic_id": topic_id, "deleted": True}


# --- members: entry, session, catalog ------------------------------------------

@app.route("/entry/{code}", methods=["GET"])
def channel_entry(code: str) -> Response:
    """The channel's fixed entry link: verify, map the member, start a session, redirect into the store."""
    request = req()
    try:
        web.check_path_params({"code": code})
        entered = entry.enter(code, request.query_params or {})
    except DomainError as error:
        count("EntryRefused")
        logger.info("entry refused", extra={"channel": code, "code": error.code})
        return web.error_page(error) if web.wants_html(request) else web.error_response(error)
    except Exception:
        logger.exception("entry failed", extra={"channel": code})
        return web.internal_error()
    count("Entries")
    return Response(body="", status_code=302, headers={
        "Location": web.base_url(request) + entered.redirect,  # the stage too: a bare /store/… is refused there
        "Set-Cookie": sessions.cookie(entered.token),
        "Cache-Control": "no-store",
    })


def member_channel(code: str):
    """The session's member and channel; a session never reaches another channel's data."""
    session = sessions.read(web.session_token(req()))
    if session.channel_code != code:
        raise Forbidden("wrong_channel", "this session belongs to another channel")
    return session, entry.active_channel(code)


@route("/api/{code}/me")
def member_me(code: str) -> dict:
    session, _ = member_channel(code)
    return members.view(members.get(session.member_id, code))


@route("/api/{code}/catalog")
def member_catalog(code: str) -> dict:
    _, channel = member_channel(code)
    try:
        limit = int(web.query(req(), "limit", "20"))
    except ValueError:
        raise Unprocessable("validation_error", "limit must be a whole number", "limit") from None
    return catalog.list_page(channel, web.query(req(), "cursor"), limit, web.query(req(), "category"),
                             web.query(req(), "q"))


@route("/api/{code}/goods/{goods_id}")
def member_goods(code: str, goods_id: str) -> dict:
    _, channel = member_channel(code)
    return catalog.detail(channel, goods_id)


@route("/api/{code}/topics")
def member_topics(code: str) -> dict:
    _, channel = member_channel(code)
    return {"topics": catalog.topics(channel), "categories": catalog.categories(channel),
            "channel": {"code": channel.code, "name": channel.name, "points_per_yuan": int(channel.points_per_yuan),
                        "points_mode": channel.points_mode, "payment_auth": channel.payment_auth,
                        "cart_enabled": bool(channel.cart_enabled)}}


@route("/sandbox/{code}/signature-check", methods=("POST",))
def sandbox_signature_check(code: str) -> dict:
    data = web.body(req(), schemas.SignatureCheck)
    source_ip = ((req().context or {}).get("identity") or {}).get("sourceIp")
    return sandbox.check(code, data.params, data.canonical, data.method, data.path, data.body, source_ip)


@app.route("/store/{code}", methods=["GET"])
def store_page(code: str) -> Response:
    """The mobile H5 store: one page, served by this Lambda so the session cookie is same-origin."""
    return Response(body=store.page(code), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})


# --- points, quota and checkout ------------------------------------------------

@route("/ops/channels/{code}/periods", methods=("POST",), ops=True, status=201)
def ops_period_open(code: str) -> dict:
    actor = web.ops_actor(req())
    data = web.body(req(), schemas.PeriodOpen)
    quota = quotas.open_period(code, data.period_id, data.starts_at, data.ends_at, data.quota_points, actor,
                               shards=data.shards)
    return quotas.view(quota, channels.get(code))


@route("/ops/channels/{code}/periods/{period_id}/raise", methods=("POST",), ops=True)
def ops_quota_raise(code: str, period_id: str) -> dict:
    actor = web.ops_actor(req())
    quota = quotas.raise_quota(code, period_id, web.body(req(), schemas.QuotaRaise).points, actor)
    return quotas.view(quota, channels.get(code))


@route("/ops/channels/{code}/quota", ops=True)
def ops_quota(code: str) -> dict:
    web.ops_actor(req())
    channel = channels.get(code)
    return quotas.view(quotas.current(channel), channel)


@route("/ops/channels/{code}/pending-orders", ops=True)
def ops_pending_orders(code: str) -> dict:
    web.ops_actor(req())
    return {"orders": [orders.ops_view(o) for o in checkout.pending(code)]}


@route("/ops/channels/{code}/pending-orders/resolve", methods=("POST",), ops=True)
def ops_resolve_pending(code: str) -> dict:
    web.ops_actor(req())
    return checkout.resolve_pending(channels.get(code))


def partner_channel(code: str):
    """A channel's server calling us: signed per the contract, channel active."""
    channel = entry.active_channel(code)
    request = req()
    entry.verify(channel, web.partner_params(request), method=request.method, path=web.signed_path(request))
    return channel


@route("/partner/{code}/grants", methods=("POST",))
def partner_grant(code: str) -> Response:
    data = web.body(req(), schemas.GrantRequest)  # bounds first: a refused body spends no nonce
    channel = partner_channel(code)
    result = wallets.grant(channel, data.member_id, data.grant_id, data.points, data.expires_at)
    count("PointsGranted", data.points if result.created else 0)
    return Response(body=wallets.grant_view(result.grant, result.created), status_code=201 if result.created else 200,
                    headers=web.JSON)


@route("/partner/{code}/quota")
def partner_quota(code: str) -> dict:
    channel = partner_channel(code)
    return quotas.view(quotas.current(channel), channel)


@route("/partner/{code}/orders/{order_id}")
def partner_order(code: str, order_id: str) -> dict:
    return channel_orders.get(partner_channel(code), order_id)


@route("/partner/{code}/members/{member_id}/orders")
def partner_member_orders(code: str, member_id: str) -> dict:
    channel = partner_channel(code)
    return channel_orders.of_member(channel, member_id, web.query(req(), "cursor"), web.query(req(), "limit"))


@route("/api/{code}/wallet")
def member_wallet(code: str) -> dict:
    session, channel = member_channel(code)
    member = members.get(session.member_id, code)
    if channel.points_mode == "hosted":
        return dict(wallets.view(member), points_mode="hosted")
    return {"points_mode": "remote", "balance": member.remote_points}


@route("/api/{code}/otp", methods=("POST",))
def member_otp(code: str) -> dict:
    session, channel = member_channel(code)
    return payment_auth.send_otp(channel, members.get(session.member_id, code))


@route("/api/{code}/orders", methods=("POST",))
def member_checkout(code: str) -> Response:
    session, channel = member_channel(code)
    data = web.body(req(), schemas.OrderRequest)
    key = req().headers.get("idempotency-key") or ""
    lines = [checkout.LineRequest(l.goods_id, l.sku_id, l.qty) for l in data.lines]
    address = data.address.model_dump() if data.address is not None else None
    order, created = checkout.place(channel, session.member_id, key, lines, data.password, data.otp,
                                    address=address)
    if data.cart_version is not None:
        carts.emptied_by(order, session.member_id, data.cart_version)
    return Response(body=orders.member_view(order), status_code=201 if created else 200, headers=web.JSON)


@route("/api/{code}/cart")
def member_cart(code: str) -> dict:
    session, channel = member_channel(code)
    return carts.view(channel, members.get(session.member_id, code))


@route("/api/{code}/cart/lines/{goods_id}/{sku_id}", methods=("PUT",))
def member_cart_put(code: str, goods_id: str, sku_id: str) -> dict:
    session, channel = member_channel(code)
    qty = web.body(req(), schemas.CartLineQty).qty
    return carts.put_line(channel, members.get(session.member_id, code), goods_id, sku_id, qty)


@route("/api/{code}/cart/lines/{goods_id}/{sku_id}", methods=("DELETE",))
def member_cart_remove(code: str, goods_id: str, sku_id: str) -> dict:
    session, channel = member_channel(code)
    return carts.remove_line(channel, members.get(session.member_id, code), goods_id, sku_id)


@route("/api/{code}/orders")
def member_orders(code: str) -> dict:
    session, _ = member_channel(code)
    return {"orders": orders.member_views(session.member_id)}


@route("/api/{code}/orders/{order_id}")
def member_order(code: str, order_id: str) -> dict:
    session, _ = member_channel(code)
    return orders.member_view(orders.get_for_member(order_id, session.member_id))


@route("/api/{code}/parcels/{parcel_id}/receipt", methods=("POST",))
def member_parcel_receipt(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(code)
    return parcels.member_order_view(parcels.confirm_receipt(session.member_id, code, parcel_id))


@route("/api/{code}/parcels/{parcel_id}/cancel", methods=("POST",))
def member_parcel_cancel(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(code)
    return parcels.member_order_view(parcels.cancel(session.member_id, code, parcel_id))


@route("/api/{code}/parcels/{parcel_id}/refund-requests", methods=("POST",), status=201)
def member_refund_request(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(code)
    return refunds.view(refunds.request(session.member_id, code, parcel_id, web.body(req(), schemas.Reason).reason))


@route("/api/{code}/parcels/{parcel_id}/refund")
def member_refund(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(code)
    return refunds.view(refunds.for_member(session.member_id, code, parcel_id))


@route("/ops/refunds/{refund_id}", ops=True)
def ops_refund(refund_id: str) -> dict:
    web.ops_actor(req())
    return refunds.ops_view(refunds.get(refund_id))


@route("/ops/refunds/{refund_id}/approve", methods=("POST",), ops=True)
def ops_refund_approve(refund_id: str) -> dict:
    actor = web.ops_actor(req())
    return refunds.ops_view(refunds.approve(refunds.get(refund_id), actor))


@route("/ops/refunds/{refund_id}/reject", methods=("POST",), ops=True)
def ops_refund_reject(refund_id: str) -> dict:
    actor = web.ops_actor(req())
    return refunds.ops_view(refunds.reject(refunds.get(refund_id), actor, web.body(req(), schemas.Reason).reason))


@route("/ops/parcels/{parcel_id}/refund", methods=("POST",), ops=True)
def ops_parcel_refund(parcel_id: str) -> dict:
    actor = web.ops_actor(req())
    return refunds.ops_view(refunds.refund_parcel(parcel_id, actor, web.body(req(), schemas.Reason).reason))


@route("/ops/channels/{code}/pending-refunds", ops=True)
def ops_pending_refunds(code: str) -> dict:
    web.ops_actor(req())
    return {"refunds": [refunds.ops_view(r) for r in refunds.pending(channels.get(code).code)]}


@route("/ops/channels/{code}/pending-refunds/resolve", methods=("POST",), ops=True)
def ops_resolve_pending_refunds(code: str) -> dict:
    web.ops_actor(req())
    return refunds.resolve_pending(channels.get(code))


@app.schedule(Rate(5, unit=Rate.MINUTES), name="resolve_remote_orders")
def resolve_remote_orders(event) -> dict:
    """Orders whose deduction result was unknown: ask each remote channel again, never forget one; and paid
    orders whose fulfilment never started: start them (both must never be forgotten, on the same rhythm)."""
    outcome = checkout.sweep_remote()
    started = fulfilment.sweep_unstarted()
    logger.info("remote orders resolved", extra={"outcome": outcome, "fulfilment_started": started})
    return outcome


@app.schedule(Rate(5, unit=Rate.MINUTES), name="resolve_refunds")
def resolve_refunds(event) -> dict:
    """Refunds approved but not settled (the channel's answer lost, or their request died): carry each out
    or ask the channel again, never forget one."""
    outcome = refunds.sweep()
    logger.info("refunds resolved", extra={"outcome": outcome})
    return outcome


@app.schedule(Rate(1, unit=Rate.MINUTES), name="deliver_webhooks")
def deliver_webhooks(event) -> dict:
    """Order events to the channels' webhooks: whatever is due (retries, and events no commit delivered)."""
    return webhooks.sweep()


# --- order fulfilment: the Lambda tasks of the order_fulfilment state machine (infra/state_machines.py) ---

@app.lambda_function(name="fulfil_split")
def fulfil_split(event: dict, context: Any) -> dict:
    """Split: one parcel per supplier, written once."""
    return fulfilment.split(event)


@app.lambda_function(name="fulfil_deadline")
def fulfil_deadline(event: dict, context: Any) -> dict:
    """Shipping deadline: cancel and refund the parcels still unshipped."""
    return fulfilment.deadline(event)


@app.lambda_function(name="fulfil_complete")
def fulfil_complete(event: dict, context: Any) -> dict:
    """End of the receipt window: complete the shipped parcels."""
    return fulfilment.complete(event)
