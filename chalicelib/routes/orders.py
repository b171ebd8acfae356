"""Order routes: members' orders, parcels and refunds; suppliers' parcels, shipping and refunds; ops refunds; channels' order reads."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers.callers import member_channel, ops_actor, partner_channel, supplier_actor, supplier_of
from chalicelib.channels import channels
from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.core.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)
from chalicelib.orders import channel_orders, orders, parcels, refunds
from chalicelib.orders.parcel_states import CANCELLING

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/supplier/parcels")
def supplier_parcels() -> dict:
    supplier = supplier_of(req())
    params = req().query_params or {}
    return parcels.list_own(supplier.supplier_id, params.get("state"), params.get("since"), params.get("until"),
                            params.get("cursor"), params.get("limit"))


@route("/supplier/parcels/{parcel_id}")
def supplier_parcel(parcel_id: str) -> dict:
    return parcels.supplier_detail(supplier_of(req()).supplier_id, parcel_id)


@route("/supplier/parcels/{parcel_id}/ship", methods=("POST",))
def supplier_parcel_ship(parcel_id: str) -> dict:
    supplier = supplier_of(req())
    data = web.body(req(), schemas.Shipment)
    return parcels.supplier_view(parcels.ship(supplier.supplier_id, parcel_id, data.carrier, data.tracking_no))


@route("/supplier/refunds")
def supplier_refunds() -> dict:
    return {"refunds": refunds.list_for_supplier(supplier_of(req()).supplier_id, web.query(req(), "state"))}


@route("/supplier/refunds/{refund_id}/approve", methods=("POST",))
def supplier_refund_approve(refund_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    return refunds.supplier_view(refunds.approve(refunds.for_supplier_to_decide(supplier.supplier_id, refund_id),
                                                 actor))


@route("/supplier/refunds/{refund_id}/reject", methods=("POST",))
def supplier_refund_reject(refund_id: str) -> dict:
    supplier, actor = supplier_actor(req())
    reason = web.body(req(), schemas.Reason).reason
    return refunds.supplier_view(refunds.reject(refunds.for_supplier_to_decide(supplier.supplier_id, refund_id),
                                                actor, reason))


@route("/partner/{code}/orders/{order_id}")
def partner_order(code: str, order_id: str) -> dict:
    return channel_orders.get(partner_channel(req(), code), order_id)


@route("/partner/{code}/members/{member_id}/orders")
def partner_member_orders(code: str, member_id: str) -> dict:
    channel = partner_channel(req(), code)
    return channel_orders.of_member(channel, member_id, web.query(req(), "cursor"), web.query(req(), "limit"))


@route("/api/{code}/orders")
def member_orders(code: str) -> dict:
    session, _ = member_channel(req(), code)
    return {"orders": orders.member_views(session.member_id)}


@route("/api/{code}/orders/{order_id}")
def member_order(code: str, order_id: str) -> dict:
    session, _ = member_channel(req(), code)
    return orders.member_view(orders.get_for_member(order_id, session.member_id))


@route("/api/{code}/parcels/{parcel_id}/receipt", methods=("POST",))
def member_parcel_receipt(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(req(), code)
    return orders.member_order_view(parcels.confirm_receipt(session.member_id, code, parcel_id))


@route("/api/{code}/parcels/{parcel_id}/cancel", methods=("POST",))
def member_parcel_cancel(code: str, parcel_id: str) -> dict | Response:
    """200 once cancelled; 202 while a remote channel has not yet given the points back (the parcel is
    ``cancelling``: not shippable, not cancellable again), the same order view either way."""
    session, _ = member_channel(req(), code)
    parcel = refunds.cancel(session.member_id, code, parcel_id)
    view = orders.member_order_view(parcel)
    return Response(body=view, status_code=202, headers=web.JSON) if parcel.state == CANCELLING else view


@route("/api/{code}/parcels/{parcel_id}/refund-requests", methods=("POST",), status=201)
def member_refund_request(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(req(), code)
    return refunds.view(refunds.request(session.member_id, code, parcel_id, web.body(req(), schemas.Reason).reason))


@route("/api/{code}/parcels/{parcel_id}/refund")
def member_refund(code: str, parcel_id: str) -> dict:
    session, _ = member_channel(req(), code)
    return refunds.view(refunds.for_member(session.member_id, code, parcel_id))


@route("/ops/refunds/{refund_id}", ops=True)
def ops_refund(refund_id: str) -> dict:
    ops_actor(req())
    return refunds.ops_view(refunds.get(refund_id))


@route("/ops/refunds/{refund_id}/approve", methods=("POST",), ops=True)
def ops_refund_approve(refund_id: str) -> dict:
    actor = ops_actor(req())
    return refunds.ops_view(refunds.approve(refunds.get(refund_id), actor))


@route("/ops/refunds/{refund_id}/reject", methods=("POST",), ops=True)
def ops_refund_reject(refund_id: str) -> dict:
    actor = ops_actor(req())
    return refunds.ops_view(refunds.reject(refunds.get(refund_id), actor, web.body(req(), schemas.Reason).reason))


@route("/ops/parcels/{parcel_id}/refund", methods=("POST",), ops=True)
def ops_parcel_refund(parcel_id: str) -> dict:
    actor = ops_actor(req())
    return refunds.ops_view(refunds.refund_parcel(parcel_id, actor, web.body(req(), schemas.Reason).reason))


@route("/ops/channels/{code}/pending-refunds", ops=True)
def ops_pending_refunds(code: str) -> dict:
    ops_actor(req())
    return {"refunds": [refunds.ops_view(r) for r in refunds.pending(channels.get(code).code)]}


@route("/ops/channels/{code}/pending-refunds/resolve", methods=("POST",), ops=True)
def ops_resolve_pending_refunds(code: str) -> dict:
    ops_actor(req())
    return refunds.resolve_pending(channels.get(code))
