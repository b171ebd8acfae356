"""Operating data (``billing.metering`` → ``settlement.operating``): counters raised as events happen, exact
under concurrent orders and replays, refusals by reason, refunds, entries and inbound calls; read by ops as
JSON, CSV and an HTML report page with an inline SVG chart, looked at in headless Chromium."""
from __future__ import annotations

import csv
import io
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from checkout_helpers import PRICE, SETTLEMENT, assert_error, burst, make_shop, ok, uid
from chalicelib.core.clock import business_day
from chalicelib.orders import parcels
from chalicelib.settlement.operating import COLUMNS
from test_store_browser import browser  # noqa: F401  (a fixture: one headless Chromium)

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


def days_around_now() -> tuple[str, str]:
    """Yesterday and today (business days): a test running across midnight still finds its events."""
    today = business_day()
    return (date.fromisoformat(today) - timedelta(days=1)).isoformat(), today


def counted(system, ops, code: str) -> dict:
    """The channel's totals over yesterday and today, once the orders stream has been consumed (paid orders are
    counted from it, off the request path)."""
    system.streams.drain()
    first, last = days_around_now()
    return ok(ops.get(f"/ops/channels/{code}/operating", params={"from": first, "to": last}))["totals"]


@pytest.fixture(scope="module")
def busy(system, ops):
    """A hosted channel after a burst: 10 members with points for exactly 3 orders each send 4 at once."""
    shop = make_shop(system, ops, "hosted")
    members = shop.members(10)
    for member in members:
        ok(shop.grant(member, 3 * PRICE), 201)
    tasks = [lambda s, m=m: (m, shop.place(s, m)) for m in members for _ in range(4)]
    return shop, burst(shop.base_url, tasks, workers=40)  # (member, attempt) each


def test_concurrent_orders_are_counted_exactly(system, ops, busy):
    shop, attempts = busy
    outcomes = sorted((a.status, a.code) for _, a in attempts)
    assert outcomes == [(201, None)] * 30 + [(409, "insufficient_points")] * 10, outcomes
    for member, attempt in [(m, a) for m, a in attempts if a.status == 201][:5]:  # replays: counted once
        assert shop.place(requests.Session(), member, key=attempt.key).status == 200
    totals = counted(system, ops, shop.code)
    assert {k: totals[k] for k in ("orders", "points", "gmv", "cost", "margin", "refused_balance", "refused",
                                   "entries", "month_members", "calls")} == {
        "orders": 30, "points": 30 * PRICE, "gmv": 30 * PRICE, "cost": 30 * SETTLEMENT,
        "margin": 30 * (PRICE - SETTLEMENT), "refused_balance": 10, "refused": 10,
        "entries": 10, "month_members": 10, "calls": 10}  # ten signed grants


def test_refunds_and_each_refusal_reason_are_counted(system, ops, busy):
    shop, attempts = busy
    member, paid = next((m, a) for m, a in attempts if a.status == 201)
    (parcel,) = parcels.split(paid.order_id)
    ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                     headers=shop.auth(member), timeout=30))
    assert_error(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                               headers=shop.auth(member), timeout=30), 409, "parcel_already_cancelled")
    wrong = shop.place(requests.Session(), member, body=shop.body(password="000000"))
    assert (wrong.status, wrong.code) == (401, "wrong_password")
    totals = counted(system, ops, shop.code)
    assert (totals["refunds"], totals["refund_points"], totals["refund_amount"]) == (1, PRICE, PRICE)
    assert (totals["orders"], totals["refused_password"]) == (30, 1)

    # quota for 3 units, stock for 2: the third unit is out of stock, two more exceed the quota
    limits = make_shop(system, ops, "hosted", quota=3 * PRICE, stock=2)
    buyer = limits.member()
    ok(limits.grant(buyer, 3 * PRICE), 201)
    session = requests.Session()
    assert [limits.place(session, buyer).status for _ in range(2)] == [201, 201]
    assert limits.place(session, buyer).code == "out_of_stock"
    assert limits.place(session, buyer, body=limits.body(qty=2)).code == "quota_exhausted"
    # a period that ends under the member's feet
    ending = make_shop(system, ops, "hosted", period_seconds=8)  # set up and funded before it ends, even when busy
    late = ending.member()
    ok(ending.grant(late, PRICE), 201)
    time.sleep(max(0.0, ending.ends_at - time.time()) + 0.5)
    assert ending.place(session, late).code == "period_ended"
    assert {k: v for k, v in counted(system, ops, limits.code).items() if k.startswith("refused")} == {
        "refused_quota": 1, "refused_balance": 0, "refused_stock": 1, "refused_period": 0, "refused_password": 0,
        "refused": 2}
    assert counted(system, ops, ending.code)["refused_period"] == 1


def test_entries_count_each_member_once_a_day(system, ops):
    shop = make_shop(system, ops, "hosted")
    first = shop.member()
    shop.member(first)
    shop.member(first)
    shop.member()
    totals = counted(system, ops, shop.code)
    assert (totals["entries"], totals["month_members"], totals["orders"]) == (2, 2, 0)


# --- reading the figures ----------------------------------------------------------------------------------

def test_json_and_csv(system, ops, busy):
    shop, _ = busy
    system.streams.drain()
    first, last = days_around_now()
    path = f"/ops/channels/{shop.code}/operating"
    report = ok(ops.get(path, params={"from": first, "to": last}))
    assert [d["day"] for d in report["days"]] == [first, last]
    assert sum(d["orders"] for d in report["days"]) == report["totals"]["orders"] == 30
    assert set(report["partner_api"]) == {"window", "calls", "errors", "error_rate", "p95_ms"}
    default = ok(ops.get(path))
    assert (len(default["days"]), default["to"]) == (30, last)

    exported = ops.get(path, params={"from": first, "to": last, "format": "csv"})
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("text/csv")
    assert f'filename="operating-{shop.code}-{first}-{last}.csv"' in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["day"], int(r["orders"]), int(r["gmv"])) for r in rows] == [
        (d["day"], d["orders"], d["gmv"]) for d in report["days"]]


def test_reads_are_ops_only_and_bounded(system, ops, busy):
    shop, _ = busy
    for path in (f"/ops/channels/{shop.code}/operating", f"/ops/channels/{shop.code}/operating?format=csv",
                 "/ops/reports/operating"):
        assert_error(requests.get(system.base_url + path, timeout=30), 401, "ops_auth_required")
        member_session = shop.auth(next(iter(shop.tokens)))
        assert_error(requests.get(system.base_url + path, headers=member_session, timeout=30), 401,
                     "ops_auth_required")
    path = f"/ops/channels/{shop.code}/operating"
    assert_error(ops.get(path, params={"from": "2026-13-01"}), 400, "invalid_date")
    assert_error(ops.get(path, params={"from": "2026-02-02", "to": "2026-02-01"}), 400, "invalid_range")
    assert_error(ops.get(path, params={"from": "2020-01-01", "to": "2026-01-01"}), 400, "range_too_long")
    assert_error(ops.get("/ops/channels/no-such-channel/operating"), 404, "channel_not_found")
    assert_error(ops.get("/ops/reports/operating", params={"channels": "a b"}), 400, "invalid_path_parameter")


def test_report_page_in_a_browser(system, ops, busy, browser):
    shop, _ = busy
    system.streams.drain()
    quiet = make_shop(system, ops, "hosted")
    context = browser.new_context(viewport={"width": 1100, "height": 900},
                                  extra_http_headers={"Authorization": ops.session.headers["Authorization"]})
    page = context.new_page()
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    response = page.goto(f"{system.base_url}/ops/reports/operating?channels={shop.code},{quiet.code}")
    assert response.status == 200
    sections = page.locator("section.channel")
    assert sections.count() == 2
    busy_section = page.locator(f"#channel-{shop.code}")
    assert "30 orders" in busy_section.locator(".summary").inner_text()
    bars = busy_section.locator("svg.chart rect.bar")
    assert bars.count() == 30  # one bar per day
    heights = [float(bars.nth(i).get_attribute("height")) for i in range(30)]
    assert heights[-1] > 0 or heights[-2] > 0  # today's (or, just past midnight, yesterday's)
    assert busy_section.locator("svg.chart polyline.gmv").count() == 1
    first_row = [c.strip() for c in busy_section.locator("tbody tr").first.locator("td").all_inner_texts()]
    assert first_row[0] == business_day()
    assert page.locator(f"#channel-{quiet.code} svg.chart rect.bar[height='0.0']").count() == 30
    assert scripts == []  # no script, no CDN
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "operating-report.png"), full_page=False)
    context.close()
    assert_error(ops.get("/ops/reports/operating", params={"channels": uid("nope-")}), 404, "channel_not_found")
