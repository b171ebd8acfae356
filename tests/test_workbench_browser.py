"""The supplier workbench in a real browser (Debian's Chromium driven by Playwright), at 1280×800 and 390×844.

A supplier's staff member opens a sign-in link the key holder made, creates goods with an image uploaded straight
from the browser, ships a parcel, uploads a shipment file (a result per line), approves a member's refund,
downloads the month's statement and signs out. Each step is checked through the supplier API as well (the page
goes through the same routes). Screenshots go to build/screenshots/workbench-{desktop,phone}-*.png.
"""
from __future__ import annotations

import csv
import io
import time
import uuid

import pytest
import requests

from checkout_helpers import make_shop, ok, uid
from chalicelib.core import clock
from chalicelib.orders import parcels
from chalicelib.settlement import periods, runs
from image_helpers import png
from test_store_browser import TIMEOUT_MS, browser, shot  # noqa: F401 - the module's browser fixture

VIEWPORTS = {"desktop": {"viewport": {"width": 1280, "height": 800}},
             "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                       "has_touch": True}}


ADDRESS = {"name": "Han Meimei", "phone": "+86 139 0000 0000", "lines": ["1 Tea Street", "Hangzhou"]}


class Supplier:
    """One supplier selling in one channel, with parcels to ship and a refund to decide, made through the API."""

    def __init__(self, system, ops) -> None:
        self.shop = make_shop(system, ops, "hosted")
        self.base_url = system.base_url
        self.key = {"X-Api-Key": self.shop.supplier_key}
        me = self.get("/supplier/me")
        self.supplier_id, self.name = me["supplier_id"], me["name"]
        self.member = self.shop.member()
        ok(self.shop.grant(self.member, 50_000), 201)
        self.to_ship, self.in_file, self.refunded, self.refused = (self.parcel() for _ in range(4))
        for parcel_id, reason in ((self.refunded, "the lid arrived cracked"), (self.refused, "changed my mind")):
            self.post(f"/supplier/parcels/{parcel_id}/ship", {"carrier": "SF", "tracking_no": uid("SF")})
            ok(requests.post(f"{self.base_url}/api/{self.shop.code}/parcels/{parcel_id}/refund-requests",
                             headers=self.shop.auth(self.member), json={"reason": reason}, timeout=30), 201)

    def parcel(self) -> str:
        placed = self.shop.place(requests.Session(), self.member, body={**self.shop.body(), "address": ADDRESS})
        assert placed.status == 201, placed.body
        (parcel,) = parcels.split(placed.order_id)
        return parcel.parcel_id

    def get(self, path: str) -> dict:
        return ok(requests.get(self.base_url + path, headers=self.key, timeout=30))

    def post(self, path: str, body: dict | None = None, status: int = 200) -> dict:
        return ok(requests.post(self.base_url + path, headers=self.key, json=body, timeout=30), status)


def watch(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    return problems


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_a_supplier_signs_in_from_a_link_and_does_the_days_work(system, ops, browser, size):  # noqa: F811
    from playwright.sync_api import expect

    sup = Supplier(system, ops)
    context = browser.new_context(locale="en-US", accept_downloads=True, **VIEWPORTS[size])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = watch(page)
    name = lambda step: shot(page, step, prefix=f"workbench-{size}")  # noqa: E731

    # --- sign in from the link the key holder made; the token leaves the address bar --------------------------
    link = sup.post("/supplier/signin-links", status=201)["url"]
    page.goto(link)
    expect(page.locator("#who")).to_have_text(sup.name)
    assert "signin" not in page.url, page.url
    cookie = {c["name"]: c for c in context.cookies()}["cm_supplier"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert "cm_supplier" not in page.evaluate("document.cookie")
    expect(page.locator(".goods")).to_have_count(1)  # the shop's goods
    name("1-goods")

    # --- edit the goods on sale: content becomes a revision for review, the SKU's stock changes at once ---------
    page.locator(f'.goods[data-goods-id="{sup.shop.goods_id}"]').get_by_role("button", name="Edit").click()
    page.fill("[name=title]", "Tea gift box, new label")
    page.locator('tr.sku[data-sku-id="S1"] [name=stock]').fill("77")
    page.click("#save-goods")
    on_sale = page.locator(f'.goods[data-goods-id="{sup.shop.goods_id}"]')
    expect(on_sale).to_contain_text("Revision waiting for review")
    edited = sup.get(f"/supplier/goods/{sup.shop.goods_id}")
    assert edited["title"] == "Tea gift box" and edited["status"] == "approved"  # members still see this
    assert edited["revision"]["title"] == "Tea gift box, new label" and edited["revision"]["state"] == "pending"
    assert [s["stock"] for s in edited["skus"]] == [77]

    # --- create goods with an image uploaded from the browser through the signed link -------------------------
    title = f"Osmanthus Oolong {uuid.uuid4().hex[:6]}"
    page.click("#new-goods")
    page.fill("[name=ref]", uid("ref-"))
    page.fill("[name=title]", title)
    page.fill("[name=category]", "Tea")
    page.fill("[name=description]", "Roasted oolong with osmanthus flowers.")
    page.set_input_files("#image-file", files=[{"name": "tin.png", "mimeType": "image/png", "buffer": png(64, 64)}])
    expect(page.locator("#images span")).to_have_count(1, timeout=30_000)
    row = page.locator("tr.sku").first
    row.locator("[name=sku_id]").fill("T100")
    row.locator("[name=spec]").fill("100 g tin")
    row.locator("[name=price]").fill("45.50")
    row.locator("[name=stock]").fill("30")
    name("2-new-goods")
    page.click("#save-goods")
    card = page.locator(".goods", has_text=title)
    expect(card).to_contain_text("Waiting for review")
    created = [g for g in sup.get("/supplier/goods")["goods"] if g["title"] == title]
    assert len(created) == 1 and created[0]["status"] == "pending_review", created
    assert len(created[0]["images"]) == 1
    assert created[0]["skus"] == [{"sku_id": "T100", "spec": "100 g tin", "settlement_price": 4550, "stock": 30}]
    image = sup.get(f"/supplier/uploads/{created[0]['images'][0]}")
    assert image["kind"] == "image" and image["status"] == "processed", image
    # the card shows the picture itself, read back from the bucket through its short-lived link
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=card.locator("img.thumb").element_handle())
    name("3-goods-created")

    # --- parcels to ship, filtered by channel; ship one with carrier and tracking --------------------------------
    page.click("#tabs [data-tab=parcels]")
    page.fill("#parcel-filters [name=channel]", sup.shop.code)
    page.click("#parcel-filters button[type=submit]")
    parcel = page.locator(f'.parcel[data-parcel-id="{sup.to_ship}"]')
    expect(parcel).to_contain_text("awaiting shipment")
    expect(parcel.locator(".address")).to_have_text("Ship to: Han Meimei, +86 139 0000 0000, 1 Tea Street, Hangzhou")
    expect(page.locator(f'.parcel[data-parcel-id="{sup.refunded}"]')).to_have_count(0)  # shipped: not listed
    name("4-parcels")
    parcel.locator("[name=carrier]").fill("SF Express")
    parcel.locator("[name=tracking_no]").fill("SF1234567890")
    parcel.locator("button[type=submit]").click()
    expect(parcel).to_contain_text("SF Express SF1234567890")
    shipped = sup.get(f"/supplier/parcels/{sup.to_ship}")
    assert (shipped["state"], shipped["carrier"], shipped["tracking_no"]) == ("shipped", "SF Express", "SF1234567890")

    # --- a shipment file: one good line, one for a parcel that is not ours ------------------------------------
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerows([("parcel_id", "carrier", "tracking_no"), (sup.in_file, "YTO", "YT99887766"),
                      ("O-NOT-OURS-1", "YTO", "YT11223344")])
    page.set_input_files("#shipment-file", files=[{"name": "shipments.csv", "mimeType": "text/csv",
                                                   "buffer": rows.getvalue().encode()}])
    page.click("#send-shipments")
    results = page.locator("#shipment-results")
    expect(results).to_contain_text("1 of 2 line(s) shipped", timeout=30_000)
    expect(results.locator("tr.shipped")).to_contain_text(sup.in_file)
    expect(results.locator("tr.refused")).to_contain_text("parcel_not_found")
    assert sup.get(f"/supplier/parcels/{sup.in_file}")["tracking_no"] == "YT99887766"
    name("5-shipment-file")

    # --- the member's refund request, with the reason, approved -----------------------------------------------
    page.click("#tabs [data-tab=refunds]")
    refund = page.locator(".refund", has_text=sup.refunded)
    expect(refund.locator(".member-reason")).to_have_text("the lid arrived cracked")
    name("6-refunds")
    refund.get_by_role("button", name="Approve refund").click()
    expect(page.locator(".refund", has_text=sup.refunded)).to_have_count(0)
    refusal = page.locator(".refund", has_text=sup.refused)
    expect(refusal.locator(".member-reason")).to_have_text("changed my mind")
    refusal.locator("[name=reject_reason]").fill("unsealed goods cannot be returned")
    refusal.get_by_role("button", name="Refuse").click()
    expect(page.locator("#refund-list")).to_contain_text("No refunds here.")
    decided = {r["parcel_id"]: r for r in sup.get("/supplier/refunds")["refunds"]}
    assert decided[sup.refunded]["state"] == "refunded", decided
    assert (decided[sup.refused]["state"], decided[sup.refused]["reject_reason"]) == (
        "rejected", "unsealed goods cannot be returned"), decided

    # --- the month's statement (settled here: the local stack settles a month only after it ends) --------------
    month = periods.containing(clock.business_day(), periods.MONTHLY)
    statement = runs.settle_party(month, f"supplier.{sup.supplier_id}")
    page.click("#tabs [data-tab=statements]")
    card = page.locator(f'.statement[data-statement-id="{statement.statement_id}"]')
    expect(card).to_contain_text("Period " + month.period_id)
    current = sup.get("/supplier/statements/current")  # the running month, as the final statement would be now
    assert current["provisional"] and current["lines"], current
    provisional = page.locator(f'.statement.provisional[data-period-id="{current["period_id"]}"]')
    expect(provisional).to_contain_text(f"{len(current['lines'])} lines")
    expect(provisional).to_contain_text("Not a statement")
    name("7-statements")
    with page.expect_download() as download:
        card.get_by_role("button", name="Download CSV").click()
    lines = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    by_parcel = {(r["kind"], r["parcel_id"]) for r in lines}
    assert {("payable", sup.to_ship), ("payable", sup.in_file), ("payable", sup.refunded),
            ("clawback", sup.refunded)} <= by_parcel, lines

    # --- sign out: the session ends, the page says so ---------------------------------------------------------
    page.click("#signout")
    expect(page.locator("#signed-out")).to_contain_text("You have signed out.")
    ended = requests.get(f"{system.base_url}/supplier/me", timeout=30,
                         headers={"Cookie": f"cm_supplier={cookie['value']}"})
    assert ended.status_code == 401, ended.text
    name("8-signed-out")
    context.close()
    assert problems == [], problems


def test_the_page_calls_the_api_under_its_own_stage_prefix(system, ops, browser):  # noqa: F811
    """Deployed, the page is ``https://…/api/workbench`` (API Gateway's stage): every call it makes goes under that
    prefix, as the store's do. Here the browser's requests under ``/api/`` reach the local app without it."""
    sup, _ = supplier_api_with_goods(system, ops)
    context = browser.new_context(locale="en-US", **VIEWPORTS["desktop"])
    context.set_default_timeout(TIMEOUT_MS)
    seen: list[str] = []

    def unprefixed(route) -> None:
        path = route.request.url[len(system.base_url) + len("/api"):]
        seen.append(path.split("?")[0])
        route.fulfill(response=route.fetch(url=system.base_url + path))

    context.route(f"{system.base_url}/api/**", unprefixed)
    page = context.new_page()
    problems = watch(page)
    link = ok(requests.post(f"{system.base_url}/supplier/signin-links", headers=sup, timeout=30), 201)["url"]
    page.goto(link.replace("/workbench#", "/api/workbench#"))
    expect_goods = page.locator(".goods")
    expect_goods.first.wait_for()
    assert seen[:3] == ["/workbench", "/supplier/session", "/supplier/goods"], seen
    context.close()
    assert problems == [], problems


def supplier_api_with_goods(system, ops) -> tuple[dict, str]:
    from helpers import publish, supplier_api

    api, supplier_id = supplier_api(system, ops)
    publish(api)
    return {"X-Api-Key": api.session.headers["X-Api-Key"]}, supplier_id
