"""Partner routes: ops look at and redrive a channel's parked webhooks."""
from __future__ import annotations

from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.partners import webhooks

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels/{code}/webhooks/parked", ops=True)
def ops_webhooks_parked(code: str) -> dict:
    web.ops_actor(req())
    return {"events": [webhooks.view(e) for e in webhooks.parked(code)]}


@route("/ops/channels/{code}/webhooks/redrive", methods=("POST",), ops=True)
def ops_webhooks_redrive(code: str) -> dict:
    return webhooks.redrive(code, web.ops_actor(req()))
