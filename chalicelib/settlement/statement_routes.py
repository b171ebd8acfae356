"""Statement routes: a channel's server fetches its own statements (signed), a supplier its own (API key), ops
start a period's run, read it and any statement, and set who bears a supplier's refunds after shipment. A
fetch answers the record with a presigned link to the export (``exports``)."""
from __future__ import annotations

from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.members.callers import partner_channel
from chalicelib.settlement import books, exports, runs

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/partner/{code}/statements")
def partner_statements(code: str) -> dict:
    channel = partner_channel(req(), code)
    return {"statements": exports.list_party(f"channel.{channel.code}")}


@route("/partner/{code}/statements/{statement_id}")
def partner_statement(code: str, statement_id: str) -> dict:
    channel = partner_channel(req(), code)
    return exports.fetch(f"channel.{channel.code}", statement_id)


@route("/supplier/statements")
def supplier_statements() -> dict:
    return {"statements": exports.list_party(f"supplier.{web.supplier(req()).supplier_id}")}


@route("/supplier/statements/{statement_id}")
def supplier_statement(statement_id: str) -> dict:
    return exports.fetch(f"supplier.{web.supplier(req()).supplier_id}", statement_id)


@route("/ops/settlement/{period_id}", methods=("POST",), ops=True, status=202)
def ops_settle(period_id: str) -> dict:
    return runs.start(period_id, web.ops_actor(req()))


@route("/ops/settlement/{period_id}", ops=True)
def ops_settlement(period_id: str) -> dict:
    web.ops_actor(req())
    return runs.view(period_id)


@route("/ops/statements/{statement_id}", ops=True)
def ops_statement(statement_id: str) -> dict:
    web.ops_actor(req())
    return exports.fetch_any(statement_id)


@route("/ops/suppliers/{supplier_id}/refunds-borne-by", methods=("PUT",), ops=True)
def ops_refunds_borne_by(supplier_id: str) -> dict:
    actor = web.ops_actor(req())
    data = web.body(req())
    return books.set_bearer(supplier_id, str(data.get("borne_by") if isinstance(data, dict) else None), actor)
