"""The mobile H5 store in a real browser (Debian's Chromium driven by Playwright) at a phone viewport.

A member enters through a signed link, lands in its channel's store and sees only that channel's
goods at that channel's prices; searches; pages with "Load more"; opens a detail page and picks a SKU.
Screenshots go to build/screenshots/store-*.png.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from tools.sign import entry_link

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
PAGE_SIZE = 10  # the store page asks the catalog for this many goods at a time
TIMEOUT_MS = 20_000


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: `make install` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (run `make install`)")
    if not os.environ.get("CI"):
        pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def phone(browser):
    """A fresh phone-sized browser context (no cookies)."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
        locale="en-US",
        user_agent=("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/126.0 Mobile Safari/537.36"))
    context.set_default_timeout(TIMEOUT_MS)
    return context


# --- test data, all through the HTTP API, with ids of its own -------------------

def make_supplier(system, ops):
    from conftest import Api  # the session's HTTP client
    tag = uuid.uuid4().hex[:10]
    body = ok(ops.post("/ops/suppliers", json={
        "name": f"Store Test Supplier {tag}", "contact_name": "Li Lei", "phone": "+86 138 0000 0000",
        "email": f"{tag}@example.com", "licence_no": f"LIC-{tag}",
        "bank_account": {"bank": "ICBC", "account_name": "Li Lei Trading", "account_no": "6222 0000 1111 2222"}}), 201)
    return Api(system.base_url, {"X-Api-Key": body["api_key"]})


def make_goods(ops, sup, title: str, category: str, skus: list[tuple[str, str, int, int]],
               description: str = "") -> dict:
    """Publish and approve goods; skus are (sku_id, spec, settlement_price, stock); base price = 1.2 x settlement."""
    goods = ok(sup.post("/supplier/goods", json={
        "ref": f"ref-{uuid.uuid4().hex[:12]}", "title": title, "description": description, "images": [],
        "category": category,
        "skus": [{"sku_id": s, "spec": spec, "settlement_price": price, "stock": stock}
                 for s, spec, price, stock in skus]}), 201)
    approved = ok(ops.post(f"/ops/goods/{goods['goods_id']}/approve",
                           json={"base_prices": {s: price * 12 // 10 for s, _, price, _ in skus}}))
    assert approved["status"] == "approved", approved
    return approved


def make_channel(ops, name: str, points_per_yuan: int) -> tuple[str, str]:
    code = f"st-{uuid.uuid4().hex[:10]}"
    body = ok(ops.post("/ops/channels", json={
        "code": code, "name": name, "contact_name": "Han Meimei", "phone": "+86 10 8888 8888",
        "points_mode": "hosted", "points_per_yuan": points_per_yuan, "member_points_cap": 10_000_000,
        "redemption_quota": 100_000_000}), 201)
    return code, body["secret"]


def price_in(ops, code: str, goods_id: str, prices: dict[str, int] | None = None) -> None:
    ok(ops.put(f"/ops/channels/{code}/pool/{goods_id}",
               json={"prices": {sku: {"price": p} for sku, p in (prices or {}).items()}}))


@pytest.fixture(scope="module")
def shop(system, ops):
    """Channel A (100 pts per yuan) and channel B (10 pts per yuan) sharing one goods at different prices."""
    tag = uuid.uuid4().hex[:6]
    sup = make_supplier(system, ops)
    tea = make_goods(ops, sup, f"Longjing Tea Gift Box {tag}", "Tea",
                     [("S250", "250 g tin", 100_000, 40), ("S500", "500 g gift box", 200_000, 3)],
                     description="Spring harvest Longjing from Hangzhou.\nHand-picked, pan-fired.")
    kettle = make_goods(ops, sup, f"Electric Kettle {tag}", "Kitchen", [("K1", "1.7 L", 15_000, 25)])
    scarf = make_goods(ops, sup, f"Silk Scarf {tag}", "Fashion", [("F1", "90 x 90 cm", 30_000, 5)])
    notebooks = [make_goods(ops, sup, f"Notebook No.{i} {tag}", "Stationery", [("N1", "A5 dotted", 1_000 + i, 100)])
                 for i in range(PAGE_SIZE - 2)]
    # Markup in supplier text must show as text, never become elements.
    notebooks.append(make_goods(ops, sup, f"Planner <img src=x onerror=alert(1)> {tag}", "Stationery",
                                [("N1", "A5 <b>weekly</b>", 2_000, 100)]))

    a_code, a_secret = make_channel(ops, f"Bank A Rewards {tag}", 100)
    b_code, b_secret = make_channel(ops, f"Air B Miles {tag}", 10)
    price_in(ops, a_code, tea["goods_id"], {"S250": 129_900, "S500": 259_900})
    price_in(ops, a_code, kettle["goods_id"], {"K1": 19_900})
    for n in notebooks:
        price_in(ops, a_code, n["goods_id"])  # base sale price
    price_in(ops, b_code, tea["goods_id"], {"S250": 119_900, "S500": 239_900})
    price_in(ops, b_code, scarf["goods_id"], {"F1": 39_900})
    ok(ops.put(f"/ops/channels/{a_code}/topics/picks-{tag}",
               json={"title": "Editor's picks", "position": 1, "goods_ids": [tea["goods_id"], kettle["goods_id"]]}))
    ok(ops.put(f"/ops/channels/{b_code}/topics/picks-{tag}",
               json={"title": "Fly in style", "position": 1, "goods_ids": [scarf["goods_id"], tea["goods_id"]]}))
    return {"tag": tag, "tea": tea, "kettle": kettle, "scarf": scarf, "notebooks": notebooks,
            "a": (a_code, a_secret, f"Bank A Rewards {tag}"), "b": (b_code, b_secret, f"Air B Miles {tag}")}


def shot(page, name: str, full_page: bool = False, prefix: str = "store") -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{prefix}-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def watch(page, base_url: str) -> list[str]:
    """Problems seen by the page: page errors, console errors and any request that leaves the origin."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(base_url) or req.url.startswith("data:")
            else problems.append(f"external request: {req.url}"))
    return problems


def titles(page, scope: str = "body") -> list[str]:
    return page.locator(f"{scope} [data-testid=goods-title]").all_inner_texts()


# --- the tests ----------------------------------------------------------------

def test_member_browses_own_channel_store(system, browser, shop):
    from playwright.sync_api import expect
    a_code, a_secret, a_name = shop["a"]
    tea, kettle, scarf = shop["tea"], shop["kettle"], shop["scarf"]
    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)

    # Signed entry -> 302 -> the store home, with the session in an HttpOnly cookie.
    page.goto(entry_link(system.base_url, a_code, a_secret, f"M-{uuid.uuid4().hex[:8]}", nickname="Ann"))
    assert re.search(rf"/store/{a_code}(#.*)?$", page.url), page.url
    page.get_by_test_id("topic").first.wait_for()
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["cm_session"]["httpOnly"] is True
    assert page.evaluate("document.cookie").find("cm_session") == -1

    assert page.get_by_test_id("channel-name").inner_text() == a_name
    assert page.title() == a_name
    topic = page.get_by_test_id("topic").first
    assert topic.get_by_test_id("topic-title").inner_text() == "Editor's picks"
    assert titles(page, "[data-testid=topic]") == [tea["title"], kettle["title"]]
    chips = page.get_by_test_id("category-chip").all_inner_texts()
    assert chips == ["All", "Kitchen", "Stationery", "Tea"]  # channel A's categories only

    # A's prices: 129,900 fen at 100 points per yuan.
    tea_card = topic.locator(f"[data-testid=goods-card][data-goods-id='{tea['goods_id']}']")
    assert "129,900" in tea_card.get_by_test_id("card-points").inner_text()
    assert "¥1,299.00" in tea_card.get_by_test_id("card-money").inner_text()
    kettle_card = topic.locator(f"[data-testid=goods-card][data-goods-id='{kettle['goods_id']}']")
    assert "19,900" in kettle_card.get_by_test_id("card-points").inner_text()
    assert "¥199.00" in kettle_card.get_by_test_id("card-money").inner_text()
    shot(page, "home")
    shot(page, "home-full", full_page=True)

    # All goods: one page of PAGE_SIZE, then "Load more" brings the rest; never channel B's scarf.
    all_goods = page.get_by_test_id("all-goods")
    assert all_goods.get_by_test_id("goods-card").count() == PAGE_SIZE
    all_goods.get_by_test_id("load-more").click()
    expect(all_goods.get_by_test_id("goods-card")).to_have_count(PAGE_SIZE + 1)
    assert all_goods.get_by_test_id("load-more").is_hidden()
    expected = {tea["title"], kettle["title"], *(n["title"] for n in shop["notebooks"])}
    assert set(titles(page, "[data-testid=all-goods]")) == expected
    assert scarf["title"] not in titles(page)
    assert any("<img src=x onerror=alert(1)>" in t for t in titles(page, "[data-testid=all-goods]"))
    assert page.locator("img").count() == 0  # no goods has an image, and no title became one
    assert page.get_by_text(scarf["title"]).count() == 0

    # Search by keyword (case-insensitive): only the kettle.
    page.get_by_test_id("search-input").fill("KETTLE")
    page.get_by_test_id("search-input").press("Enter")
    page.wait_for_url(re.compile(r"#/search\?q=KETTLE$"))
    page.get_by_test_id("search-summary").wait_for()
    assert titles(page) == [kettle["title"]]
    shot(page, "search")
    # A search for channel B's goods finds nothing in channel A.
    page.get_by_test_id("search-input").fill("Silk Scarf")
    page.get_by_test_id("search-submit").click()
    page.get_by_test_id("empty").wait_for()
    assert titles(page) == []

    # A category page.
    page.goto(f"{system.base_url}/store/{a_code}#/category/Tea")
    page.get_by_test_id("category-title").wait_for()
    assert titles(page) == [tea["title"]]
    chip = page.locator("[data-testid=category-chip][aria-current=true]")
    assert chip.inner_text() == "Tea"

    # Detail: tap the tea, pick the other SKU, the price follows.
    page.get_by_test_id("goods-card").first.tap()
    page.get_by_test_id("goods-detail").wait_for()
    assert page.url.endswith(f"#/goods/{tea['goods_id']}")
    assert page.get_by_test_id("detail-title").inner_text() == tea["title"]
    options = page.get_by_test_id("sku-option")
    assert options.all_inner_texts() == ["250 g tin", "500 g gift box"]
    assert options.nth(0).get_attribute("aria-pressed") == "true"
    assert page.get_by_test_id("price-points").inner_text().startswith("129,900")
    assert page.get_by_test_id("price-money").inner_text() == "worth ¥1,299.00"
    assert page.get_by_test_id("stock-status").inner_text() == "In stock"
    redeem = page.get_by_test_id("buy-button")
    assert redeem.is_enabled() and redeem.inner_text() == "Redeem"
    options.nth(1).tap()
    assert options.nth(1).get_attribute("aria-pressed") == "true"
    assert options.nth(0).get_attribute("aria-pressed") == "false"
    assert page.get_by_test_id("price-points").inner_text().startswith("259,900")
    assert page.get_by_test_id("price-money").inner_text() == "worth ¥2,599.00"
    assert page.get_by_test_id("bar-points").inner_text().startswith("259,900")
    assert page.get_by_test_id("stock-status").inner_text() == "Only a few left"
    shot(page, "detail")

    # Back returns to the category list.
    page.get_by_test_id("back").tap()
    page.get_by_test_id("category-title").wait_for()
    assert page.url.endswith("#/category/Tea")

    # Channel B's goods are not reachable from A's store, even by id.
    page.goto(f"{system.base_url}/store/{a_code}#/goods/{scarf['goods_id']}")
    page.reload()
    error = page.get_by_test_id("error-message")
    error.wait_for()
    assert "not available" in error.inner_text()
    assert error.get_attribute("data-error-code") == "goods_not_found"

    assert problems == [msg for msg in problems if "404" in msg], problems  # only the expected 404 above
    context.close()


def test_deep_link_shows_the_entering_channels_prices(system, browser, shop):
    b_code, b_secret, b_name = shop["b"]
    tea = shop["tea"]
    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    page.goto(entry_link(system.base_url, b_code, b_secret, f"M-{uuid.uuid4().hex[:8]}", nickname="Bo",
                         target=f"/goods/{tea['goods_id']}"))
    page.get_by_test_id("goods-detail").wait_for()
    assert page.url.endswith(f"/store/{b_code}#/goods/{tea['goods_id']}")
    assert page.get_by_test_id("channel-name").inner_text() == b_name
    # 119,900 fen at 10 points per yuan.
    assert page.get_by_test_id("price-points").inner_text().startswith("11,990")
    assert page.get_by_test_id("price-money").inner_text() == "worth ¥1,199.00"
    # Back from a deep link stays in the store: the home of channel B, with its own goods.
    page.get_by_test_id("back").tap()
    page.get_by_test_id("topic").first.wait_for()
    assert page.get_by_test_id("topic-title").first.inner_text() == "Fly in style"
    assert titles(page, "[data-testid=topic]") == [shop["scarf"]["title"], tea["title"]]
    assert shop["kettle"]["title"] not in titles(page)
    assert problems == [], problems
    context.close()


def test_without_a_session_the_store_asks_to_reenter(system, browser, shop):
    a_code = shop["a"][0]
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{system.base_url}/store/{a_code}")
    error = page.get_by_test_id("error-message")
    error.wait_for()
    assert "please re-enter from your app" in error.inner_text()
    assert page.get_by_test_id("search-input").is_hidden()
    shot(page, "expired")
    context.close()
