"""Points and checkout routes: quota periods, grants, wallets, carts and the checkout itself."""
from __future__ import annotations

from chalice import Response

from chalicelib.billing import metering
from chalicelib.callers.callers import member_channel, ops_actor, partner_channel
from chalicelib.channels import catalog, channels, locales
from chalicelib.checkout import carts, checkout, quotas, remote_balance, wallets
from chalicelib.core import web
from chalicelib.core.errors import Unprocessable
from chalicelib.core.observability import count
from chalicelib.core.routing import Routes
from chalicelib.core.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)
from chalicelib.members import members
from chalicelib.orders import orders

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels/{code}/periods", methods=("POST",), ops=True, status=201)
def ops_period_open(code: str) -> dict:
    actor = ops_actor(req())
    data = web.body(req(), schemas.PeriodOpen)
    quota = channels.open_period(code, data.period_id, data.starts_at, data.ends_at, data.quota_points, actor,
                                 shards=data.shards)
    return quotas.view(quota, channels.get(code))


@route("/ops/channels/{code}/periods/{period_id}/raise", methods=("POST",), ops=True)
def ops_quota_raise(code: str, period_id: str) -> dict:
    actor = ops_actor(req())
    quota = quotas.raise_quota(code, period_id, web.body(req(), schemas.QuotaRaise).points, actor)
    return quotas.view(quota, channels.get(code))


@route("/ops/channels/{code}/quota", ops=True)
def ops_quota(code: str) -> dict:
    ops_actor(req())
    channel = channels.get(code)
    return quotas.view(quotas.current(channel), channel)


@route("/ops/channels/{code}/pending-orders", ops=True)
def ops_pending_orders(code: str) -> dict:
    ops_actor(req())
    return {"orders": [orders.ops_view(o) for o in checkout.pending(code)]}


@route("/ops/channels/{code}/pending-orders/resolve", methods=("POST",), ops=True)
def ops_resolve_pending(code: str) -> dict:
    ops_actor(req())
    return checkout.resolve_pending(channels.get(code))


@route("/partner/{code}/grants", methods=("POST",))
def partner_grant(code: str) -> Response:
    data = web.body(req(), schemas.GrantRequest)  # bounds first: a refused body spends no nonce
    channel = partner_channel(req(), code)
    result = wallets.grant(channel, data.member_id, data.grant_id, data.points, data.expires_at)
    count("PointsGranted", data.points if result.created else 0)
    return Response(body=wallets.grant_view(result.grant, result.created), status_code=201 if result.created else 200,
                    headers=web.JSON)


@route("/partner/{code}/quota")
def partner_quota(code: str) -> dict:
    channel = partner_channel(req(), code)
    return quotas.view(quotas.current(channel), channel)


@route("/api/{code}/wallet")
def member_wallet(code: str) -> dict:
    session, channel = member_channel(req(), code)
    fresh = web.query(req(), "fresh")
    if fresh not in (None, "1"):
        raise Unprocessable("validation_error", "fresh must be 1 (or left out)", "fresh")
    member = members.get(session.member_id, code)
    if channel.points_mode == "hosted":
        return dict(wallets.view(member), points_mode="hosted")
    # The channel keeps these points: its own figure, asked again when ``fresh`` (after money moved) or stale.
    return dict(remote_balance.current(channel, member, fresh == "1"), points_mode="remote")


@route("/api/{code}/orders", methods=("POST",))
def member_checkout(code: str) -> Response:
    session, channel = member_channel(req(), code, cached=True)  # suspension: the quota shards' condition
    data = web.body(req(), schemas.OrderRequest)
    key = req().headers.get("idempotency-key") or ""
    lines = [checkout.LineRequest(l.goods_id, l.sku_id, l.qty, l.sale_id) for l in data.lines]
    address = data.address.model_dump() if data.address is not None else None
    with metering.refusals(channel.code):  # refusals by reason, in the channel's operating data
        order, created = checkout.place(channel, session.member_id, key, lines, data.password, data.otp,
                                        address=address)
    if created and order.status == checkout.FAILED:  # the channel's wallet refused the deduction
        metering.refused(channel.code, "insufficient_points")
    if data.cart_version is not None:
        carts.emptied_by(order, session.member_id, data.cart_version)
    # A new order has no parcels yet (its split starts after the commit): no read for them on the request path.
    view = orders.member_view(order, [] if created else None)
    return Response(body=view, status_code=201 if created else 200, headers=web.JSON)


@route("/api/{code}/cart")
def member_cart(code: str) -> dict:
    session, channel = member_channel(req(), code)
    locale = _locale(channel)
    return catalog.in_language([carts.view(channel, members.get(session.member_id, code))], locale)[0]


@route("/api/{code}/cart/lines/{goods_id}/{sku_id}", methods=("PUT",))
def member_cart_put(code: str, goods_id: str, sku_id: str) -> dict:
    session, channel = member_channel(req(), code)
    qty = web.body(req(), schemas.CartLineQty).qty
    locale = _locale(channel)
    return catalog.in_language([carts.put_line(channel, members.get(session.member_id, code), goods_id, sku_id, qty)],
                               locale)[0]


@route("/api/{code}/cart/lines/{goods_id}/{sku_id}", methods=("DELETE",))
def member_cart_remove(code: str, goods_id: str, sku_id: str) -> dict:
    session, channel = member_channel(req(), code)
    locale = _locale(channel)
    return catalog.in_language([carts.remove_line(channel, members.get(session.member_id, code), goods_id, sku_id)],
                               locale)[0]


def _locale(channel) -> str:
    """The member's language for the cart's titles (``lang``, refused when unknown; else the channel's)."""
    return locales.requested(web.query(req(), "lang"), channel.default_locale)
