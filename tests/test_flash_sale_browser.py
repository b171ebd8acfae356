"""A flash sale in the mobile H5 store, in headless Chromium at 390×844: the countdown runs on the server's clock,
the button comes alive at the start, the member buys at the sale price, then sees "limit reached" and, once
another member took the last unit, "sold out". Screenshots: build/screenshots/flash-sale-*.png."""
from __future__ import annotations

import time

import requests

from checkout_helpers import PASSWORD, make_shop, uid
from test_flash_sales import SALE_POINTS, schedule
from test_store_browser import browser, phone, shot  # noqa: F401
from test_store_checkout_browser import fill_address, watch
from tools.sign import entry_link

STATE_WAIT_MS = 30_000  # the store re-reads the sales every 5 s; generous for a loaded machine


def test_countdown_start_purchase_limit_and_sold_out_on_a_phone(system, ops, browser):  # noqa: F811
    from playwright.sync_api import expect

    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=2, starts_in=6, lasts=600, limit=1)
    member = uid("m-")
    shop.fake.member(member, PASSWORD, 0)

    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    # The phone's clock is an hour fast: the countdown must follow the server's, not the phone's.
    page.add_init_script("(() => { const real = Date.now; Date.now = () => real() + 3600 * 1000; })();")
    page.goto(entry_link(system.base_url, shop.code, shop.secret, member))
    assert shop.grant(member, 50_000).status_code == 201

    card = page.locator(f'[data-testid="flash-sale"][data-sale-id="{sale["sale_id"]}"]')
    card.wait_for()
    expect(card).to_have_attribute("data-state", "upcoming")
    expect(card.get_by_test_id("sale-countdown")).to_contain_text("Starts in 00:0")
    expect(card.get_by_test_id("sale-buy")).to_be_disabled()
    expect(card.get_by_test_id("sale-points")).to_have_attribute("data-points", str(SALE_POINTS))
    shot(page, "countdown", prefix="flash-sale")
    assert time.time() < sale["starts_at"], "the countdown was seen before the start"

    expect(card).to_have_attribute("data-state", "running", timeout=STATE_WAIT_MS)
    assert time.time() >= sale["starts_at"] - 1  # enabled at the server's start, not an hour early
    expect(card.get_by_test_id("sale-countdown")).to_contain_text("Ends in")
    buy = card.get_by_test_id("sale-buy")
    expect(buy).to_be_enabled()
    buy.tap()

    page.get_by_test_id("confirm").wait_for()
    expect(page.get_by_test_id("confirm-total-points")).to_have_attribute("data-points", str(SALE_POINTS))
    fill_address(page)
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("pay-button").tap()
    page.get_by_test_id("order-success").wait_for(timeout=STATE_WAIT_MS)

    page.evaluate("location.hash = '#/'")
    card = page.locator(f'[data-testid="flash-sale"][data-sale-id="{sale["sale_id"]}"]')
    expect(card).to_have_attribute("data-state", "limit_reached", timeout=STATE_WAIT_MS)
    expect(card.get_by_test_id("sale-buy")).to_have_text("Limit reached")
    expect(card.get_by_test_id("sale-buy")).to_be_disabled()
    shot(page, "limit-reached", prefix="flash-sale")

    other = shop.member()
    assert shop.grant(other, 50_000).status_code == 201
    body = {"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id, "qty": 1, "sale_id": sale["sale_id"]}],
            "password": PASSWORD}
    assert shop.place(requests.Session(), other, body=body).status == 201  # the last unit
    expect(card).to_have_attribute("data-state", "sold_out", timeout=STATE_WAIT_MS)
    expect(card.get_by_test_id("sale-countdown")).to_have_text("Sold out")
    expect(card.get_by_test_id("sale-buy")).to_be_disabled()
    shot(page, "sold-out", prefix="flash-sale")
    assert problems == [], problems
    context.close()
