"""The member's catalog and sessions over real HTTP on Dynoxide (capability 6).

A member sees exactly its channel's sub-pool, on sale, at its channel's
prices; paging, filters and topics; and a session never reaches another
channel's data.
"""
from __future__ import annotations

import base64
import json
import math
import time

import pytest
import requests

from chalicelib.members import sessions
from conftest import Api
from helpers import approve, assert_error, channel, ok, publish, sku, supplier_api, uid
from image_helpers import png, upload_image
from tools.sign import entry_link

RATE = 37   # points per yuan: odd on purpose, so rounding shows
TEA_PNG = png(rgb=(60, 140, 60))


# --- helpers ---------------------------------------------------------------------------------------

def points(price: int, rate: int = RATE) -> int:
    return math.ceil(price * rate / 100)


def member_token(system, code: str, secret: str, external_id: str | None = None) -> str:
    link = entry_link(system.base_url, code, secret, external_id or uid("M-"))
    r = requests.get(link, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    return r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def member(system, code: str, secret: str) -> Api:
    return Api(system.base_url, {"Authorization": f"Bearer {member_token(system, code, secret)}"})


def new_goods(ops: Api, sup: Api, skus: list[dict], base: dict[str, int] | None = None, **fields) -> dict:
    goods = publish(sup, skus=skus, **fields)
    return approve(ops, goods, base)


def put_pool(ops: Api, code: str, goods_id: str, prices: dict | None = None) -> None:
    ok(ops.put(f"/ops/channels/{code}/pool/{goods_id}", json={"prices": prices or {}}))


def all_pages(api: Api, code: str, limit: int, **query) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        body = ok(api.get(f"/api/{code}/catalog", params=params))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return pages
        assert len(pages) < 50, "paging does not end"


def ids(cards: list[dict]) -> list[str]:
    return [c["goods_id"] for c in cards]


# --- one store for the read-only tests -------------------------------------------------------------

@pytest.fixture(scope="module")
def sup(system, ops):
    client, _ = supplier_api(system, ops)
    return client


@pytest.fixture(scope="module")
def shop(system, ops, sup):
    """Channel with every kind of price, goods off sale, goods left out, and topics."""
    view, secret = channel(ops, points_per_yuan=RATE)
    code = view["code"]
    g = {}
    tea_image = upload_image(sup, TEA_PNG)
    g["explicit"] = new_goods(ops, sup, [sku("S1", 999, stock=50)], {"S1": 2000}, title="Longjing Green Tea",
                              category="food", images=[tea_image])
    g["markup"] = new_goods(ops, sup, [sku("S1", 999, stock=50)], {"S1": 2000}, title="Oolong TEA gift",
                            category="food")
    g["base"] = new_goods(ops, sup, [sku("S1", 999, stock=50)], {"S1": 1999}, title="USB cable", category="digital")
    g["multi"] = new_goods(ops, sup, [sku("S1", 500, stock=0, spec="small"), sku("S2", 700, stock=5, spec="large"),
                                      sku("S3", 300, stock=100, spec="tiny")],
                           {"S1": 1000, "S2": 1400, "S3": 333}, title="Phone case", category="digital")
    g["off_sale"] = new_goods(ops, sup, [sku("S1", 100)], {"S1": 200}, title="Tea that left", category="food")
    g["ops_off"] = new_goods(ops, sup, [sku("S1", 100)], {"S1": 200}, title="Tea ops pulled", category="food")
    g["not_pool"] = new_goods(ops, sup, [sku("S1", 100)], {"S1": 200}, title="Tea elsewhere", category="food")

    put_pool(ops, code, g["explicit"]["goods_id"], {"S1": {"price": 1500}})
    put_pool(ops, code, g["markup"]["goods_id"],
             {"S1": {"markup": {"payment_bps": 60, "platform_bps": 500, "channel_bps": 1000}}})
    put_pool(ops, code, g["base"]["goods_id"])
    put_pool(ops, code, g["multi"]["goods_id"], {"S1": {"price": 800}, "S3": {"markup": {"fixed": 50}}})
    put_pool(ops, code, g["off_sale"]["goods_id"])
    put_pool(ops, code, g["ops_off"]["goods_id"])
    ok(sup.post(f"/supplier/goods/{g['off_sale']['goods_id']}/off-sale"))
    ok(ops.post(f"/ops/goods/{g['ops_off']['goods_id']}/off-sale"))

    gid = {k: v["goods_id"] for k, v in g.items()}
    ok(ops.put(f"/ops/channels/{code}/topics/t-late", json={"title": "Later", "position": 5,
                                                            "goods_ids": [gid["base"]]}))
    ok(ops.put(f"/ops/channels/{code}/topics/t-first", json={
        "title": "Tea time", "position": 1,
        "goods_ids": [gid["markup"], gid["off_sale"], gid["not_pool"], gid["explicit"], gid["ops_off"]]}))
    ok(ops.put(f"/ops/channels/{code}/topics/t-mid", json={"title": "Gadgets", "position": 3,
                                                           "goods_ids": [gid["multi"], gid["base"]]}))
    return {"code": code, "secret": secret, "goods": gid, "member": member(system, code, secret)}


# expected channel prices, computed here from the rules, independently of the app
EXPLICIT = 1500
MARKUP = math.ceil(999 * (10_000 + 60 + 500 + 1000) / 10_000)      # 1155
BASE = 1999
MULTI = {"S1": 800, "S2": 1400, "S3": 350}                           # explicit, base, markup fixed +50


def test_catalog_shows_exactly_the_sub_pool_on_sale_at_channel_prices(shop):
    g = shop["goods"]
    cards = {c["goods_id"]: c for c in ok(shop["member"].get(f"/api/{shop['code']}/catalog"))["items"]}
    assert set(cards) == {g["explicit"], g["markup"], g["base"], g["multi"]}
    expected = {g["explicit"]: EXPLICIT, g["markup"]: MARKUP, g["base"]: BASE, g["multi"]: min(MULTI.values())}
    for goods_id, price in expected.items():
        assert cards[goods_id]["price_from"] == price, cards[goods_id]
        assert cards[goods_id]["points_from"] == points(price), cards[goods_id]
    assert MARKUP == 1155 and points(MARKUP) == 428
    image = requests.get(cards[g["explicit"]]["image"], timeout=30)   # a presigned link to the approved image
    assert image.status_code == 200 and image.content == TEA_PNG
    assert cards[g["markup"]]["image"] is None                             # no image: the store draws a letter
    assert cards[g["explicit"]]["category"] == "food" and cards[g["explicit"]]["title"] == "Longjing Green Tea"
    assert cards[g["multi"]]["in_stock"] is True


def test_catalog_never_shows_settlement_or_base_price_fields(shop):
    text = shop["member"].get(f"/api/{shop['code']}/catalog").text + \
        shop["member"].get(f"/api/{shop['code']}/goods/{shop['goods']['multi']}").text
    assert "settlement" not in text and "base_price" not in text and "supplier" not in text


def test_detail_skus_and_prices_equal_the_catalog(shop):
    api, code, g = shop["member"], shop["code"], shop["goods"]
    cards = {c["goods_id"]: c for c in ok(api.get(f"/api/{code}/catalog"))["items"]}
    for goods_id, card in cards.items():
        detail = ok(api.get(f"/api/{code}/goods/{goods_id}"))
        assert detail["goods_id"] == goods_id and detail["title"] == card["title"]
        assert min(s["price"] for s in detail["skus"]) == card["price_from"]
        assert min(s["points"] for s in detail["skus"]) == card["points_from"]
        for s in detail["skus"]:
            assert s["points"] == points(s["price"])
    multi = ok(api.get(f"/api/{code}/goods/{g['multi']}"))
    assert [(s["sku_id"], s["spec"], s["price"], s["stock_status"]) for s in multi["skus"]] == [
        ("S1", "small", MULTI["S1"], "sold_out"), ("S2", "large", MULTI["S2"], "low"),
        ("S3", "tiny", MULTI["S3"], "in_stock")]


@pytest.mark.parametrize("which", ["off_sale", "ops_off", "not_pool"])
def test_goods_off_sale_or_outside_the_pool_never_show(shop, which):
    api, code, goods_id = shop["member"], shop["code"], shop["goods"][which]
    assert_error(api.get(f"/api/{code}/goods/{goods_id}"), 404, "goods_not_found")
    for pages in (all_pages(api, code, 2), all_pages(api, code, 50, q="tea"), all_pages(api, code, 5, category="food")):
        assert goods_id not in [i for page in pages for i in ids(page)]
    topics = ok(api.get(f"/api/{code}/topics"))["topics"]
    assert goods_id not in [c["goods_id"] for t in topics for c in t["items"]]


def test_unknown_goods_is_404(shop):
    assert_error(shop["member"].get(f"/api/{shop['code']}/goods/GNOPE"), 404, "goods_not_found")


def test_category_filter_and_keyword_search(shop):
    api, code, g = shop["member"], shop["code"], shop["goods"]
    food = ids(ok(api.get(f"/api/{code}/catalog", params={"category": "food"}))["items"])
    assert sorted(food) == sorted([g["explicit"], g["markup"]])
    digital = ids(ok(api.get(f"/api/{code}/catalog", params={"category": "digital"}))["items"])
    assert sorted(digital) == sorted([g["base"], g["multi"]])
    assert ok(api.get(f"/api/{code}/catalog", params={"category": "Food"}))["items"] == []
    for q in ("tea", "TEA", "Tea", "tEa"):
        found = ids(ok(api.get(f"/api/{code}/catalog", params={"q": q}))["items"])
        assert sorted(found) == sorted([g["explicit"], g["markup"]]), q
    assert ids(ok(api.get(f"/api/{code}/catalog", params={"q": "oolong"}))["items"]) == [g["markup"]]
    assert ids(ok(api.get(f"/api/{code}/catalog", params={"q": "tea", "category": "digital"}))["items"]) == []
    assert ok(api.get(f"/api/{code}/catalog", params={"q": "zzz-nothing"}))["items"] == []


def test_topics_in_position_order_with_ops_goods_order(shop):
    api, code, g = shop["member"], shop["code"], shop["goods"]
    body = ok(api.get(f"/api/{code}/topics"))
    topics = body["topics"]
    assert [t["topic_id"] for t in topics] == ["t-first", "t-mid", "t-late"]
    assert [t["title"] for t in topics] == ["Tea time", "Gadgets", "Later"]
    assert ids(topics[0]["items"]) == [g["markup"], g["explicit"]]
    assert ids(topics[1]["items"]) == [g["multi"], g["base"]]
    assert ids(topics[2]["items"]) == [g["base"]]
    prices = {c["goods_id"]: c["price_from"] for t in topics for c in t["items"]}
    assert prices == {g["markup"]: MARKUP, g["explicit"]: EXPLICIT, g["multi"]: 350, g["base"]: BASE}
    assert sorted(body["categories"]) == ["digital", "food"]
    channel_view = body["channel"]
    assert (channel_view["code"], channel_view["points_per_yuan"], channel_view["points_mode"]) == \
        (code, RATE, "hosted")
    assert "secret" not in channel_view and shop["secret"] not in json.dumps(body)


def test_topic_reorder_by_ops_is_seen_at_once(system, ops, sup):
    view, secret = channel(ops)
    code = view["code"]
    a = new_goods(ops, sup, [sku()])["goods_id"]
    b = new_goods(ops, sup, [sku()])["goods_id"]
    for goods_id in (a, b):
        put_pool(ops, code, goods_id)
    ok(ops.put(f"/ops/channels/{code}/topics/x", json={"title": "X", "position": 2, "goods_ids": [a, b]}))
    ok(ops.put(f"/ops/channels/{code}/topics/y", json={"title": "Y", "position": 1, "goods_ids": [b]}))
    api = member(system, code, secret)
    topics = ok(api.get(f"/api/{code}/topics"))["topics"]
    assert [(t["topic_id"], ids(t["items"])) for t in topics] == [("y", [b]), ("x", [a, b])]
    ok(ops.put(f"/ops/channels/{code}/topics/x", json={"title": "X", "position": 0, "goods_ids": [b, a]}))
    ok(ops.delete(f"/ops/channels/{code}/topics/y"))
    topics = ok(api.get(f"/api/{code}/topics"))["topics"]
    assert [(t["topic_id"], ids(t["items"])) for t in topics] == [("x", [b, a])]


# --- paging -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def many(system, ops, sup):
    """60 approved goods (categories and titles varied) and 3 that went off sale."""
    goods = []
    for i in range(60):
        title = f"Green Tea no.{i}" if i % 3 == 0 else f"Phone case no.{i}"
        category = "food" if i % 2 == 0 else "digital"
        goods.append(new_goods(ops, sup, [sku("S1", 1000 + i)], {"S1": 2000 + i}, title=title, category=category))
    gone = [new_goods(ops, sup, [sku("S1", 1000)], {"S1": 2000}, title="Green Tea gone", category="food")
            for _ in range(3)]
    return goods, gone


def test_paging_25_goods_limit_10_gives_10_10_5(system, ops, many):
    goods, _ = many
    view, secret = channel(ops)
    code = view["code"]
    for g in goods[:25]:
        put_pool(ops, code, g["goods_id"])
    pages = all_pages(member(system, code, secret), code, 10)
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [i for p in pages for i in ids(p)]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == {g["goods_id"] for g in goods[:25]}


def test_paging_across_batches_with_off_sale_goods_covers_each_once(system, ops, sup, many):
    goods, gone = many
    view, secret = channel(ops)
    code = view["code"]
    for g in goods + gone:
        put_pool(ops, code, g["goods_id"])
    for g in gone:
        ok(sup.post(f"/supplier/goods/{g['goods_id']}/off-sale"))
    api = member(system, code, secret)
    on_sale = {g["goods_id"] for g in goods}
    for limit in (7, 20, 50):
        pages = all_pages(api, code, limit)
        seen = [i for p in pages for i in ids(p)]
        assert len(seen) == len(set(seen)), f"duplicates with limit {limit}"
        assert set(seen) == on_sale, f"limit {limit}"
        full = [len(p) for p in pages if p]
        assert full == [limit] * (60 // limit) + ([60 % limit] if 60 % limit else []), (limit, full)
        assert all(pages[:-1]), "only the last page may be empty (a full page cannot know nothing follows)"
    food = {g["goods_id"] for i, g in enumerate(goods) if i % 2 == 0}
    pages = all_pages(api, code, 10, category="food")
    seen = [i for p in pages for i in ids(p)]
    assert [len(p) for p in pages if p] == [10, 10, 10] and all(pages[:-1])
    assert len(seen) == len(set(seen)) and set(seen) == food
    tea = {g["goods_id"] for i, g in enumerate(goods) if i % 3 == 0}
    pages = all_pages(api, code, 6, q="TEA")
    seen = [i for p in pages for i in ids(p)]
    assert len(seen) == len(set(seen)) and set(seen) == tea
    tea_food = tea & food
    pages = all_pages(api, code, 4, q="tea", category="food")
    seen = [i for p in pages for i in ids(p)]
    assert len(seen) == len(set(seen)) and set(seen) == tea_food


def test_page_limits(system, ops, many):
    goods, _ = many
    view, secret = channel(ops)
    code = view["code"]
    for g in goods[:55]:
        put_pool(ops, code, g["goods_id"])
    api = member(system, code, secret)
    assert len(ok(api.get(f"/api/{code}/catalog"))["items"]) == 20                   # default
    assert len(ok(api.get(f"/api/{code}/catalog", params={"limit": 500}))["items"]) == 50   # capped
    assert len(ok(api.get(f"/api/{code}/catalog", params={"limit": 0}))["items"]) == 1
    assert_error(api.get(f"/api/{code}/catalog", params={"limit": "ten"}), 422, "validation_error", "limit")


@pytest.mark.parametrize("cursor", [
    "not-a-cursor",
    "!!!!",
    base64.urlsafe_b64encode(b"{}").decode(),
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(json.dumps("G1").encode()).decode(),
])
def test_invalid_cursor(shop, cursor):
    r = shop["member"].get(f"/api/{shop['code']}/catalog", params={"cursor": cursor})
    assert_error(r, 400, "invalid_cursor", "cursor")


# --- prices after a supplier's settlement raise ------------------------------------------------------------

def test_sku_below_settlement_after_price_raise_is_not_sold(system, ops):
    sup, _ = supplier_api(system, ops)
    view, secret = channel(ops, points_per_yuan=RATE)
    code = view["code"]
    two = new_goods(ops, sup, [sku("S1", 1000), sku("S2", 1000)], {"S1": 2000, "S2": 2000}, title="Two SKUs")
    one = new_goods(ops, sup, [sku("S1", 1000)], {"S1": 2000}, title="One SKU")
    accepted = new_goods(ops, sup, [sku("S1", 1000)], {"S1": 2000}, title="Loss accepted")
    put_pool(ops, code, two["goods_id"], {"S1": {"price": 1200}, "S2": {"price": 1500}})
    put_pool(ops, code, one["goods_id"], {"S1": {"price": 1100}})
    put_pool(ops, code, accepted["goods_id"], {"S1": {"price": 1100}})
    api = member(system, code, secret)
    cards = {c["goods_id"]: c["price_from"] for c in ok(api.get(f"/api/{code}/catalog"))["items"]}
    assert cards == {two["goods_id"]: 1200, one["goods_id"]: 1100, accepted["goods_id"]: 1100}

    for goods_id in (two["goods_id"], one["goods_id"], accepted["goods_id"]):
        raised = ok(sup.put(f"/supplier/goods/{goods_id}/skus/S1", json={"settlement_price": 1300}))
        assert raised["status"] == "pending_review"
    # in review: gone from the store entirely
    assert ok(api.get(f"/api/{code}/catalog"))["items"] == []
    assert_error(api.get(f"/api/{code}/goods/{two['goods_id']}"), 404, "goods_not_found")

    for goods_id, base in ((two["goods_id"], {"S1": 2600, "S2": 2000}), (one["goods_id"], {"S1": 2600}),
                           (accepted["goods_id"], {"S1": 2600})):
        ok(ops.post(f"/ops/goods/{goods_id}/approve", json={"base_prices": base, "allow_loss": False}))
    # ops explicitly carry the loss on one channel price
    put_pool(ops, code, accepted["goods_id"], {"S1": {"price": 1100, "allow_loss": True}})

    cards = {c["goods_id"]: c for c in ok(api.get(f"/api/{code}/catalog"))["items"]}
    assert set(cards) == {two["goods_id"], accepted["goods_id"]}
    assert cards[two["goods_id"]]["price_from"] == 1500 and cards[two["goods_id"]]["points_from"] == points(1500)
    assert cards[accepted["goods_id"]]["price_from"] == 1100
    detail = ok(api.get(f"/api/{code}/goods/{two['goods_id']}"))
    assert [(s["sku_id"], s["price"]) for s in detail["skus"]] == [("S2", 1500)]
    assert_error(api.get(f"/api/{code}/goods/{one['goods_id']}"), 404, "goods_not_found")
    ok(ops.put(f"/ops/channels/{code}/topics/t", json={"title": "T", "goods_ids": [one["goods_id"], two["goods_id"]]}))
    topic = ok(api.get(f"/api/{code}/topics"))["topics"][0]
    assert [(c["goods_id"], c["price_from"]) for c in topic["items"]] == [(two["goods_id"], 1500)]
    # ops see the unsellable SKU and the accepted loss
    row = next(i for i in ok(ops.get(f"/ops/channels/{code}/pool"))["items"] if i["goods_id"] == one["goods_id"])
    assert row["on_sale"] is False and row["skus"][0]["sellable"] is False
    losses = ok(ops.get(f"/ops/channels/{code}/losses"))["losses"]
    assert [(x["goods_id"], x["loss"]) for x in losses] == [(accepted["goods_id"], 200)]


def test_markup_follows_the_settlement_price_in_force(system, ops):
    sup, _ = supplier_api(system, ops)
    view, secret = channel(ops, points_per_yuan=RATE)
    code = view["code"]
    g = new_goods(ops, sup, [sku("S1", 1000)], {"S1": 3000}, title="Markup")
    put_pool(ops, code, g["goods_id"], {"S1": {"markup": {"platform_bps": 1000}}})
    api = member(system, code, secret)
    assert ok(api.get(f"/api/{code}/goods/{g['goods_id']}"))["skus"][0]["price"] == 1100
    ok(sup.put(f"/supplier/goods/{g['goods_id']}/skus/S1", json={"settlement_price": 1200}))
    ok(ops.post(f"/ops/goods/{g['goods_id']}/approve", json={"base_prices": {"S1": 3000}}))
    sku_view = ok(api.get(f"/api/{code}/goods/{g['goods_id']}"))["skus"][0]
    assert (sku_view["price"], sku_view["points"]) == (1320, points(1320))


# --- sessions ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_channels(system, ops, sup):
    out = []
    for _ in range(2):
        view, secret = channel(ops)
        g = new_goods(ops, sup, [sku()], title="Session goods")
        put_pool(ops, view["code"], g["goods_id"])
        ok(ops.put(f"/ops/channels/{view['code']}/topics/t", json={"title": "T", "goods_ids": [g["goods_id"]]}))
        out.append({"code": view["code"], "secret": secret, "goods_id": g["goods_id"]})
    return out


def test_bearer_and_cookie_sessions_both_work(system, two_channels):
    a = two_channels[0]
    ext = uid("M-")
    token = member_token(system, a["code"], a["secret"], ext)
    url = f"{system.base_url}/api/{a['code']}/me"
    by_bearer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    by_cookie = requests.get(url, headers={"Cookie": f"other=1; cm_session={token}"}, timeout=30)
    assert ok(by_bearer) == ok(by_cookie)
    assert ok(by_bearer)["external_id"] == ext
    # a browser that followed the entry link keeps the cookie and needs nothing else
    browser = requests.Session()
    r = browser.get(entry_link(system.base_url, a["code"], a["secret"], ext), timeout=30)
    assert r.status_code == 200 and r.url.startswith(f"{system.base_url}/store/{a['code']}")
    assert ok(browser.get(f"{system.base_url}/api/{a['code']}/catalog", timeout=30))["items"][0]["goods_id"] == \
        a["goods_id"]


def test_session_of_channel_a_never_reaches_channel_b(system, two_channels):
    a, b = two_channels
    api = member(system, a["code"], a["secret"])
    for path in (f"/api/{b['code']}/catalog", f"/api/{b['code']}/goods/{b['goods_id']}",
                 f"/api/{b['code']}/topics", f"/api/{b['code']}/me", f"/api/{b['code']}/goods/{a['goods_id']}"):
        assert_error(api.get(path), 403, "wrong_channel")
    assert_error(api.get(f"/api/{a['code']}/goods/{b['goods_id']}"), 404, "goods_not_found")
    assert b["goods_id"] not in ids(ok(api.get(f"/api/{a['code']}/catalog"))["items"])
    assert ids(ok(api.get(f"/api/{a['code']}/catalog"))["items"]) == [a["goods_id"]]


def test_missing_tampered_or_expired_session_is_401(system, two_channels):
    a, b = two_channels
    token = member_token(system, a["code"], a["secret"])
    payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**data, "c": b["code"]}, separators=(",", ":")).encode()) \
        .rstrip(b"=").decode()
    longer = base64.urlsafe_b64encode(json.dumps({**data, "x": data["x"] + 86_400}, separators=(",", ":")).encode()) \
        .rstrip(b"=").decode()
    expired, _ = sessions.issue(data["m"], a["code"], now=time.time() - sessions.config.SESSION_SECONDS - 5)
    cases = {
        None: "session_required",
        "garbage": "session_required",
        f"{payload}.{mac[:-2]}xx": "invalid_session",
        f"{forged}.{mac}": "invalid_session",
        f"{longer}.{mac}": "invalid_session",
        f"{payload}.": "invalid_session",
        expired: "session_expired",
    }
    for target in (a["code"], b["code"]):
        for bad, error_code in cases.items():
            headers = {"Authorization": f"Bearer {bad}"} if bad else {}
            r = requests.get(f"{system.base_url}/api/{target}/catalog", headers=headers, timeout=30)
            assert_error(r, 401, error_code)
            r = requests.get(f"{system.base_url}/api/{target}/me",
                             headers={"Cookie": f"cm_session={bad}"} if bad else {}, timeout=30)
            assert_error(r, 401, error_code)
    assert ok(requests.get(f"{system.base_url}/api/{a['code']}/me",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30))["member_id"] == data["m"]


def test_suspended_channel_refuses_even_a_valid_session(system, ops, sup):
    view, secret = channel(ops)
    code = view["code"]
    g = new_goods(ops, sup, [sku()])
    put_pool(ops, code, g["goods_id"])
    api = member(system, code, secret)
    ok(api.get(f"/api/{code}/catalog"))
    ok(ops.post(f"/ops/channels/{code}/suspend"))
    for path in ("catalog", f"goods/{g['goods_id']}", "topics", "me"):
        assert_error(api.get(f"/api/{code}/{path}"), 403, "channel_suspended")
    ok(ops.post(f"/ops/channels/{code}/resume"))
    assert ids(ok(api.get(f"/api/{code}/catalog"))["items"]) == [g["goods_id"]]


def test_catalog_of_unknown_channel(system, two_channels):
    a = two_channels[0]
    api = member(system, a["code"], a["secret"])
    assert_error(api.get("/api/no-such-channel/catalog"), 403, "wrong_channel")
