"""Flash-sale routes: ops schedule and change sales; members see the channel's upcoming and running sales.
Buying one is the ordinary checkout (``POST /api/{code}/orders``) with the line's ``sale_id``."""
from __future__ import annotations

from chalicelib.callers.callers import member_channel, ops_actor
from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.sales import sales

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


def _bodies():
    """The sale request bodies, loaded with pydantic on the first request that needs them."""
    from chalicelib.sales import requests as bodies

    return bodies


@route("/ops/channels/{code}/sales", methods=("POST",), ops=True, status=201)
def ops_sale_schedule(code: str) -> dict:
    actor = ops_actor(req())
    return sales.ops_view(sales.schedule(code, web.body(req(), _bodies().SaleCreate), actor))


@route("/ops/channels/{code}/sales", ops=True)
def ops_sales(code: str) -> dict:
    ops_actor(req())
    return {"sales": sales.list_ops(code)}


@route("/ops/channels/{code}/sales/{sale_id}", ops=True)
def ops_sale(code: str, sale_id: str) -> dict:
    ops_actor(req())
    return sales.ops_view(sales.get(code, sale_id))


@route("/ops/channels/{code}/sales/{sale_id}", methods=("PATCH",), ops=True)
def ops_sale_edit(code: str, sale_id: str) -> dict:
    actor = ops_actor(req())
    return sales.ops_view(sales.edit(code, sale_id, web.body(req(), _bodies().SaleEdit), actor))


@route("/ops/channels/{code}/sales/{sale_id}/close", methods=("POST",), ops=True)
def ops_sale_close(code: str, sale_id: str) -> dict:
    """Leftovers back to stock now (the 5-minute sweep does it too); nothing before the end."""
    ops_actor(req())
    sale = sales.get(code, sale_id)
    returned = sales.close(sale)
    return dict(sales.ops_view(sales.get(code, sale_id)), returned_now=returned)


@route("/api/{code}/sales")
def member_sales(code: str) -> dict:
    session, _ = member_channel(req(), code)
    return sales.member_view(code, session.member_id)
