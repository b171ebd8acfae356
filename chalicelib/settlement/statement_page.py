"""A statement as an ops page: its record's totals and its export's lines, read from the export itself (the
bytes whose SHA-256 the record holds), with the short-lived download link. No second calculation."""
from __future__ import annotations

import csv
import io
from html import escape

from chalicelib.settlement.models import Statement
from chalicelib.settlement import exports

STYLE = ("body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:.85em}"
         "td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}th{background:#f4f4f4}"
         "tr.total td{font-weight:bold}.wrap{overflow-x:auto}code{word-break:break-all}")


def html(statement: Statement) -> str:
    shown = exports.view(statement, with_link=True)
    rows = list(csv.reader(io.StringIO(exports.get(statement.export_key).decode("utf-8"))))
    header, lines = rows[0], rows[1:]
    cells = "".join(
        f'<tr class="{"total" if row and row[0] == "total" else ""}">' + "".join(f"<td>{escape(c)}</td>" for c in row)
        + "</tr>" for row in lines)
    totals = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in shown["totals"].items())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(statement.statement_id)}'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style>'
            f"</head><body><h1>Statement {escape(statement.statement_id)}</h1>"
            f"<p>Settlement period <b>{escape(shown['period_id'])}</b> ({escape(str(shown['first_day']))} to "
            f"{escape(str(shown['last_day']))}), {escape(shown['party'])}. Amounts in fen. "
            f"SHA-256 of the export: <code>{escape(shown['sha256'])}</code>. "
            f'<a href="{escape(shown["download_url"])}">Download the CSV</a> (link valid '
            f"{exports.LINK_SECONDS // 60} minutes).</p>"
            f'<div class="wrap"><table><tr>{"".join(f"<th>{escape(c)}</th>" for c in header)}</tr>{cells}</table></div>'
            f"<h2>Totals</h2><table>{totals}</table></body></html>")
