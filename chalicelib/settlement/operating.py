"""Operating data: each channel's day-by-day figures, as ops read them (JSON, CSV, an HTML report page).

Everything comes from the daily counters ``billing.metering`` raises as events happen (one Query per counter
shard for any range of days, no scans), plus the outbound partner-API figures ``partners.reliability`` keeps
per minute for a week (shown over the last 24 hours: that store has no daily roll-up to read per day).
"""
from __future__ import annotations

import csv
import io
import time
from datetime import date, timedelta
from html import escape
from typing import Any

from chalicelib.billing import metering
from chalicelib.core.clock import business_day
from chalicelib.core.errors import BadRequest
from chalicelib.partners import reliability

REASONS = ("quota", "balance", "stock", "period", "password")
COLUMNS = ("day", "entries", "month_members", "orders", "points", "gmv", "cost", "margin", "refunds",
           "refund_points", "refund_amount", *(f"refused_{r}" for r in REASONS), "refused", "calls", "calls_refused")
MAX_DAYS = 366
REPORT_DAYS = 30


def _date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest("invalid_date", f"{field} must be a date as YYYY-MM-DD", field) from None


def date_range(first: str | None, last: str | None, now: float | None = None) -> tuple[str, str]:
    """The days asked for (``from``/``to``, inclusive); by default the last ``REPORT_DAYS`` to today."""
    end = _date(last, "to") if last else date.fromisoformat(business_day(now))
    start = _date(first, "from") if first else end - timedelta(days=REPORT_DAYS - 1)
    if start > end:
        raise BadRequest("invalid_range", "from must not be after to", "from")
    if (end - start).days >= MAX_DAYS:
        raise BadRequest("range_too_long", f"ask for at most {MAX_DAYS} days at a time", "from")
    return start.isoformat(), end.isoformat()


def _row(day: str, counters: dict[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {"day": day, **dict.fromkeys(metering.COUNTERS, 0), **counters}
    row["margin"] = row["gmv"] - row["cost"]
    row["refused"] = sum(row[f"refused_{r}"] for r in REASONS)
    return {name: row[name] for name in COLUMNS}


def partner_api(channel_code: str, now: float | None = None) -> dict[str, Any]:
    """Our calls to the channel's API over the last 24 hours: calls, errors, error rate, p95 latency."""
    now = time.time() if now is None else now
    figures = reliability.stats(channel_code, None, int(now - 86400))
    return {"window": "last_24h", **{k: figures[k] for k in ("calls", "errors", "error_rate", "p95_ms")}}


def channel_report(channel_code: str, first: str, last: str) -> dict[str, Any]:
    """Every day from ``first`` to ``last``, days without events as zeros, and the totals."""
    found = metering.days(channel_code, first, last)
    day, end, rows = date.fromisoformat(first), date.fromisoformat(last), []
    while day <= end:
        rows.append(_row(day.isoformat(), found.get(day.isoformat(), {})))
        day += timedelta(days=1)
    totals = {name: sum(r[name] for r in rows) for name in COLUMNS if name != "day"}
    return {"channel": channel_code, "from": first, "to": last, "days": rows, "totals": totals,
            "partner_api": partner_api(channel_code)}


def csv_text(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report["days"]:
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue()


# --- the HTML report page -----------------------------------------------------------------------------------

def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def chart(rows: list[dict[str, Any]], width: int = 640, height: int = 170) -> str:
    """An inline SVG of the days: orders as bars (left scale), GMV as a line (right scale); no script."""
    pad_l, pad_r, pad_t, pad_b = 40, 70, 12, 22
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(len(rows), 1)
    step = inner_w / n
    top_orders = max([r["orders"] for r in rows] + [1])
    top_gmv = max([r["gmv"] for r in rows] + [1])
    bottom = pad_t + inner_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="orders and GMV per day">',
             f'<line x1="{pad_l}" y1="{bottom}" x2="{pad_l + inner_w}" y2="{bottom}" stroke="#999"/>']
    points = []
    for i, r in enumerate(rows):
        h = inner_h * r["orders"] / top_orders
        x = pad_l + i * step
        parts.append(f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{bottom - h:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="#4e79a7"><title>{r["day"]}: {r["orders"]} orders</title></rect>')
        points.append(f"{x + step / 2:.1f},{bottom - inner_h * r['gmv'] / top_gmv:.1f}")
    parts.append(f'<polyline class="gmv" points="{" ".join(points)}" fill="none" stroke="#e15759" stroke-width="2"/>')
    label = 'font-size="11" font-family="sans-serif"'
    parts += [f'<text x="{pad_l - 4}" y="{pad_t + 10}" text-anchor="end" {label} fill="#4e79a7">{top_orders}</text>',
              f'<text x="{pad_l - 4}" y="{bottom}" text-anchor="end" {label}>0</text>',
              f'<text x="{pad_l + inner_w + 4}" y="{pad_t + 10}" {label} fill="#e15759">{escape(_yuan(top_gmv))}</text>',
              f'<text x="{pad_l}" y="{height - 6}" {label}>{escape(rows[0]["day"]) if rows else ""}</text>',
              f'<text x="{pad_l + inner_w}" y="{height - 6}" text-anchor="end" {label}>'
              f'{escape(rows[-1]["day"]) if rows else ""}</text>', "</svg>"]
    return "".join(parts)


TABLE = (("day", "Day", str), ("entries", "Entries", str), ("orders", "Orders", str), ("points", "Points", str),
         ("gmv", "GMV", _yuan), ("cost", "Cost", _yuan), ("margin", "Margin", _yuan), ("refunds", "Refunds", str),
         ("refused", "Refused", str), ("calls", "API calls in", str))


def _section(name: str, report: dict[str, Any]) -> str:
    totals, partner = report["totals"], report["partner_api"]
    rate = "–" if partner["error_rate"] is None else f"{partner['error_rate'] * 100:.1f}%"
    p95 = "–" if partner["p95_ms"] is None else f"{partner['p95_ms']} ms"
    refused = ", ".join(f"{r} {totals[f'refused_{r}']}" for r in REASONS)
    head = "".join(f"<th>{title}</th>" for _, title, _ in TABLE)
    body = "".join("<tr>" + "".join(f"<td>{escape(fmt(row[key]))}</td>" for key, _, fmt in TABLE) + "</tr>"
                   for row in reversed(report["days"]))
    return (f'<section class="channel" id="channel-{escape(report["channel"])}">'
            f'<h2>{escape(name)} <small>{escape(report["channel"])}</small></h2>'
            f'<p class="summary">{totals["orders"]} orders, GMV {escape(_yuan(totals["gmv"]))}, margin '
            f'{escape(_yuan(totals["margin"]))}, {totals["refunds"]} refunds; refused: {escape(refused)}; '
            f'{totals["calls"]} API calls in. Our calls to its API, last 24 h: {partner["calls"]}, errors {rate}, '
            f'p95 {escape(p95)}.</p>'
            f'{chart(report["days"])}<p class="legend"><span style="color:#4e79a7">■ orders</span> '
            f'<span style="color:#e15759">— GMV</span></p>'
            f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')


def html_page(channels: list[tuple[str, dict[str, Any]]], first: str, last: str) -> str:
    """The report page: one section per (channel name, report)."""
    style = ("body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;"
             "margin-top:2em}small{color:#777;font-weight:normal}table{border-collapse:collapse;font-size:.85em}"
             "td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}th{background:#f4f4f4}"
             ".summary{max-width:60em}.legend{font-size:.8em;margin:0}")
    sections = "".join(_section(name, report) for name, report in channels) or "<p>No channels yet.</p>"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Operating data</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{style}</style></head>'
            f'<body><h1>Operating data, {escape(first)} to {escape(last)}</h1>'
            f'<p>Per channel and business day (UTC+8). Amounts in yuan; margin is GMV at channel prices less cost '
            f'at settlement prices.</p>{sections}</body></html>')
