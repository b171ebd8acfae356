"""Ops in the AWS console: CloudWatch dashboard custom widgets. The dashboard calls one Lambda
(``app.ops_widgets``) with the signed-in console user's own IAM permissions (``lambda:InvokeFunction`` on it is
the access control), passing the widget's ``params`` at the top level of the event beside ``widgetContext``; the
Lambda answers HTML. One widget per ops view: the daily report, partner health, goods waiting for review, parked
webhooks, the latest audit's drift. Each reads through the same service functions as the matching ``/ops`` route
(no second path to the data) and only reads: the function's role grants reads on those tables and nothing else.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from html import escape
from typing import Any, Callable

from chalicelib.channels import channels
from chalicelib.partners import reliability, webhooks
from chalicelib.core.clock import BUSINESS_TZ, business_day
from chalicelib.settlement import invariants, operating
from chalicelib.supply import goods

REPORT_DAYS, MAX_REPORT_DAYS = 7, 31
LISTED = 20  # rows a widget lists before saying how many more there are
STYLE = ("<style>table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;"
         "text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}.bad{color:#b00020;font-weight:bold}"
         ".ok{color:#2e7d32}p{margin:4px 0}</style>")


def _table(header: tuple[str, ...], rows: list[tuple], left: int = 1) -> str:
    """A table; the first ``left`` columns are text (left-aligned), the rest figures."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{escape(str(c))}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _more(total: int) -> str:
    return f"<p>… and {total - LISTED} more.</p>" if total > LISTED else ""


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.2f}"


def report_days(context: dict[str, Any], now: float) -> tuple[str, str]:
    """The business days the dashboard's time range covers (at most ``MAX_REPORT_DAYS``, ending at its end);
    the last ``REPORT_DAYS`` without one."""
    span = context.get("timeRange") or {}
    end_ms, start_ms = span.get("end"), span.get("start")
    last = business_day(end_ms / 1000 if isinstance(end_ms, (int, float)) else now)
    first = business_day(start_ms / 1000) if isinstance(start_ms, (int, float)) else \
        (date.fromisoformat(last) - timedelta(days=REPORT_DAYS - 1)).isoformat()
    earliest = (date.fromisoformat(last) - timedelta(days=MAX_REPORT_DAYS - 1)).isoformat()
    return max(first, earliest), last


def daily_report(context: dict[str, Any], now: float) -> str:
    """Per channel over the dashboard's days: orders, GMV, margin, refunds, refusals, entries; partner API errors."""
    first, last = report_days(context, now)
    rows = []
    for channel in channels.list_all():
        report = operating.channel_report(channel.code, first, last)
        t, api = report["totals"], report["partner_api"]
        rate = "–" if api["error_rate"] is None else f"{api['error_rate'] * 100:.1f}%"
        rows.append((channel.code, channel.name, t["orders"], t["points"], _yuan(t["gmv"]), _yuan(t["margin"]),
                     t["refunds"], t["refused"], t["entries"], f"{api['errors']}/{api['calls']} ({rate})"))
    header = ("channel", "name", "orders", "points", "GMV ¥", "margin ¥", "refunds", "refused", "entries",
              "partner API errors (24 h)")
    return (f"<p>Business days (UTC+8) {escape(first)} to {escape(last)}.</p>"
            + (_table(header, rows, left=2) if rows else "<p>No channels yet.</p>"))


def partner_health(context: dict[str, Any], now: float) -> str:
    """Every channel's partner APIs: breaker state, calls and errors over the last hour and day."""
    rows = []
    for channel in channels.list_all():
        health = reliability.health(channel.code, now)
        for api, seen in sorted(health["apis"].items()):
            state = seen["breaker"]["state"] + (" (refusing)" if seen["breaker"]["refusing"] else "")
            hour, day = seen["last_hour"], seen["last_day"]
            rows.append((channel.code, api, state, hour["calls"], hour["errors"], day["calls"], day["errors"],
                         "–" if day["p95_ms"] is None else day["p95_ms"]))
    if not rows:
        return "<p>No partner API calls in the last day.</p>"
    open_ = sum(1 for r in rows if not r[2].startswith("closed"))
    verdict = (f'<p class="bad">{open_} breaker(s) not closed.</p>' if open_
               else '<p class="ok">All breakers closed.</p>')
    return verdict + _table(("channel", "API", "breaker", "calls 1 h", "errors 1 h", "calls 24 h", "errors 24 h",
                             "p95 ms 24 h"), rows, left=3)


def review(context: dict[str, Any], now: float) -> str:
    """Goods waiting for review, newest first."""
    waiting = goods.list_by_status(goods.PENDING)
    if not waiting:
        return '<p class="ok">No goods waiting for review.</p>'
    rows = [(g.goods_id, g.title, g.supplier_id, g.category, g.created_at) for g in waiting[:LISTED]]
    return (f"<p><b>{len(waiting)}</b> goods waiting for review "
            f"(<code>python -m tools.ops review</code>, <code>goods-approve</code>).</p>"
            + _table(("goods", "title", "supplier", "category", "published"), rows, left=5) + _more(len(waiting)))


def parked_webhooks(context: dict[str, Any], now: float) -> str:
    """Order events parked after their last webhook retry, per channel, oldest first."""
    rows, total = [], 0
    for channel in channels.list_all():
        parked = webhooks.parked(channel.code)
        total += len(parked)
        rows += [(channel.code, e.event_id, e.kind, int(e.attempts or 0), e.last_error or "", e.created_at)
                 for e in parked]
    if not rows:
        return '<p class="ok">No parked webhooks.</p>'
    return (f'<p class="bad">{total} parked event(s): redrive with <code>python -m tools.ops webhooks-redrive '
            f"&lt;channel&gt;</code> once the channel's endpoint works.</p>"
            + _table(("channel", "event", "kind", "attempts", "last error", "created"), rows[:LISTED], left=3)
            + _more(total))


def audit_drift(context: dict[str, Any], now: float) -> str:
    """The latest invariant audit: when, what it checked, and each drift it found."""
    run = invariants.latest()["run"]
    if run is None:
        return "<p>The invariant audit has not run yet (hourly).</p>"
    checked = ", ".join(f"{v} {k}" for k, v in sorted(run["checked"].items()))
    head = (f"<p>Last run {escape(str(run['started_at']))} to {escape(str(run['finished_at']))}: checked "
            f"{escape(checked)}.</p>")
    if not run["drifts"]:
        return head + '<p class="ok">No drift.</p>'
    rows = [(f["subject"], f["channel"], c["check"], c["expected"], c["found"])
            for f in run["findings"] for c in f["checks"]]
    return (head + f'<p class="bad">{run["drifts"]} drift(s) (listed: {run["listed"]}).</p>'
            + _table(("subject", "channel", "check", "expected (items)", "found (counter)"), rows, left=3))


WIDGETS: dict[str, tuple[str, Callable[[dict[str, Any], float], str]]] = {
    "daily_report": ("Daily report", daily_report),
    "partner_health": ("Partner health", partner_health),
    "review": ("Goods waiting for review", review),
    "parked_webhooks": ("Parked webhooks", parked_webhooks),
    "audit_drift": ("Latest invariant audit", audit_drift),
}
DESCRIBE = ("Channel Mall ops widgets. Params: `widget`, one of "
            + ", ".join(f"`{name}` ({title})" for name, (title, _) in WIDGETS.items()) + ".")


def handle(event: dict[str, Any], now: float | None = None) -> str:
    """The HTML for the widget the event's ``widget`` param names (the console's ``describe`` call: what the
    params are). An unknown widget is answered in the widget, never with a stack trace."""

    if event.get("describe"):
        return DESCRIBE
    name = event.get("widget")
    if name not in WIDGETS:
        return STYLE + f'<p class="bad">Unknown widget {escape(str(name))}: {escape(DESCRIBE)}</p>'
    _, render = WIDGETS[name]
    at = time.time() if now is None else now
    stamp = datetime.fromtimestamp(at, BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
    return STYLE + render(event.get("widgetContext") or {}, at) + f"<p><small>As of {stamp} (UTC+8).</small></p>"
