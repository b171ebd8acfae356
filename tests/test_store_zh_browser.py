"""A zh-CN member of each kind of demo channel, in a real browser at 390×844 (issue 15, items 4–6).

Each channel is set up as the demo's are (``tools/seed.py``): the store's default language Chinese (set by ops),
goods with Chinese and English names, the reference channel back end (``tools/reference_channel.py``) as the
channel's systems — the wallet itself for the remote kind (telecom-b), grants into ours for the hosted one
(bank-a). The member, on a phone whose own clock is in New York:

* lands in a Chinese store; searching 茶 finds the tea; the goods' money line says what it is (价值 ¥…);
* is refused a payment without an address and then with a wrong password, each time in words only (no code,
  no server message) and in view above the sticky pay bar;
* redeems; cancels the parcel, which names its supplier; at each step the header's balance is the wallet's —
  for the remote channel the back end's own figure — and the points page adds up (hosted: received − spent +
  returned − expired = available);
* sees the order's time in UTC+8, the channel's name whole in every inner page's header;
* switches to English, which the store keeps after a reload.

Screenshots: build/screenshots/zh-<kind>-*.png."""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import requests

from chalicelib.supply.models import Supplier
from test_store_browser import browser, make_supplier, ok, phone, price_in  # noqa: F401
from test_store_browser import shot as store_shot
from tools.reference_channel import ReferenceChannel, entry_link

PASSWORD = "135790"
START = 50_000
RATE = 100
PRICE = 12_900  # fen: 12,900 points at 100 points per yuan
NAME = {"hosted": "招商银行信用卡积分商城", "remote": "中国电信翼支付积分商城"}


def shot(page, label: str, name: str, full_page: bool = False):
    return store_shot(page, f"{label}-{name}", full_page, prefix="zh")


@pytest.fixture(scope="module")
def reference(system):
    backend = ReferenceChannel(system.base_url).start()
    yield backend
    backend.stop()


def demo_like(system, ops, reference: ReferenceChannel, kind: str) -> dict:
    """A channel of ``kind`` as the demo seeds one, with a Chinese default and goods named in both languages."""
    tag = uuid.uuid4().hex[:6]
    sup = make_supplier(system, ops)
    goods = ok(sup.post("/supplier/goods", json={
        "ref": f"tea-{tag}", "title": f"West Lake Longjing tea {tag}", "description": "Spring tea.", "category": "food",
        "locales": {"zh-CN": {"title": f"西湖龙井茶 {tag}", "description": "杭州西湖产区春茶。"},
                    "en": {"title": f"West Lake Longjing tea {tag}", "description": "Spring tea from Hangzhou."}},
        "skus": [{"sku_id": "T1", "spec": "250 g", "settlement_price": 10_000, "stock": 50}]}), 201)
    ok(ops.post(f"/ops/goods/{goods['goods_id']}/approve", json={"base_prices": {"T1": 12_000}}))
    code = f"zh-{kind[0]}-{tag}"
    created = ok(ops.post("/ops/channels", json={
        "code": code, "name": NAME[kind], "contact_name": "Han Meimei", "phone": "+86 10 8888 8888",
        "points_mode": kind, "points_per_yuan": RATE, "member_points_cap": 1_000_000, "redemption_quota": 10_000_000,
        "payment_auth": "channel_password", "cart_enabled": kind == "hosted"}), 201)
    # The store's language is an ops setting like any other: edited, and audited.
    ok(ops.patch(f"/ops/channels/{code}", json={"default_locale": "zh-CN"}))
    trail = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert any(a.get("field") == "default_locale" and a.get("new") == "zh-CN" for a in trail), trail
    reference.add_channel(code, created["secret"], kind, webhook_secret=created["webhook_secret"])
    ok(ops.patch(f"/ops/channels/{code}", json={"api_base_url": reference.api_base_url(code)}))
    now = int(time.time())
    ends = now + 30 * 86_400
    ok(ops.post(f"/ops/channels/{code}/periods", json={"period_id": "P1", "starts_at": now - 60, "ends_at": ends}), 201)
    price_in(ops, code, goods["goods_id"], {"T1": PRICE})
    member = f"M{tag}"
    reference.add_member(code, member, PASSWORD, START if kind == "remote" else 0, "李梅")
    if kind == "hosted":
        ok(reference.grant(code, member, f"g-{tag}", START, ends), 201)
    return {"code": code, "secret": created["secret"], "member": member, "goods_id": goods["goods_id"], "tag": tag,
            "supplier_name": Supplier.get(goods["supplier_id"]).name}


def header_balance(page) -> int:
    from playwright.sync_api import expect
    node = page.get_by_test_id("wallet-balance")
    expect(node).to_have_attribute("data-balance", re.compile(r"^[0-9]+$"))  # drawn from the wallet's answer
    return int(node.get_attribute("data-balance"))


def expect_balance(page, value: int) -> None:
    from playwright.sync_api import expect
    expect(page.get_by_test_id("wallet-balance")).to_have_attribute("data-balance", str(value))


def assert_not_covered(page, testid: str) -> None:
    """The element is in the viewport and wholly above the sticky pay bar."""
    box = page.get_by_test_id(testid).bounding_box()
    bar = page.locator(".pay-bar").bounding_box()
    assert box and bar and box["y"] >= 0 and box["y"] + box["height"] <= bar["y"] + 0.5, (box, bar)


def assert_name_whole(page, name: str) -> None:
    brand = page.get_by_test_id("channel-name")
    assert brand.inner_text() == name
    assert brand.evaluate("n => n.scrollWidth <= n.clientWidth"), brand.evaluate("n => [n.scrollWidth, n.clientWidth]")


def points_page_adds_up(page) -> dict:
    figures = {k: int(page.get_by_test_id(f"points-{k}").get_attribute("data-points"))
               for k in ("granted", "spent", "returned", "expired")}
    available = int(page.get_by_test_id("points-balance").get_attribute("data-points"))
    assert figures["granted"] - figures["spent"] + figures["returned"] - figures["expired"] == available, (
        figures, available)
    return dict(figures, available=available)


@dataclass
class ZhStore:
    """One channel's store as the flow drives it: how the member enters, the goods it redeems, and where the
    wallet's own figure is read (the channel's back end for a remote channel, our wallet API for a hosted one)."""

    kind: str
    code: str
    name: str
    enter: Callable[[Any], None]  # opens the store on the page, as the channel app would
    goods_id: str
    zh_title: str
    en_title: str
    zh_description: str
    search: str  # a Chinese word that finds the goods
    shipped_by: str
    wallet: Callable[[], int]
    label: str  # in the screenshots' names


def redeems_cancels_and_balances_add_up(system, browser, store: ZhStore) -> None:
    """The whole zh-CN member visit described above, on one store; screenshots zh-<label>-*.png."""
    from playwright.sync_api import expect

    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
        locale="en-US", timezone_id="America/New_York")  # the phone's own language and zone are not the store's
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    store.enter(page)
    card_of = f"[data-testid=goods-card][data-goods-id='{store.goods_id}']"

    # A Chinese store: its own words and the goods' Chinese names.
    expect(page.get_by_test_id("home")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    expect(page.get_by_test_id("search-input")).to_have_attribute("placeholder", "搜索商品")
    start = header_balance(page)
    assert start == store.wallet() > 0
    shot(page, store.label, "1-home")

    # The search word finds the goods, in Chinese; its money line says what it is worth.
    page.get_by_test_id("search-input").fill(store.search)
    page.get_by_test_id("search-submit").click()
    expect(page.get_by_test_id("search-summary")).to_have_text(f"“{store.search}”的搜索结果")
    expect(page.locator(card_of)).to_have_count(1)
    expect(page.locator(f"{card_of} [data-testid=goods-title]")).to_have_text(store.zh_title)
    expect(page.locator(f"{card_of} [data-testid=card-money]")).to_have_text(re.compile(r"^价值 ¥[0-9,]+\.[0-9]{2}$"))
    page.locator(card_of).click()
    expect(page.get_by_test_id("detail-title")).to_have_text(store.zh_title)
    expect(page.get_by_test_id("price-money")).to_have_text(re.compile(r"^价值 ¥[0-9,]+\.[0-9]{2}$"))
    expect(page.get_by_test_id("detail-description")).to_have_text(store.zh_description)
    expect(page.get_by_test_id("detail-shipped-by")).to_have_text(f"由 {store.shipped_by} 发货")
    price = int(page.get_by_test_id("bar-points").get_attribute("data-points"))
    assert_name_whole(page, store.name)
    shot(page, store.label, "2-detail")

    # Refusals in words, in view: no address, then a wrong password.
    page.get_by_test_id("buy-button").click()
    expect(page.get_by_test_id("confirm")).to_be_visible()
    assert_name_whole(page, store.name)
    for name in ("name", "phone", "line1"):
        page.get_by_test_id(f"address-{name}").fill("")
    page.get_by_test_id("password-input").fill("000000")
    page.get_by_test_id("pay-button").click()
    refusal = page.get_by_test_id("error-message")
    expect(refusal).to_have_attribute("data-error-code", "address_required")
    expect(refusal).to_have_text("收货需要姓名、电话和地址。")
    assert_not_covered(page, "error-message")
    shot(page, store.label, "3-no-address")
    page.get_by_test_id("address-name").fill("李梅")
    page.get_by_test_id("address-phone").fill("139 0000 0000")
    page.get_by_test_id("address-line1").fill("北京市朝阳区建国路 8 号")
    page.get_by_test_id("pay-button").click()
    expect(refusal).to_have_attribute("data-error-code", "wrong_password")
    expect(refusal).to_have_text("支付密码不正确，请重试。")  # the friendly words only: no code, no server message
    assert_not_covered(page, "error-message")
    shot(page, store.label, "4-wrong-password")
    assert store.wallet() == start

    # Redeem: the header's balance is the wallet's (asked again of a remote channel).
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("pay-button").click()
    expect(page.get_by_test_id("order-success")).to_have_attribute("data-status", "paid")
    expect(page.locator("[data-testid=order-success] h1")).to_have_text("兑换成功！")
    assert store.wallet() == start - price
    expect_balance(page, start - price)
    order_id = page.get_by_test_id("order-id").inner_text()
    shot(page, store.label, "5-redeemed")

    # The order: its time in UTC+8 (not New York's), who ships the parcel, lines in Chinese; cancel it.
    page.get_by_test_id("my-orders").click()
    page.locator(f"[data-testid=order-row][data-order-id='{order_id}']").click()
    expect(page.get_by_test_id("order-detail")).to_be_visible()
    assert_name_whole(page, store.name)
    answer = page.request.get(f"{system.base_url}/api/{store.code}/orders/{order_id}")  # with the page's session
    assert answer.ok, answer.text()
    order = answer.json()
    created = datetime.fromisoformat(order["created_at"]).astimezone(timezone(timedelta(hours=8)))
    assert page.get_by_test_id("order-placed").inner_text() == created.strftime("%Y-%m-%d %H:%M")
    parcel = page.get_by_test_id("parcel").first
    expect(parcel.get_by_test_id("parcel-shipped-by")).to_have_text(store.shipped_by)
    expect(parcel.get_by_test_id("parcel-name")).to_have_text("包裹 1/1")
    expect(parcel.locator(".l-title")).to_have_text(store.zh_title)
    shot(page, store.label, "6-order")
    parcel.get_by_test_id("parcel-cancel").click()
    parcel.get_by_test_id("parcel-cancel").click()  # tap again to confirm
    expect(page.get_by_test_id("parcel").first).to_have_attribute("data-state", "cancelled")
    assert store.wallet() == start
    expect_balance(page, start)
    shot(page, store.label, "7-cancelled")

    # The points page: the wallet's figure; hosted, four totals that add up to it.
    page.get_by_test_id("points-link").click()
    expect(page.get_by_test_id("points-page")).to_be_visible()
    assert_name_whole(page, store.name)
    assert int(page.get_by_test_id("points-balance").get_attribute("data-points")) == store.wallet() == start
    if store.kind == "hosted":
        figures = points_page_adds_up(page)
        assert figures["available"] == start and figures["spent"] >= price and figures["returned"] >= price
    else:
        note = page.get_by_test_id("points-remote-note")
        expect(note).to_have_attribute("data-stale", "false")
        expect(note).to_contain_text(store.name)
    shot(page, store.label, "8-points", full_page=True)

    # English, kept after a reload.
    page.goto(f"{system.base_url}/store/{store.code}#/")
    page.get_by_test_id("language-switch").click()
    expect(page.get_by_test_id("search-input")).to_have_attribute("placeholder", "Search goods")
    page.get_by_test_id("search-input").fill(store.search)
    page.get_by_test_id("search-submit").click()
    expect(page.locator(f"{card_of} [data-testid=goods-title]")).to_have_text(store.en_title)
    page.reload()
    expect(page.get_by_test_id("search-summary")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.get_by_test_id("language-switch")).to_have_text("中文")
    expect(page.locator(f"{card_of} [data-testid=card-money]")).to_have_text(re.compile(r"^worth ¥[0-9,]+\.[0-9]{2}$"))
    shot(page, store.label, "9-english")
    assert not problems, problems
    context.close()


@pytest.mark.parametrize("kind", ["hosted", "remote"])
def test_zh_member_redeems_cancels_and_sees_balances_that_add_up(system, ops, browser, reference, kind):
    """Channels set up as the demo's, with their own codes (the seeded demo itself: ``test_demo``)."""
    shop = demo_like(system, ops, reference, kind)
    code, member = shop["code"], shop["member"]
    fields = {"points": str(START)} if kind == "remote" else {}

    def wallet() -> int:
        if kind == "remote":
            return reference.balance(code, member)
        return ok(requests.get(f"{system.base_url}/api/{code}/wallet", timeout=30, cookies=cookies))["balance"]

    cookies: dict[str, str] = {}

    def enter(page) -> None:
        page.goto(entry_link(system.base_url, code, shop["secret"], member, nickname="李梅", **fields))
        cookies.update({c["name"]: c["value"] for c in page.context.cookies()})

    redeems_cancels_and_balances_add_up(system, browser, ZhStore(
        kind, code, NAME[kind], enter, shop["goods_id"], f"西湖龙井茶 {shop['tag']}",
        f"West Lake Longjing tea {shop['tag']}", "杭州西湖产区春茶。", "茶", shop["supplier_name"], wallet, kind))
