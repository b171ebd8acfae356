"""The run command's demo, tried as a new user would, and the reference channel back end it starts.

``tools.seed.demo`` is what ``make run`` starts on top of the local system: the demo catalogue, the
reference channel back end configured as both demo channels' back end, a demo period, and points.
A person opens a printed entry link and redeems with the printed payment password in every channel.
"""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests
from standardwebhooks import Webhook

from test_store_browser import browser  # noqa: F401 - the headless Chromium fixture
from tools import reference_channel as ref
from tools.seed import DEMO_PASSWORD, DEMO_POINTS, Demo, demo

SECRET = "test-secret-123"


@pytest.fixture(scope="module")
def shown(system) -> Demo:
    started = demo(system.base_url, system.ops_token)
    yield started
    started.reference.stop()


def _ok(response: requests.Response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


# --- contract v2 signing, as the reference back end implements it ------------------------------

def test_entry_link_test_vector() -> None:
    params = {"member_id": "M 1001/å", "nickname": "张三", "points": "1500", "target": "/goods/G1?x=1&y=2",
              "timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}
    text = ref.string_to_sign(params)
    assert text == ("member_id=M%201001%2F%C3%A5&nickname=%E5%BC%A0%E4%B8%89&nonce=a1b2c3d4e5f6a7b8&points=1500"
                    "&target=%2Fgoods%2FG1%3Fx%3D1%26y%3D2&timestamp=1767225600")
    assert ref.sign(SECRET, text) == "40bb2b5b581590bbdc45f15bc1fd3b0a256efa3b827131f1d11d1abfb494dff6"


def test_server_to_server_test_vector() -> None:
    body = b'{"member_id":"M1001","grant_id":"G-20260101-1","points":500}'
    params = {"timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8", "body_sha256": ref.body_sha256(body)}
    assert params["body_sha256"] == "cbddcd2900655f821f7100e0a6533a8e8d56c0d0207ab961a48de0fb45ef4b61"
    text = ref.string_to_sign(params, "POST", "/partner/bank-a/grants")
    assert text == ("POST\n/partner/bank-a/grants\nbody_sha256=cbddcd2900655f821f7100e0a6533a8e8d56c0d0207ab961a48de0f"
                    "b45ef4b61&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600")
    assert ref.sign(SECRET, text) == "d7442ad6dbc2146d3d5333a0cb03c21aac5de58038f0c3c3c5d0b2c0bb36277b"
    # The verifier accepts exactly that request at its own time, and nothing bound to another route.
    headers = {"X-Timestamp": "1767225600", "X-Nonce": "a1b2c3d4e5f6a7b8",
               "X-Sign": "d7442ad6dbc2146d3d5333a0cb03c21aac5de58038f0c3c3c5d0b2c0bb36277b"}
    signed = ref.request_params("", headers, body)
    with pytest.raises(ref.Refused) as other_route:
        ref.verify_signed_request(signed, "POST", "/partner/bank-a/quota", [SECRET], ref.NonceBook(), 1767225600)
    assert other_route.value.code == "bad_signature"
    ref.verify_signed_request(signed, "POST", "/partner/bank-a/grants", [SECRET], ref.NonceBook(), 1767225600)


def test_bad_keys_and_duplicates_are_refused_before_the_signature() -> None:
    for query, code in (("a=1&a=2", "duplicate_parameter"), ("a%3Db=1", "invalid_parameter"),
                        ("timestamp=1", "duplicate_parameter")):
        with pytest.raises(ref.Refused) as refused:
            ref.request_params(query, {"X-Timestamp": "1"}, b"")
        assert refused.value.code == code, query


# --- the demo, as a person tries it ---------------------------------------------------------

def _enter(link: str) -> requests.Session:
    """Open an entry link in a "browser": follow the 302 into the store, keep the session cookie."""
    browser = requests.Session()
    landed = browser.get(link, timeout=30)
    assert landed.status_code == 200 and "text/html" in landed.headers["Content-Type"], landed.text[:300]
    assert "/store/" in landed.url and browser.cookies.get("cm_session")
    return browser


@pytest.mark.parametrize("code", ["bank-a", "telecom-b"])
def test_redeem_from_a_printed_entry_link(system, ops, shown: Demo, code: str) -> None:
    channel = next(c for c in shown.seeded.channels if c["code"] == code)
    member = channel["members"][0]
    base = f"{system.base_url}/api/{code}"
    browser = _enter(shown.reference.open_store_link(code, member, "signed"))  # the link run_local prints

    me = _ok(browser.get(f"{base}/me", timeout=30))
    assert (me["external_id"], me["channel_code"]) == (member, code)
    catalog = _ok(browser.get(f"{base}/catalog", timeout=30))
    card = next(c for c in catalog["items"] if c["in_stock"])
    goods = _ok(browser.get(f"{base}/goods/{card['goods_id']}", timeout=30))
    sku = goods["skus"][0]

    wallet_before = _ok(browser.get(f"{base}/wallet", timeout=30))["balance"]
    held_before = shown.reference.balance(code, member)
    assert wallet_before == DEMO_POINTS  # granted through the partner API (hosted) / shown from the channel (remote)
    quota_before = _ok(ops.get(f"/ops/channels/{code}/quota"))
    assert quota_before["open"] and quota_before["selling"]

    order = _ok(browser.post(f"{base}/orders", timeout=60, headers={"Idempotency-Key": uuid.uuid4().hex},
                             json={"lines": [{"goods_id": goods["goods_id"], "sku_id": sku["sku_id"], "qty": 1}],
                                   "password": DEMO_PASSWORD}), 201)
    assert order["status"] == "paid", order
    assert order["points"] == sku["points"] > 0

    quota_after = _ok(ops.get(f"/ops/channels/{code}/quota"))
    assert quota_after["remaining"] == quota_before["remaining"] - order["points"]
    assert quota_after["spent"] == quota_before["spent"] + order["points"]
    if channel["points_mode"] == "hosted":
        assert _ok(browser.get(f"{base}/wallet", timeout=30))["balance"] == wallet_before - order["points"]
        assert shown.reference.balance(code, member) == held_before == 0
    else:
        assert shown.reference.balance(code, member) == held_before - order["points"]
        deduction = shown.reference.state()[code]["deductions"][order["order_id"]]
        assert (deduction["outcome"], deduction["points"]) == ("deducted", order["points"])


@pytest.mark.parametrize("code", ["bank-a", "telecom-b"])
def test_demo_goods_show_their_pictures(system, shown: Demo, code: str) -> None:
    """Every demo goods carries the picture its supplier uploaded: the catalog and the detail link PNGs."""
    channel = next(c for c in shown.seeded.channels if c["code"] == code)
    browser = _enter(shown.reference.open_store_link(code, channel["members"][0], "signed"))
    items = _ok(browser.get(f"{system.base_url}/api/{code}/catalog", timeout=30))["items"]
    assert items and all(item["image"] for item in items), items
    pictures = set()
    for item in items:
        picture = requests.get(item["image"], timeout=30)   # a presigned link: no session needed
        assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png", picture.text[:200]
        assert picture.content.startswith(b"\x89PNG\r\n\x1a\n") and picture.content[12:16] == b"IHDR"
        pictures.add(picture.content)
    assert len(pictures) == len(items)                        # each goods its own tile
    detail = _ok(browser.get(f"{system.base_url}/api/{code}/goods/{items[0]['goods_id']}", timeout=30))
    assert len(detail["images"]) == 1
    assert requests.get(detail["images"][0], timeout=30).content.startswith(b"\x89PNG")


def test_wrong_payment_password_is_refused_by_the_reference_back_end(system, shown: Demo) -> None:
    browser = _enter(shown.reference.open_store_link("bank-a", "M1002", "signed"))
    goods_id = _ok(browser.get(f"{system.base_url}/api/bank-a/catalog", timeout=30))["items"][0]["goods_id"]
    sku_id = _ok(browser.get(f"{system.base_url}/api/bank-a/goods/{goods_id}", timeout=30))["skus"][0]["sku_id"]
    refused = browser.post(f"{system.base_url}/api/bank-a/orders", headers={"Idempotency-Key": uuid.uuid4().hex},
                           json={"lines": [{"goods_id": goods_id, "sku_id": sku_id, "qty": 1}], "password": "000000"},
                           timeout=60)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "wrong_password"), refused.text


def test_code_entry_through_the_channel_member_api(system, shown: Demo) -> None:
    """The channel app's tile in code mode: a one-time code the mall exchanges at ``member/exchange``."""
    tile = f"{shown.reference.url}/app/telecom-b/T2002"  # telecom-b's app opens the store with a code
    browser = _enter(tile)
    me = _ok(browser.get(f"{system.base_url}/api/telecom-b/me", timeout=30))
    assert (me["external_id"], me["nickname"]) == ("T2002", "Dee")
    wallet = _ok(browser.get(f"{system.base_url}/api/telecom-b/wallet", timeout=30))
    assert (wallet["points_mode"], wallet["balance"], wallet["stale"]) == (
        "remote", shown.reference.balance("telecom-b", "T2002"), False), wallet  # asked of the back end itself
    # The code was spent by the exchange: the same link replayed is refused.
    first = requests.get(tile, allow_redirects=False, timeout=30).headers["Location"]
    assert requests.get(first, allow_redirects=False, timeout=30).status_code == 302
    again = requests.get(first, allow_redirects=False, timeout=30)
    assert again.status_code == 401, again.text


# --- the reference back end's own rules, over HTTP --------------------------------------------

def _signed_call(shown: Demo, code: str, api: str, payload: dict, secret: str | None = None,
                 path: str | None = None, headers: dict | None = None) -> requests.Response:
    """A call the mall makes to the channel: signed with the path after the registered base URL."""
    body = json.dumps(payload).encode()
    secret = secret or shown.reference.books[code].signing_secrets[0]
    signed = ref.signed_headers(secret, "POST", path or f"/{api}", body)
    return requests.post(f"{shown.reference.api_base_url(code)}/{api}", data=body,
                         headers={**signed, **(headers or {})}, timeout=30)


def test_unsigned_forged_and_replayed_calls_move_no_points(shown: Demo) -> None:
    before = shown.reference.balance("telecom-b", "T2001")
    deduct = {"order_id": f"O{uuid.uuid4().hex[:12]}", "member_id": "T2001", "points": 100}
    assert _ok(requests.post(f"{shown.reference.api_base_url('telecom-b')}/points/deduct", json=deduct,
                             timeout=30), 400)["error"] == "missing_parameter"
    assert _ok(_signed_call(shown, "telecom-b", "points/deduct", deduct, secret="not-the-secret"),
               401)["error"] == "bad_signature"
    assert _ok(_signed_call(shown, "telecom-b", "points/deduct", deduct, path="/points/refund"),
               401)["error"] == "bad_signature"
    secret = shown.reference.books["telecom-b"].signing_secrets[0]
    stale = ref.signed_headers(secret, "POST", "/points/deduct", json.dumps(deduct).encode(), now=time.time() - 400)
    assert _ok(_signed_call(shown, "telecom-b", "points/deduct", deduct, headers=stale), 401)["error"] == \
        "timestamp_expired"
    assert shown.reference.balance("telecom-b", "T2001") == before
    body = json.dumps(deduct).encode()
    signed = ref.signed_headers(secret, "POST", "/points/deduct", body)
    url = f"{shown.reference.api_base_url('telecom-b')}/points/deduct"
    assert _ok(requests.post(url, data=body, headers=signed, timeout=30)) == {"result": "deducted"}
    assert _ok(requests.post(url, data=body, headers=signed, timeout=30), 401)["error"] == "nonce_replayed"
    assert shown.reference.balance("telecom-b", "T2001") == before - 100


def test_deduct_query_cancel_refund(shown: Demo) -> None:
    call = lambda api, payload, status=200: _ok(_signed_call(shown, "telecom-b", api, payload), status)  # noqa: E731
    start = shown.reference.balance("telecom-b", "T2002")
    paid, given_up, unknown = (f"O{uuid.uuid4().hex[:12]}" for _ in range(3))
    deduct = {"order_id": paid, "member_id": "T2002", "points": 300}
    assert call("points/deduct", deduct) == {"result": "deducted"}
    assert call("points/deduct", deduct) == {"result": "deducted"}  # idempotent: taken once
    assert call("points/deduct", dict(deduct, points=301), 409)["reason"] == "order_id_reused"
    assert shown.reference.balance("telecom-b", "T2002") == start - 300
    assert call("points/query", {"order_id": paid}) == {"status": "deducted", "points": 300}
    assert call("points/query", {"order_id": unknown}) == {"status": "not_found"}
    assert call("points/deduct", {"order_id": unknown, "member_id": "T2002", "points": 10**9}, 409)["result"] == \
        "insufficient"
    assert call("points/query", {"order_id": unknown})["status"] == "failed"

    refund = {"refund_id": f"R{uuid.uuid4().hex[:12]}", "order_id": paid, "points": 100}
    assert call("points/refund", refund) == {"result": "refunded"}
    assert call("points/refund", refund) == {"result": "refunded"}  # idempotent by refund_id
    assert call("points/refund", dict(refund, refund_id="R-other", points=201), 409)["reason"] == "exceeds_deduction"
    assert call("points/refund/query", {"refund_id": refund["refund_id"]})["status"] == "refunded"
    assert call("points/refund/query", {"refund_id": "R-none"}) == {"status": "not_found"}
    assert shown.reference.balance("telecom-b", "T2002") == start - 200

    # Cancel after the deduct: the rest comes back; cancel before it: a later deduct is refused.
    assert call("points/cancel", {"order_id": paid}) == {"result": "cancelled", "refunded_points": 200}
    assert call("points/query", {"order_id": paid}) == {"status": "failed", "reason": "cancelled"}
    assert call("points/cancel", {"order_id": given_up}) == {"result": "cancelled", "refunded_points": 0}
    assert call("points/deduct", {"order_id": given_up, "member_id": "T2002", "points": 5}, 409)["reason"] == \
        "cancelled"
    assert shown.reference.balance("telecom-b", "T2002") == start


def test_the_channel_wallet_never_overspends_under_a_burst(shown: Demo) -> None:
    """40 different orders at once on a wallet that holds 10 of them, then 20 sends of one order at once."""
    member = f"T-burst-{uuid.uuid4().hex[:6]}"
    shown.reference.add_member("telecom-b", member, DEMO_PASSWORD, points=1000)
    deduct = lambda order_id: _signed_call(  # noqa: E731
        shown, "telecom-b", "points/deduct", {"order_id": order_id, "member_id": member, "points": 100})
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda i: deduct(f"O-burst-{member}-{i}"), range(40)))
    outcomes = sorted((a.status_code, a.json()["result"]) for a in answers)
    assert outcomes == [(200, "deducted")] * 10 + [(409, "insufficient")] * 30
    assert shown.reference.balance("telecom-b", member) == 0

    shown.reference.add_member("telecom-b", member, DEMO_PASSWORD, points=1000)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: deduct(f"O-once-{member}"), range(20)))
    assert {(a.status_code, a.json()["result"]) for a in answers} == {(200, "deducted")}
    assert shown.reference.balance("telecom-b", member) == 900


def test_webhook_receiver_verifies_standard_webhooks_signatures(shown: Demo) -> None:
    book = shown.reference.books["bank-a"]
    url = f"{shown.reference.api_base_url('bank-a')}/webhooks"
    body = json.dumps({"type": "order.paid", "data": {"order_id": "O123"}}, separators=(",", ":"))
    webhook_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    from chalicelib.channels import webhook_signing
    from chalicelib.channels.models import Channel

    signature = Webhook(book.webhook_secret).sign(webhook_id, now, body)
    old_secret = Webhook(ref.new_webhook_secret()).sign(webhook_id, now, body)  # a rotation sends two
    # The seed gave the channel a signing key: the back end insists on a v1a signature with its public key too.
    signing_key = Channel.get("bank-a").webhook_signing_key
    assert book.webhook_public_keys == [webhook_signing.public_key(signing_key)]
    v1a = webhook_signing.v1a(signing_key, webhook_id, int(now.timestamp()), body)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": f"{old_secret} {signature}", "Content-Type": "application/json"}
    without_v1a = dict(headers)
    headers["webhook-signature"] += f" {v1a}"

    assert _ok(requests.post(url, data=body, headers=headers, timeout=30)) == {"received": True, "duplicate": False}
    assert _ok(requests.post(url, data=body, headers=headers, timeout=30)) == {"received": True, "duplicate": True}
    tampered = body.replace("O123", "O999")
    assert _ok(requests.post(url, data=tampered, headers=headers, timeout=30), 401)["error"] == "bad_signature"
    only_old = dict(headers, **{"webhook-signature": old_secret})
    assert requests.post(url, data=body, headers=only_old, timeout=30).status_code == 401
    # whoever holds only the shared secret (a leak of it) cannot forge a delivery any more
    assert _ok(requests.post(url, data=body, headers=without_v1a, timeout=30), 401)["error"] == "bad_signature"

    received = _ok(requests.get(f"{shown.reference.url}/webhooks.json", timeout=30))["bank-a"]
    mine = [w for w in received if w["webhook_id"] == webhook_id]
    assert [(w["verified"], w["body"]) for w in mine] == [(True, body), (False, tampered), (False, body),
                                                         (False, body)]
    page = requests.get(f"{shown.reference.url}/", timeout=30)
    assert page.status_code == 200 and webhook_id in page.text and "O999" in page.text


def test_demo_channels_hear_about_orders_at_the_reference_back_end(ops, shown: Demo) -> None:
    """The seed points each demo channel's webhook at the reference back end with the channel's own secret."""
    from chalicelib.core.tx import LabelledTransaction
    from chalicelib.partners import events, webhooks

    for channel in shown.seeded.channels:
        code = channel["code"]
        assert shown.reference.books[code].webhook_secret == channel["webhook_secret"]
        assert _ok(ops.get(f"/ops/channels/{code}"))["webhook_url"] == f"{shown.reference.api_base_url(code)}/webhooks"
        tx = LabelledTransaction()
        event_id = events.record(tx, code, "order.paid", f"demo-{uuid.uuid4().hex}", {"points": 100})
        tx.commit()
        assert webhooks.deliver_due(code)["delivered"] >= 1
        received = _ok(requests.get(f"{shown.reference.url}/webhooks.json", timeout=30))[code]
        assert [w["verified"] for w in received if w["webhook_id"] == event_id] == [True]


@pytest.mark.parametrize("code,ref_", [("bank-a", "FV-TEA"), ("telecom-b", "FV-HONEY")])
def test_a_zh_member_of_each_demo_channel_redeems_cancels_and_sees_balances_that_add_up(
        system, browser, shown: Demo, code: str, ref_: str) -> None:
    """The seeded demo in Chromium at 390×844, in Chinese by its ops' default: a new member of each demo channel
    opens the store from the channel app's tile, finds the goods by their Chinese name, is refused in words
    (no address, a wrong password), redeems, cancels, and sees the wallet's own balance at each step (telecom-b:
    the reference back end's) and, in bank-a, four totals that add up (``test_store_zh_browser``'s flow)."""
    from chalicelib.supply.goods import goods_id_for
    from test_store_zh_browser import ZhStore, redeems_cancels_and_balances_add_up
    from tools.seed import CHANNELS, CHINESE, GOODS

    reference = shown.reference
    member = f"Z{uuid.uuid4().hex[:6]}"
    remote = code == "telecom-b"
    reference.add_member(code, member, DEMO_PASSWORD, DEMO_POINTS if remote else 0, "李梅")
    if not remote:
        assert reference.grant(code, member, f"zh-{member}", DEMO_POINTS, shown.period_ends_at).status_code == 201
    supplier = shown.seeded.suppliers[0]
    en_title = next(title for ref_row, title, _, _ in GOODS[0] if ref_row == ref_)
    zh_title, zh_description = CHINESE[ref_]
    cookies: dict[str, str] = {}

    def enter(page) -> None:
        page.goto(f"{reference.url}/app/{code}/{member}")  # the tile: a signed link, or (telecom-b) a one-time code
        cookies.update({c["name"]: c["value"] for c in page.context.cookies()})

    def wallet() -> int:
        if remote:
            return reference.balance(code, member)
        return _ok(requests.get(f"{system.base_url}/api/{code}/wallet", cookies=cookies, timeout=30))["balance"]

    redeems_cancels_and_balances_add_up(system, browser, ZhStore(
        "hosted" if not remote else "remote", code, next(c["name"] for c in CHANNELS if c["code"] == code), enter,
        goods_id_for(supplier["id"], ref_), zh_title, en_title, zh_description, zh_title[:2], supplier["name"],
        wallet, code))
# --- last month's history, settled at start ------------------------------------------------------------

def test_last_month_is_settled_at_start_with_real_lines_on_both_sides(system, ops, shown: Demo) -> None:
    """The demo's history (made through the API, its books moved to last month by the seeding) settled on the
    settlement state machine: every printed statement link shows non-zero lines, for channels and suppliers."""
    from tools.run_local import statement_links

    run = _ok(ops.get(f"/ops/settlement/{shown.settled}"))
    assert run["state"] == "settled" and run["totals"]["channels_due"] > 0 and run["totals"]["suppliers_due"] > 0
    links = statement_links(system.base_url, shown)
    assert len(links) == 4
    for party, link in links.items():
        statement = _ok(ops.get(link.removeprefix(system.base_url)))
        kinds = {k.removesuffix("_amount") for k, v in statement["totals"].items() if k.endswith("_amount") and v}
        if party.startswith("channel."):
            # three orders billed (shipped twice), one refunded after shipment and one cancelled: both returned
            assert {"order", "refund"} <= kinds and statement["totals"]["order_amount"] > 0, statement
        else:
            assert statement["totals"]["payable_amount"] > 0, statement
        assert statement["totals"]["amount_due"] > 0, statement
        page = requests.get(link, headers={"Accept": "text/html", "Authorization": f"Bearer {system.ops_token}"},
                            timeout=30)
        assert page.status_code == 200 and f"Statement {shown.settled}.{party}" in page.text
        assert ("<td>order</td>" if party.startswith("channel.") else "<td>payable</td>") in page.text
    suppliers = [p for p in links if p.startswith("supplier.")]
    clawbacks = [_ok(ops.get(links[p].removeprefix(system.base_url)))["totals"]["clawback_amount"] for p in suppliers]
    assert sum(clawbacks) < 0  # the refunds after shipment came off the suppliers that bear them


def test_the_running_month_is_provisional_for_a_demo_channel_and_supplier(system, shown: Demo) -> None:
    from tools.sign import signed_request

    channel = shown.seeded.channels[0]
    url, headers = signed_request(system.base_url, channel["secret"], "GET",
                                  f"/partner/{channel['code']}/statements/current")
    current = _ok(requests.get(url, headers=headers, timeout=30))
    assert current["provisional"] and current["period_id"] != shown.settled
    supplier = shown.seeded.suppliers[0]
    mine = _ok(requests.get(f"{system.base_url}/supplier/statements/current",
                            headers={"X-Api-Key": supplier["api_key"]}, timeout=30))
    assert mine["provisional"] and mine["party"] == f"supplier.{supplier['id']}"


def test_the_history_goes_to_the_latest_month_not_run_yet(shown: Demo) -> None:
    """A month the schedule already ran keeps its closed statements: the history then goes to the one before."""
    from chalicelib.settlement import periods
    from tools.seed import history_month

    settled = periods.parse(shown.settled)
    assert history_month(settled.ends_at + 2 * 86_400).period_id < shown.settled  # that month has its run
    later = periods.parse(f"{settled.last_day.year + 50}-{settled.last_day.month:02d}")  # a month no run knows
    assert history_month(later.ends_at + 2 * 86_400).period_id == later.period_id
    assert history_month(later.ends_at + 60).period_id != later.period_id  # ended less than an hour ago
