"""The store in Chinese and English, over HTTP (issue 15, item 5): goods named per language through the supply
API (the plain title and description still work alone), the member API in the member's language or the
channel's default, which ops set (audited, a bad value refused with a stable code), search in every language
(茶 finds tea), a language change of approved goods reviewed like any content change; and who ships a parcel,
named to the member only."""
from __future__ import annotations

import json

import requests

from checkout_helpers import make_shop, uid
from chalicelib.channels import locales
from chalicelib.supply.models import Supplier
from helpers import approve, assert_error, audit_rows, channel, ok, publish, sku, supplier_api
from test_catalog import member, put_pool

TEA = {"zh-CN": {"title": "西湖龙井茶", "description": "杭州西湖春茶。"},
       "en": {"title": "West Lake Longjing tea", "description": "Spring tea from Hangzhou."}}


def test_pick_and_text_rules():
    assert locales.pick("en", "zh-CN") == "en"
    assert locales.pick(None, "zh-CN") == "zh-CN"
    assert locales.pick("fr", "zh-CN") == "zh-CN"  # a language the store has not: the channel's
    assert locales.pick(None, None) == locales.DEFAULT == "en"
    assert locales.text_of("Tea", "Plain", TEA, "zh-CN") == ("西湖龙井茶", "杭州西湖春茶。")
    assert locales.text_of("Tea", "Plain", {"en": {"title": "Tea (en)", "description": ""}}, "en") == (
        "Tea (en)", "Plain")  # a language without a description falls back to the plain one
    assert locales.text_of("Tea", "Plain", None, "zh-CN") == ("Tea", "Plain")
    assert locales.matches("Tea", TEA, "茶") and locales.matches("Tea", TEA, "LONGJING")
    assert not locales.matches("Tea", TEA, "咖啡")


def test_goods_in_two_languages_search_and_the_channels_default(system, ops):
    sup, supplier_id = supplier_api(system, ops)
    tea = approve(ops, publish(sup, title="Tea gift box", description="Plain", locales=TEA, skus=[sku("S1", 1000)]))
    assert tea["locales"] == TEA
    plain = approve(ops, publish(sup, title="Kettle 1.7 L", description="Steel", skus=[sku("S1", 2000)]))
    assert plain["locales"] == {}
    view, secret = channel(ops)
    code = view["code"]
    assert view["default_locale"] == "en"
    for g in (tea, plain):
        put_pool(ops, code, g["goods_id"])
    api = member(system, code, secret)

    def titles(**query) -> dict[str, str]:
        return {c["goods_id"]: c["title"] for c in ok(api.get(f"/api/{code}/catalog", params=query))["items"]}

    assert titles() == {tea["goods_id"]: "West Lake Longjing tea", plain["goods_id"]: "Kettle 1.7 L"}
    assert titles(lang="zh-CN") == {tea["goods_id"]: "西湖龙井茶", plain["goods_id"]: "Kettle 1.7 L"}
    assert set(titles(q="茶")) == {tea["goods_id"]}  # Chinese finds it in either language
    assert set(titles(q="茶", lang="en")) == {tea["goods_id"]}
    assert set(titles(q="longjing", lang="zh-CN")) == {tea["goods_id"]}
    for path in ("catalog", "topics", f"goods/{tea['goods_id']}", "orders", "cart"):  # a language it has not: 422
        assert_error(api.get(f"/api/{code}/{path}", params={"lang": "fr"}), 422, "validation_error")
    assert_error(api.get(f"/api/{code}/wallet", params={"fresh": "yes"}), 422, "validation_error")
    detail = ok(api.get(f"/api/{code}/goods/{tea['goods_id']}", params={"lang": "zh-CN"}))
    assert (detail["title"], detail["description"]) == ("西湖龙井茶", "杭州西湖春茶。")
    assert detail["shipped_by"] == Supplier.get(supplier_id).name

    # Ops make the store Chinese by default: audited, with its old and new value; a bad value is refused.
    assert_error(ops.patch(f"/ops/channels/{code}", json={"default_locale": "fr"}), 422, "validation_error")
    assert ok(ops.patch(f"/ops/channels/{code}", json={"default_locale": "zh-CN"}))["default_locale"] == "zh-CN"
    [row] = [r for r in ok(ops.get(f"/ops/channels/{code}/audit"))["audit"] if r["field"] == "default_locale"]
    assert (row["old"], row["new"]) == (None, "zh-CN"), row
    assert titles()[tea["goods_id"]] == "西湖龙井茶"
    assert titles(lang="en")[tea["goods_id"]] == "West Lake Longjing tea"  # the member's own choice wins
    home = ok(api.get(f"/api/{code}/topics"))
    assert home["channel"]["default_locale"] == "zh-CN"


def test_bad_language_text_is_refused_before_any_write(system, ops):
    sup, _ = supplier_api(system, ops)
    ref = uid("ref-")
    for bad in ({"fr": {"title": "Thé"}}, {"zh-CN": {"title": ""}}, {"en": {"title": "x" * 201}},
                {"en": {"title": "Tea", "desc": "x"}}, {"en": "Tea"}):
        answer = sup.post("/supplier/goods", json={"ref": ref, "title": "Tea", "category": "food", "locales": bad,
                                                   "skus": [sku()]})
        assert_error(answer, 422, "validation_error")
        assert "Traceback" not in answer.text
    assert all(g["ref"] != ref for g in ok(sup.get("/supplier/goods"))["goods"])


def test_a_language_change_of_goods_on_sale_is_reviewed_first(system, ops):
    sup, _ = supplier_api(system, ops)
    goods = approve(ops, publish(sup, title="Tea gift box", skus=[sku("S1", 1000)]))
    view, secret = channel(ops, default_locale="zh-CN")
    put_pool(ops, view["code"], goods["goods_id"])
    api = member(system, view["code"], secret)
    edited = ok(sup.patch(f"/supplier/goods/{goods['goods_id']}", json={"locales": TEA}))
    assert edited["revision"]["locales"] == TEA and edited["locales"] == {}
    assert ok(api.get(f"/api/{view['code']}/goods/{goods['goods_id']}"))["title"] == "Tea gift box"  # not yet
    [row] = audit_rows(sup, f"/supplier/goods/{goods['goods_id']}/audit", "revision_edited")
    assert (row["field"], json.loads(row["new"])) == ("locales", TEA)  # audited as JSON, like other content
    ok(ops.post(f"/ops/goods/{goods['goods_id']}/revision/approve", json={}))
    assert ok(api.get(f"/api/{view['code']}/goods/{goods['goods_id']}"))["title"] == "西湖龙井茶"


def test_the_member_sees_who_ships_each_parcel_and_the_channel_does_not(system, ops):
    from chalicelib.orders import parcels

    shop = make_shop(system, ops, "hosted")
    buyer = shop.member()
    ok(shop.grant(buyer, 10_000), 201)
    placed = shop.place(requests.Session(), buyer)
    assert placed.status == 201, placed.body
    (parcel,) = parcels.split(placed.order_id)
    name = Supplier.get(parcel.supplier_id).name
    mine = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders/{placed.order_id}", headers=shop.auth(buyer),
                           timeout=30))
    assert [p["shipped_by"] for p in mine["parcels"]] == [name]
    listed = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders", headers=shop.auth(buyer), timeout=30))
    assert [p["shipped_by"] for o in listed["orders"] for p in o["parcels"]] == [name]
    from chalicelib.channels.signing import request_headers  # the channel's own, signed read of the order
    path = f"/partner/{shop.code}/orders/{placed.order_id}"
    theirs = requests.get(shop.base_url + path, headers=request_headers("GET", path, b"", shop.secret), timeout=30)
    assert theirs.status_code == 200, theirs.text
    assert all("shipped_by" not in p for p in theirs.json()["parcels"]) and name not in theirs.text


def test_orders_read_in_the_members_language(system, ops):
    from chalicelib.orders import parcels

    shop = make_shop(system, ops, "hosted")
    sup = {"X-Api-Key": shop.supplier_key}
    ok(requests.patch(f"{shop.base_url}/supplier/goods/{shop.goods_id}", json={"locales": TEA}, headers=sup,
                      timeout=30))
    ok(ops.post(f"/ops/goods/{shop.goods_id}/revision/approve", json={}))
    buyer = shop.member()
    ok(shop.grant(buyer, 10_000), 201)
    placed = shop.place(requests.Session(), buyer)
    assert placed.status == 201, placed.body
    parcels.split(placed.order_id)

    def titles(lang: str) -> list[str]:
        one = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders/{placed.order_id}", params={"lang": lang},
                              headers=shop.auth(buyer), timeout=30))
        listed = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders", params={"lang": lang},
                                 headers=shop.auth(buyer), timeout=30))["orders"]
        return [line["title"] for o in (one, *listed) for line in [*o["lines"], *o["parcels"][0]["lines"]]]

    assert titles("zh-CN") == ["西湖龙井茶"] * 4
    assert titles("en") == ["West Lake Longjing tea"] * 4
