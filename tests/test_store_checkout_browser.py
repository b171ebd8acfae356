"""Buying in the mobile H5 store in a real browser: points, confirm, pay, the order centre.

Debian's Chromium driven by Playwright at a phone viewport, against the local system over HTTP. Each test
builds its own supplier, goods, channel, period and points through the HTTP API:

* hosted points + a one-time SMS code: the balance and expiring points show; qty 2 → Redeem → Send code;
  a wrong code is refused (wrong_otp) and spends nothing; a payment whose answer is lost on the way back is
  retried with the same Idempotency-Key and spends once; the order shows in "My orders"; the wallet dropped
  by exactly the order's points; an order over the balance cannot be paid.
* remote points + the channel's payment password (a tiny local HTTP server stands in for the channel): a
  wrong password is refused; the right one places the order, which waits for the channel to confirm the
  deduction (its points API is down) and says so.

Screenshots go to build/screenshots/checkout-*.png.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chalicelib.channels.signing import request_headers
from test_store_browser import browser, make_goods, make_supplier, ok, phone, price_in  # noqa: F401
from test_store_browser import shot as store_shot
from tools.sign import entry_link

RATE = 100  # points per yuan: 1 fen = 1 point


def shot(page, name: str, full_page: bool = False) -> Path:
    return store_shot(page, name, full_page, prefix="checkout")


def watch(page, base_url: str) -> list[str]:
    """Page errors, requests leaving the origin, and console errors other than refused API calls."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text else None)
    page.on("request", lambda req: None if req.url.startswith(base_url) or req.url.startswith("data:")
            else problems.append(f"external request: {req.url}"))
    return problems


def signed_post(anon, code: str, secret: str, path: str, payload: dict):
    """A channel's server calling us, signed per contract v2 (method, path and the body's SHA-256)."""
    body = json.dumps(payload).encode()
    headers = {**request_headers("POST", path, body, secret), "Content-Type": "application/json"}
    return anon.post(path, data=body, headers=headers)


def make_channel(ops, name: str, **fields) -> tuple[str, str]:
    code = f"ck-{uuid.uuid4().hex[:10]}"
    body = ok(ops.post("/ops/channels", json={
        "code": code, "name": name, "contact_name": "Han Meimei", "phone": "+86 10 8888 8888",
        "points_per_yuan": RATE, "member_points_cap": 1_000_000, "redemption_quota": 10_000_000, **fields}), 201)
    return code, body["secret"]


def open_period(ops, code: str, days: int = 40) -> int:
    now = int(time.time())
    ends = now + days * 86_400
    ok(ops.post(f"/ops/channels/{code}/periods",
                json={"period_id": f"P{uuid.uuid4().hex[:6]}", "starts_at": now - 60, "ends_at": ends}), 201)
    return ends


def outbox_lines(system) -> list[dict]:
    try:
        text = Path(system.sms_outbox).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sms_code(system, mobile: str, seen: int) -> str:
    """The code in the newest text message to ``mobile`` after the first ``seen`` messages."""
    deadline = time.time() + 10
    while time.time() < deadline:
        fresh = [m for m in outbox_lines(system)[seen:] if m["to"] == mobile]
        if fresh:
            return re.search(r"code is (\d{6})", fresh[-1]["text"]).group(1)
        time.sleep(0.1)
    raise AssertionError(f"no text message to {mobile}")


def fill_address(page) -> None:
    """The delivery address every order needs (the page remembers it on this phone for the next one)."""
    page.get_by_test_id("address-name").fill("Li Mei")
    page.get_by_test_id("address-phone").fill("139 0000 0000")
    page.get_by_test_id("address-line1").fill("8 Jianguo Road, Chaoyang, Beijing")


def api_get(page, base_url: str, path: str) -> dict:
    """A JSON read with the browser's own session cookie, outside the page."""
    response = page.request.get(base_url + path)
    assert response.ok, (response.status, response.text())
    return response.json()


@pytest.fixture(scope="module")
def otp_shop(system, ops, anon):
    """A hosted channel confirming payments by SMS code, with an open period, goods and a member's points."""
    tag = uuid.uuid4().hex[:6]
    sup = make_supplier(system, ops)
    tea = make_goods(ops, sup, f"Oolong Tea Tin {tag}", "Tea", [("T1", "100 g tin", 10_000, 30), ("T2", "250 g tin", 20_000, 30)],
                     description="Tieguanyin from Anxi.")
    pricey = make_goods(ops, sup, f"Espresso Machine {tag}", "Kitchen", [("E1", "Stainless", 30_000, 5)])
    name = f"Metro Bank Rewards {tag}"
    code, secret = make_channel(ops, name, points_mode="hosted", payment_auth="otp")
    period_end = open_period(ops, code)
    price_in(ops, code, tea["goods_id"], {"T1": 12_900, "T2": 24_900})
    price_in(ops, code, pricey["goods_id"], {"E1": 39_900})
    ok(ops.put(f"/ops/channels/{code}/topics/picks-{tag}",
               json={"title": "Picked for you", "position": 1, "goods_ids": [tea["goods_id"], pricey["goods_id"]]}))
    member = f"M-{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    soon = now + 3 * 86_400 + 600  # inside the "expiring soon" week
    ok(signed_post(anon, code, secret, f"/partner/{code}/grants",
                   {"grant_id": f"g-{tag}-1", "member_id": member, "points": 30_000, "expires_at": soon}), 201)
    ok(signed_post(anon, code, secret, f"/partner/{code}/grants",
                   {"grant_id": f"g-{tag}-2", "member_id": member, "points": 20_000, "expires_at": period_end - 60}), 201)
    return {"code": code, "secret": secret, "name": name, "member": member, "tea": tea, "pricey": pricey,
            "soon": soon}


def test_member_redeems_with_an_sms_code(system, browser, otp_shop):
    from playwright.sync_api import expect
    code, tea = otp_shop["code"], otp_shop["tea"]
    mobile = "13900000000"
    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)

    page.goto(entry_link(system.base_url, code, otp_shop["secret"], otp_shop["member"], nickname="Mei", mobile=mobile))
    page.get_by_test_id("topic").first.wait_for()
    balance = page.get_by_test_id("wallet-balance")
    expect(balance).to_have_attribute("data-balance", "50000")
    expect(balance).to_have_text("50,000")
    expect(page.get_by_test_id("home-balance")).to_have_text("50,000 pts")
    expiring = page.get_by_test_id("home-expiring")
    expect(expiring).to_contain_text("30,000 pts expire on ")
    shot(page, "home")

    # My points: the balance and the lot that expires within the week, with its date.
    page.get_by_test_id("points-link").tap()
    expect(page.get_by_test_id("points-balance")).to_have_attribute("data-points", "50000")
    rows = page.get_by_test_id("expiring-row")
    expect(rows).to_have_count(1)
    expect(rows.get_by_test_id("expiring-points")).to_have_attribute("data-points", "30000")
    when = time.strftime("%Y-%m-%d", time.gmtime(otp_shop["soon"] + 8 * 3600))  # the business day's zone, UTC+8
    expect(rows.get_by_test_id("expiring-date")).to_contain_text(when)
    expect(page.get_by_test_id("points-granted")).to_have_text("50,000")
    shot(page, "points")
    page.get_by_test_id("back").tap()
    page.get_by_test_id("topic").first.wait_for()

    # Detail: the 100 g tin, quantity 2 (the stepper stops at 1 going down).
    page.locator(f"[data-testid=topic] [data-testid=goods-card][data-goods-id='{tea['goods_id']}']").tap()
    page.get_by_test_id("goods-detail").wait_for()
    expect(page.get_by_test_id("qty-value")).to_have_text("1")
    expect(page.get_by_test_id("qty-minus")).to_be_disabled()
    page.get_by_test_id("qty-plus").tap()
    expect(page.get_by_test_id("qty-value")).to_have_text("2")
    expect(page.get_by_test_id("bar-points")).to_have_attribute("data-points", str(2 * 12_900))
    for _ in range(12):
        if page.get_by_test_id("qty-plus").is_disabled():
            break
        page.get_by_test_id("qty-plus").tap()
    expect(page.get_by_test_id("qty-value")).to_have_text("9")
    expect(page.get_by_test_id("qty-plus")).to_be_disabled()
    for _ in range(7):
        page.get_by_test_id("qty-minus").tap()
    expect(page.get_by_test_id("qty-value")).to_have_text("2")
    box = page.get_by_test_id("qty-plus").bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44, box
    shot(page, "detail")

    # Confirm: item, quantity, total points and money, the balance; the code by SMS.
    page.get_by_test_id("buy-button").tap()
    page.get_by_test_id("confirm").wait_for()
    assert page.url.endswith(f"#/checkout/{tea['goods_id']}/T1/2")
    fill_address(page)
    total = 2 * 12_900
    expect(page.get_by_test_id("confirm-title")).to_have_text(tea["title"])
    expect(page.get_by_test_id("confirm-spec")).to_have_text("100 g tin")
    expect(page.get_by_test_id("confirm-quantity")).to_have_text("2")
    expect(page.get_by_test_id("confirm-total-points")).to_have_attribute("data-points", str(total))
    expect(page.get_by_test_id("confirm-total-points")).to_contain_text("25,800")
    expect(page.get_by_test_id("confirm-money")).to_have_text("¥258.00")
    expect(page.get_by_test_id("confirm-balance")).to_have_attribute("data-points", "50000")
    expect(page.get_by_test_id("confirm-after")).to_have_text("24,200 pts")
    assert page.get_by_test_id("password-input").count() == 0
    otp_input = page.get_by_test_id("otp-input")
    assert otp_input.get_attribute("inputmode") == "numeric"
    pay = page.get_by_test_id("pay-button")
    expect(pay).to_have_text("Pay 25,800 pts")
    shot(page, "confirm")

    # Pay without a code: told what to do, nothing sent.
    pay.tap()
    expect(page.get_by_test_id("error-message")).to_contain_text("Send code")

    seen = len(outbox_lines(system))
    page.get_by_test_id("send-otp").tap()
    expect(page.get_by_test_id("otp-status")).to_contain_text("***0000")
    expect(page.get_by_test_id("send-otp")).to_be_disabled()  # resend waits
    sent = sms_code(system, mobile, seen)

    # A wrong code: refused with its own words, and nothing is spent.
    otp_input.fill(f"{(int(sent) + 1) % 1_000_000:06d}")
    pay.tap()
    error = page.get_by_test_id("error-message")
    expect(error).to_have_attribute("data-error-code", "wrong_otp")
    expect(error.get_by_test_id("error-friendly")).to_have_text("That code isn’t right. Check the text message and try again.")
    expect(error).to_have_text("That code isn’t right. Check the text message and try again.")  # the words only
    expect(otp_input).to_have_value("")
    assert api_get(page, system.base_url, f"/api/{code}/wallet")["balance"] == 50_000
    assert api_get(page, system.base_url, f"/api/{code}/orders")["orders"] == []
    shot(page, "wrong-code")

    # The right code; the first answer is lost on the way back (the order is placed, the phone sees a network
    # error). Paying again carries the same Idempotency-Key and gets the same order: one spend.
    keys: list[str] = []
    lost = {"done": False}

    def lose_first_answer(route):
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key", ""))
        if not lost["done"]:
            lost["done"] = True
            route.fetch()  # reaches the server, which places the order
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(rf"/api/{re.escape(code)}/orders(\?[^/]*)?$"), lose_first_answer)  # with its ?lang=
    otp_input.fill(sent)
    pay.tap()
    expect(error).to_have_attribute("data-error-code", "network")
    expect(error).to_contain_text("never be charged twice")
    expect(pay).to_be_enabled()
    shot(page, "network-error")
    assert len(api_get(page, system.base_url, f"/api/{code}/orders")["orders"]) == 1  # it did go through
    pay.tap()

    success = page.get_by_test_id("order-success")
    success.wait_for()
    assert len(keys) == 2 and keys[0] == keys[1] and re.fullmatch(r"[0-9a-f]{32}", keys[0]), keys
    order_id = page.get_by_test_id("order-id").inner_text()
    assert re.fullmatch(r"O[0-9A-F]{19}", order_id), order_id
    expect(success.get_by_test_id("order-points")).to_have_attribute("data-points", str(total))
    expect(success.get_by_test_id("order-status")).to_have_attribute("data-status", "paid")
    expect(success.get_by_test_id("order-status")).to_have_text("Paid")
    expect(page.get_by_test_id("wallet-balance")).to_have_attribute("data-balance", str(50_000 - total))
    assert re.search(r"#/done/O[0-9A-F]{19}$", page.url), page.url
    page.unroute(re.compile(rf"/api/{re.escape(code)}/orders$"))
    shot(page, "success")

    # The wallet dropped by exactly the order's points, once.
    wallet = api_get(page, system.base_url, f"/api/{code}/wallet")
    assert wallet["balance"] == 50_000 - total and wallet["spent"] == total, wallet
    orders = api_get(page, system.base_url, f"/api/{code}/orders")["orders"]
    assert [o["order_id"] for o in orders] == [order_id]

    # My orders (from the header) and the order's own page.
    page.get_by_test_id("orders-link").tap()
    row = page.get_by_test_id("order-row")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-order-id", order_id)
    expect(row.get_by_test_id("order-points")).to_have_attribute("data-points", str(total))
    expect(row.get_by_test_id("order-status")).to_have_text("Paid")
    expect(row.get_by_test_id("order-title")).to_have_text(tea["title"])
    shot(page, "orders")
    row.tap()
    detail = page.get_by_test_id("order-detail")
    detail.wait_for()
    expect(detail.get_by_test_id("order-id")).to_have_text(order_id)
    # The workflow splits the paid order at once: its lines then show inside its one parcel (points per unit
    # only on the unsplit order's lines; the order's points are checked just below either way).
    lines = detail.locator("[data-testid=order-line], [data-testid=parcel-line]")
    expect(lines).to_have_count(1)
    expect(lines).to_contain_text("× 2")
    expect(detail.get_by_test_id("order-points")).to_have_attribute("data-points", str(total))
    shot(page, "order-detail")

    # Over the balance: the confirm page says so and Pay is off.
    page.goto(f"{system.base_url}/store/{code}#/checkout/{otp_shop['pricey']['goods_id']}/E1/1")
    page.get_by_test_id("confirm").wait_for()
    expect(page.get_by_test_id("insufficient-warning")).to_be_visible()
    expect(page.get_by_test_id("insufficient-warning")).to_contain_text("24,200")
    expect(page.get_by_test_id("pay-button")).to_be_disabled()
    shot(page, "insufficient")

    assert problems == [], problems
    context.close()


# --- a remote-points channel with its own payment password ---------------------------

class ChannelStandIn:
    """The channel's back end: password "123456" is right; its points API is down (answers 503)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.calls.append((self.path, data))
                if self.path.endswith("/password/verify"):
                    status, answer = 200, {"valid": data.get("password") == "123456"}
                else:
                    status, answer = 503, {"error": "maintenance"}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def channel_api():
    stand_in = ChannelStandIn()
    yield stand_in
    stand_in.close()


def test_remote_points_with_a_payment_password(system, ops, browser, channel_api):
    from playwright.sync_api import expect
    tag = uuid.uuid4().hex[:6]
    sup = make_supplier(system, ops)
    mug = make_goods(ops, sup, f"Travel Mug {tag}", "Kitchen", [("M1", "450 ml", 5_000, 20)])
    code, secret = make_channel(ops, f"Sky Miles {tag}", points_mode="remote", payment_auth="channel_password",
                                api_base_url=channel_api.url)
    open_period(ops, code)
    price_in(ops, code, mug["goods_id"], {"M1": 6_900})

    context = phone(browser)
    page = context.new_page()
    problems = watch(page, system.base_url)
    page.goto(entry_link(system.base_url, code, secret, f"M-{uuid.uuid4().hex[:8]}", points="20000",
                         target=f"/goods/{mug['goods_id']}"))
    page.get_by_test_id("goods-detail").wait_for()
    expect(page.get_by_test_id("wallet-balance")).to_have_attribute("data-balance", "20000")
    page.get_by_test_id("buy-button").tap()
    page.get_by_test_id("confirm").wait_for()
    expect(page.get_by_test_id("confirm-total-points")).to_have_attribute("data-points", "6900")
    fill_address(page)
    password = page.get_by_test_id("password-input")
    assert password.get_attribute("type") == "password"
    assert password.get_attribute("inputmode") == "numeric"
    assert page.get_by_test_id("send-otp").count() == 0

    password.fill("000000")
    page.get_by_test_id("pay-button").tap()
    error = page.get_by_test_id("error-message")
    expect(error).to_have_attribute("data-error-code", "wrong_password")
    expect(error).to_contain_text("That payment password isn’t right")
    assert api_get(page, system.base_url, f"/api/{code}/orders")["orders"] == []
    shot(page, "wrong-password")

    password.fill("123456")
    page.get_by_test_id("pay-button").tap()
    success = page.get_by_test_id("order-success")
    success.wait_for(timeout=30_000)
    expect(success.get_by_test_id("order-status")).to_have_attribute("data-status", "awaiting_deduction")
    expect(success).to_contain_text("waiting for your points provider to confirm")
    expect(success.get_by_test_id("order-points")).to_have_attribute("data-points", "6900")
    shot(page, "awaiting")
    assert [p for p, _ in channel_api.calls].count("/password/verify") == 2
    assert any(p == "/points/deduct" for p, _ in channel_api.calls)

    page.get_by_test_id("my-orders").tap()
    row = page.get_by_test_id("order-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("order-status")).to_have_text("Awaiting confirmation")
    row.tap()
    expect(page.get_by_test_id("order-note")).to_contain_text("Waiting for your points provider to confirm")
    shot(page, "awaiting-detail")
    assert problems == [], problems
    context.close()
