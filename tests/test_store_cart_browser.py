"""The cart in the mobile H5 store, in a real browser (Debian's Chromium driven by Playwright) at a phone viewport.

A hosted, cart-enabled channel whose payment password is checked by a stand-in of its back end: the member adds
goods of two suppliers from their pages, changes a quantity and removes a line on the cart page (total and
points left follow), checks the whole cart out with the payment password and a delivery address, and sees the
one order in the order centre; the cart is empty afterwards. A channel without cart shows no cart anywhere.

Screenshots go to build/screenshots/cart-*.png.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from test_store_browser import browser, make_goods, make_supplier, ok, phone, price_in  # noqa: F401
from test_store_browser import shot as store_shot
from test_store_checkout_browser import (  # noqa: F401
    api_get, channel_api, fill_address, make_channel, open_period, signed_post, watch,
)
from tools.sign import entry_link


def shot(page, name: str, full_page: bool = False) -> Path:
    return store_shot(page, name, full_page, prefix="cart")


def test_member_fills_a_cart_and_redeems_it_as_one_order(system, ops, anon, browser, channel_api):
    from playwright.sync_api import expect
    tag = uuid.uuid4().hex[:6]
    tea = make_goods(ops, make_supplier(system, ops), f"Jasmine Tea {tag}", "Tea",
                     [("J1", "50 g pouch", 8_000, 30), ("J2", "100 g tin", 15_000, 30)])
    mug = make_goods(ops, make_supplier(system, ops), f"Ceramic Mug {tag}", "Kitchen", [("C1", "350 ml", 4_000, 20)])
    code, secret = make_channel(ops, f"Harbour Bank {tag}", points_mode="hosted", payment_auth="channel_password",
                                api_base_url=channel_api.url, cart_enabled=True)
    period_end = open_period(ops, code)
    price_in(ops, code, tea["goods_id"], {"J1": 9_900, "J2": 17_900})
    price_in(ops, code, mug["goods_id"], {"C1": 4_900})
    member = f"M-{uuid.uuid4().hex[:8]}"
    ok(signed_post(anon, code, secret, f"/partner/{code}/grants",
                   {"grant_id": f"g-{tag}", "member_id": member, "points": 50_000, "expires_at": period_end - 60}), 201)

    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    page.goto(entry_link(system.base_url, code, secret, member, target=f"/goods/{tea['goods_id']}"))
    page.get_by_test_id("goods-detail").wait_for()
    expect(page.get_by_test_id("cart-link")).to_be_visible()
    expect(page.get_by_test_id("cart-count")).to_be_hidden()

    # From the goods pages: two tins of J2, one pouch of J1, one mug.
    page.locator('[data-testid="sku-option"][data-sku-id="J2"]').tap()
    page.get_by_test_id("qty-plus").tap()
    page.get_by_test_id("add-to-cart").tap()
    expect(page.get_by_test_id("cart-added")).to_be_visible()
    expect(page.get_by_test_id("cart-count")).to_have_text("2")
    page.locator('[data-testid="sku-option"][data-sku-id="J1"]').tap()
    page.get_by_test_id("qty-minus").tap()
    page.get_by_test_id("add-to-cart").tap()
    expect(page.get_by_test_id("cart-count")).to_have_text("3")
    shot(page, "added")
    page.goto(f"{system.base_url}/store/{code}#/goods/{mug['goods_id']}")
    page.get_by_test_id("goods-detail").wait_for()
    page.get_by_test_id("add-to-cart").tap()
    expect(page.get_by_test_id("cart-count")).to_have_text("4")

    # The cart page: quantities, total and the points left follow every change.
    page.get_by_test_id("view-cart").tap()
    page.get_by_test_id("cart").wait_for()
    lines = page.get_by_test_id("cart-line")
    expect(lines).to_have_count(3)
    expect(page.get_by_test_id("cart-total-points")).to_have_attribute("data-points", str(2 * 17_900 + 9_900 + 4_900))
    mug_line = page.locator(f'[data-testid="cart-line"][data-goods-id="{mug["goods_id"]}"]')
    mug_line.get_by_test_id("cart-qty-plus").tap()
    expect(mug_line).to_have_attribute("data-qty", "2")
    pouch = page.locator('[data-testid="cart-line"][data-sku-id="J1"]')
    pouch.get_by_test_id("cart-remove").tap()
    expect(pouch.get_by_test_id("cart-remove")).to_have_text("Tap to remove")
    pouch.get_by_test_id("cart-remove").tap()
    expect(lines).to_have_count(2)
    total = 2 * 17_900 + 2 * 4_900
    expect(page.get_by_test_id("cart-total-points")).to_have_attribute("data-points", str(total))
    expect(page.get_by_test_id("cart-after")).to_have_attribute("data-points", str(50_000 - total))
    expect(page.get_by_test_id("cart-count")).to_have_text("4")
    shot(page, "page")

    # Check out the whole cart: one confirmation, the address, the payment password.
    page.get_by_test_id("cart-checkout").tap()
    page.get_by_test_id("confirm").wait_for()
    expect(page.get_by_test_id("confirm-item")).to_have_count(2)
    expect(page.get_by_test_id("confirm-total-points")).to_have_attribute("data-points", str(total))
    page.get_by_test_id("password-input").fill("123456")
    page.get_by_test_id("pay-button").tap()
    expect(page.get_by_test_id("error-message")).to_have_attribute("data-error-code", "address_required")
    fill_address(page)
    shot(page, "confirm", full_page=True)
    page.get_by_test_id("pay-button").tap()
    success = page.get_by_test_id("order-success")
    success.wait_for(timeout=30_000)
    expect(success.get_by_test_id("order-points")).to_have_attribute("data-points", str(total))
    order_id = success.get_by_test_id("order-id").inner_text()
    expect(page.get_by_test_id("cart-count")).to_be_hidden()
    assert api_get(page, system.base_url, f"/api/{code}/cart")["lines"] == []
    order = api_get(page, system.base_url, f"/api/{code}/orders/{order_id}")
    assert sorted((l["sku_id"], l["qty"]) for l in order["lines"]) == [("C1", 2), ("J2", 2)]
    assert api_get(page, system.base_url, f"/api/{code}/wallet")["balance"] == 50_000 - total

    # The order centre: the one order, with both items (or its parcels, once the order is split).
    page.get_by_test_id("my-orders").tap()
    expect(page.get_by_test_id("order-row")).to_have_count(1)
    page.get_by_test_id("order-row").tap()
    page.get_by_test_id("order-detail").wait_for()
    expect(page.get_by_test_id("order-id")).to_have_text(order_id)
    shown = page.get_by_test_id("parcel-line").count() or page.get_by_test_id("order-line").count()
    assert shown == 2, shown
    shot(page, "order", full_page=True)

    # The empty cart, and a store without a cart.
    page.get_by_test_id("cart-link").tap()
    page.get_by_test_id("cart-empty").wait_for()
    plain, plain_secret = make_channel(ops, f"Plain Store {tag}", points_mode="hosted", payment_auth="channel_password",
                                       api_base_url=channel_api.url)
    open_period(ops, plain)
    price_in(ops, plain, mug["goods_id"], {"C1": 4_900})
    page.goto(entry_link(system.base_url, plain, plain_secret, member, target=f"/goods/{mug['goods_id']}"))
    page.get_by_test_id("goods-detail").wait_for()
    expect(page.get_by_test_id("buy-button")).to_be_visible()
    assert page.get_by_test_id("add-to-cart").count() == 0
    expect(page.get_by_test_id("cart-link")).to_be_hidden()
    assert problems == [], problems
    context.close()


def test_order_centre_shows_parcels_and_the_member_cancels_and_confirms(system, ops, anon, browser, channel_api):
    from playwright.sync_api import expect
    tag = uuid.uuid4().hex[:6]
    tea_supplier, mug_supplier = make_supplier(system, ops), make_supplier(system, ops)
    tea = make_goods(ops, tea_supplier, f"Pu-erh Cake {tag}", "Tea", [("P1", "357 g cake", 10_000, 30)])
    mug = make_goods(ops, mug_supplier, f"Glass Teapot {tag}", "Kitchen", [("G1", "600 ml", 5_000, 20)])
    code, secret = make_channel(ops, f"River Bank {tag}", points_mode="hosted", payment_auth="channel_password",
                                api_base_url=channel_api.url, cart_enabled=True)
    period_end = open_period(ops, code)
    price_in(ops, code, tea["goods_id"], {"P1": 12_000})
    price_in(ops, code, mug["goods_id"], {"G1": 6_000})
    member = f"M-{uuid.uuid4().hex[:8]}"
    ok(signed_post(anon, code, secret, f"/partner/{code}/grants",
                   {"grant_id": f"g-{tag}", "member_id": member, "points": 30_000, "expires_at": period_end - 60}), 201)

    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    page.goto(entry_link(system.base_url, code, secret, member, target="/cart"))
    page.get_by_test_id("cart-empty").wait_for()
    for goods, sku in ((tea, "P1"), (mug, "G1")):
        answer = page.request.put(f"{system.base_url}/api/{code}/cart/lines/{goods['goods_id']}/{sku}", data={"qty": 1})
        assert answer.ok, answer.text()
    page.reload()
    expect(page.get_by_test_id("cart-line")).to_have_count(2)
    page.get_by_test_id("cart-checkout").tap()
    page.get_by_test_id("confirm").wait_for()
    fill_address(page)
    page.get_by_test_id("password-input").fill("123456")
    page.get_by_test_id("pay-button").tap()
    page.get_by_test_id("order-success").wait_for(timeout=30_000)
    order_id = page.get_by_test_id("order-id").inner_text()

    # The workflow splits the order into one parcel per supplier; the order centre shows them by neutral name.
    def parcels() -> list[dict]:
        return api_get(page, system.base_url, f"/api/{code}/orders/{order_id}").get("parcels") or []
    deadline = time.time() + 30
    while len(parcels()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    split = {p["lines"][0]["goods_id"]: p for p in parcels()}
    assert set(split) == {tea["goods_id"], mug["goods_id"]}, split
    ok(tea_supplier.post(f"/supplier/parcels/{split[tea['goods_id']]['parcel_id']}/ship",
                         json={"carrier": "SF Express", "tracking_no": "SF1234567890"}))
    page.goto(f"{system.base_url}/store/{code}#/orders/{order_id}")
    page.get_by_test_id("order-detail").wait_for()
    expect(page.get_by_test_id("order-address")).to_contain_text("Li Mei")
    expect(page.get_by_test_id("parcel")).to_have_count(2)
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "partially_shipped")
    shipped = page.locator(f'[data-testid="parcel"][data-parcel-id="{split[tea["goods_id"]]["parcel_id"]}"]')
    waiting = page.locator(f'[data-testid="parcel"][data-parcel-id="{split[mug["goods_id"]]["parcel_id"]}"]')
    expect(shipped.get_by_test_id("parcel-name")).to_have_text(split[tea["goods_id"]]["name"])
    expect(shipped.get_by_test_id("parcel-carrier")).to_have_text("SF Express")
    expect(shipped.get_by_test_id("parcel-tracking")).to_have_text("SF1234567890")
    assert shipped.get_by_test_id("parcel-cancel").count() == 0 and waiting.get_by_test_id("parcel-confirm").count() == 0
    shot(page, "parcels", full_page=True)

    # Cancel the unshipped parcel (a second tap confirms): its points come back.
    waiting.get_by_test_id("parcel-cancel").tap()
    expect(waiting.get_by_test_id("parcel-cancel")).to_have_text("Tap again to cancel")
    waiting.get_by_test_id("parcel-cancel").tap()
    expect(waiting).to_have_attribute("data-state", "cancelled")
    expect(waiting.get_by_test_id("parcel-returned")).to_have_attribute("data-points", "6000")
    assert api_get(page, system.base_url, f"/api/{code}/wallet")["balance"] == 30_000 - 12_000
    expect(page.get_by_test_id("wallet-balance")).to_have_attribute("data-balance", str(30_000 - 12_000))
    # Confirm receipt of the shipped one: completed.
    shipped.get_by_test_id("parcel-confirm").tap()
    expect(shipped).to_have_attribute("data-state", "completed")
    expect(page.get_by_test_id("order-status")).not_to_have_attribute("data-status", "partially_shipped")
    shot(page, "parcels-done", full_page=True)
    assert problems == [], problems
    context.close()


def test_member_asks_for_a_refund_of_a_shipped_parcel_and_sees_the_refusal(system, ops, anon, browser, channel_api):
    from playwright.sync_api import expect
    tag = uuid.uuid4().hex[:6]
    supplier = make_supplier(system, ops)
    lamp = make_goods(ops, supplier, f"Desk Lamp {tag}", "Home", [("L1", "Warm white", 8_000, 10)])
    code, secret = make_channel(ops, f"Lake Bank {tag}", points_mode="hosted", payment_auth="channel_password",
                                api_base_url=channel_api.url)
    period_end = open_period(ops, code)
    price_in(ops, code, lamp["goods_id"], {"L1": 9_000})
    member = f"M-{uuid.uuid4().hex[:8]}"
    ok(signed_post(anon, code, secret, f"/partner/{code}/grants",
                   {"grant_id": f"g-{tag}", "member_id": member, "points": 20_000, "expires_at": period_end - 60}), 201)

    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    page.goto(entry_link(system.base_url, code, secret, member, target="/orders"))
    page.get_by_test_id("orders-empty").wait_for()
    placed = page.request.post(f"{system.base_url}/api/{code}/orders", headers={"Idempotency-Key": uuid.uuid4().hex},
                               data={"lines": [{"goods_id": lamp["goods_id"], "sku_id": "L1", "qty": 1}],
                                     "password": "123456",
                                     "address": {"name": "Li Mei", "phone": "13900000000", "lines": ["8 Jianguo Road"]}})
    assert placed.status == 201, placed.text()
    order_id = placed.json()["order_id"]
    deadline = time.time() + 30
    while not api_get(page, system.base_url, f"/api/{code}/orders/{order_id}").get("parcels") and time.time() < deadline:
        time.sleep(0.2)
    parcel_id = api_get(page, system.base_url, f"/api/{code}/orders/{order_id}")["parcels"][0]["parcel_id"]
    ok(supplier.post(f"/supplier/parcels/{parcel_id}/ship", json={"carrier": "YTO", "tracking_no": "YT55550001"}))

    page.goto(f"{system.base_url}/store/{code}#/orders/{order_id}")
    parcel = page.get_by_test_id("parcel")
    expect(parcel).to_have_attribute("data-state", "shipped")
    parcel.get_by_test_id("parcel-refund-request").tap()
    expect(parcel.get_by_test_id("refund-reason")).to_be_visible()
    parcel.get_by_test_id("parcel-refund-request").tap()  # no reason yet: asked for one, nothing sent
    expect(parcel.get_by_test_id("refund-reason")).to_have_attribute("aria-invalid", "true")
    parcel.get_by_test_id("refund-reason").fill("The lamp flickers.")
    parcel.get_by_test_id("parcel-refund-request").tap()
    expect(parcel.get_by_test_id("parcel-refund")).to_have_attribute("data-state", "requested")
    expect(parcel.get_by_test_id("parcel-refund-asked")).to_have_text("The lamp flickers.")
    assert parcel.get_by_test_id("parcel-refund-request").count() == 0

    refund = api_get(page, system.base_url, f"/api/{code}/parcels/{parcel_id}/refund")
    ok(supplier.post(f"/supplier/refunds/{refund['refund_id']}/reject", json={"reason": "Works when tested here."}))
    page.reload()
    expect(parcel.get_by_test_id("parcel-refund")).to_have_attribute("data-state", "rejected")
    expect(parcel.get_by_test_id("parcel-refund-reason")).to_have_text("Works when tested here.")
    shot(page, "refund-rejected", full_page=True)
    assert problems == [], problems
    context.close()
