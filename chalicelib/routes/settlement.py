"""Settlement routes: statements (a channel's server fetches its own, signed; a supplier its own, with its key;
ops start a period's run and read it), reconciliation against the channel's ledger, the invariant audit, and the
operating data and report page. A statement fetch answers the record with a presigned link to its export."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers.callers import ops_actor, partner_channel, supplier_of
from chalicelib.channels import channels
from chalicelib.core import web
from chalicelib.core.errors import PayloadTooLarge
from chalicelib.core.routing import Routes
from chalicelib.settlement import books, exports, invariants, ledgers, operating, provisional, runs, statement_page
from chalicelib.settlement.models import Statement

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels/{code}/operating", ops=True)
def ops_operating(code: str) -> dict | Response:
    """Per business day from ``from`` to ``to`` (YYYY-MM-DD, inclusive; default the last 30 days), as JSON or,
    with ``format=csv``, as a CSV file."""
    ops_actor(req())
    channels.get(code)
    first, last = operating.date_range(web.query(req(), "from"), web.query(req(), "to"))
    report = operating.channel_report(code, first, last)
    if web.query(req(), "format") == "csv":
        return Response(body=operating.csv_text(report), status_code=200, headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="operating-{code}-{first}-{last}.csv"'})
    return report


@route("/ops/reports/operating", ops=True)
def ops_operating_report() -> Response:
    """Every channel's last 30 days (or those named in ``channels=a,b``): a chart and a table each (HTML, no
    script)."""
    ops_actor(req())
    first, last = operating.date_range(None, None)
    named = web.query(req(), "channels")
    if named:
        codes = named.split(",")[:50]
        for code in codes:
            web.check_path_params({"channels": code})
        shown = [channels.get(code) for code in codes]
    else:
        shown = channels.list_all()
    page = operating.html_page([(c.name, operating.channel_report(c.code, first, last)) for c in shown],
                               first, last)
    return Response(body=page, status_code=200, headers={"Content-Type": "text/html; charset=utf-8",
                                                         "Cache-Control": "no-store"})


# --- reconciliation against the channel's ledger; the invariant audit ----------------------------------------

@route("/partner/{code}/ledgers/{period_id}", methods=("POST",), status=201,
       content_types=("application/x-ndjson", "application/json"))
def partner_ledger_post(code: str, period_id: str) -> Response:
    """The channel's ledger of the period as JSON lines: 201 with the result, or 200 with the one already made
    from the same bytes. Bounds and rows first: a refused ledger spends no nonce and writes nothing."""
    data = req().raw_body or b""
    if len(data) > web.BODY_MAX_BYTES:
        raise PayloadTooLarge("body_too_large", f"a posted ledger is at most {web.BODY_MAX_BYTES} bytes; "
                              "upload a larger one as CSV (upload-link)", "body")
    rows = ledgers.parse_post(data)
    channel = partner_channel(req(), code)
    item, created = ledgers.take(channel, period_id, data, ledgers.POST, rows)
    return Response(body=ledgers.created_view(item, created), status_code=201 if created else 200, headers=web.JSON)


@route("/partner/{code}/ledgers/{period_id}/upload-link", methods=("POST",), status=201)
def partner_ledger_link(code: str, period_id: str) -> dict:
    """A signed S3 POST for the period's ledger as CSV; the result is read back by the upload or the period."""
    return ledgers.request_link(partner_channel(req(), code), period_id)


@route("/partner/{code}/ledger-uploads/{upload_id}")
def partner_ledger_upload(code: str, upload_id: str) -> dict:
    return ledgers.upload_view(ledgers.own_upload(partner_channel(req(), code), upload_id))


@route("/partner/{code}/reconciliations/{period_id}")
def partner_reconciliation(code: str, period_id: str) -> dict:
    """The channel's own latest result for the period (or ``result_id``), a page of differences at a time."""
    channel = partner_channel(req(), code)
    return ledgers.view(channel.code, period_id, web.query(req(), "result_id"), web.query(req(), "cursor"),
                        web.query(req(), "limit"))


@route("/ops/channels/{code}/reconciliations/{period_id}", ops=True)
def ops_reconciliation(code: str, period_id: str) -> dict:
    ops_actor(req())
    channels.get(code)
    return ledgers.view(code, period_id, web.query(req(), "result_id"), web.query(req(), "cursor"),
                        web.query(req(), "limit"), ops=True)


@route("/ops/audit/latest", ops=True)
def ops_audit_latest() -> dict:
    """The last invariant audit: what it checked and each drift it found."""
    ops_actor(req())
    return invariants.latest()


# --- statements ------------------------------------------------------------------------------------------

@route("/partner/{code}/statements")
def partner_statements(code: str) -> dict:
    channel = partner_channel(req(), code)
    return {"statements": exports.list_party(f"channel.{channel.code}")}


@route("/partner/{code}/statements/current")
def partner_statement_current(code: str) -> dict:
    """The running period's provisional statement (never exported, never a statement to pay by)."""
    channel = partner_channel(req(), code)
    return provisional.current(f"channel.{channel.code}")


@route("/partner/{code}/statements/{statement_id}")
def partner_statement(code: str, statement_id: str) -> dict:
    channel = partner_channel(req(), code)
    return exports.fetch(f"channel.{channel.code}", statement_id)


@route("/supplier/statements")
def supplier_statements() -> dict:
    return {"statements": exports.list_party(f"supplier.{supplier_of(req()).supplier_id}")}


@route("/supplier/statements/current")
def supplier_statement_current() -> dict:
    """The supplier's running month, provisional (never exported, never a statement to pay by)."""
    return provisional.current(f"supplier.{supplier_of(req()).supplier_id}")


@route("/supplier/statements/{statement_id}")
def supplier_statement(statement_id: str) -> dict:
    return exports.fetch(f"supplier.{supplier_of(req()).supplier_id}", statement_id)


@route("/ops/settlement", ops=True)
def ops_settleable() -> dict:
    """The settlement periods that may be settled now (the last two months' months and weeks), with their state."""
    ops_actor(req())
    return {"periods": runs.settleable()}


@route("/ops/settlement/{period_id}", methods=("POST",), ops=True, status=202)
def ops_settle(period_id: str) -> dict:
    return runs.start(period_id, ops_actor(req()))


@route("/ops/settlement/{period_id}", ops=True)
def ops_settlement(period_id: str) -> dict:
    ops_actor(req())
    return runs.view(period_id)


@route("/ops/statements/{statement_id}", ops=True)
def ops_statement(statement_id: str) -> dict | Response:
    """The statement with its download link; a browser gets it as a page, its lines read from the export."""
    ops_actor(req())
    shown = exports.fetch_any(statement_id)
    if web.wants_html(req()):
        page = statement_page.html(Statement.get(statement_id))
        return Response(body=page, status_code=200, headers={"Content-Type": "text/html; charset=utf-8",
                                                             "Cache-Control": "no-store"})
    return shown


@route("/ops/suppliers/{supplier_id}/refunds-borne-by", methods=("PUT",), ops=True)
def ops_refunds_borne_by(supplier_id: str) -> dict:
    actor = ops_actor(req())
    data = web.body(req())
    return books.set_bearer(supplier_id, str(data.get("borne_by") if isinstance(data, dict) else None), actor)
