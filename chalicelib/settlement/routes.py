"""Settlement routes: ops read each channel's operating data (JSON, CSV) and the operating report page."""
from __future__ import annotations

from chalice import Response

from chalicelib.channels import channels
from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.settlement import operating

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/ops/channels/{code}/operating", ops=True)
def ops_operating(code: str) -> dict | Response:
    """Per business day from ``from`` to ``to`` (YYYY-MM-DD, inclusive; default the last 30 days), as JSON or,
    with ``format=csv``, as a CSV file."""
    web.ops_actor(req())
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
    web.ops_actor(req())
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
