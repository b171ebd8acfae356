"""Channels and their sub-pools over HTTP: configuration, secrets, audit, and channel pricing."""
from __future__ import annotations

import math
import time

from helpers import (
    approve, approved_goods, assert_error, audit_rows, channel, channel_body, ok, pool_item, publish, race, sku,
    supplier_api, uid, value,
)


# --- channels -----------------------------------------------------------------

def test_create_channel_secret_shown_once(system, ops):
    body = channel_body(api_base_url="https://partner.example.com/api", cart_enabled=True)
    created = ok(ops.post("/ops/channels", json=body), 201)
    view, secret = created["channel"], created["secret"]
    code = body["code"]
    assert len(secret) >= 32
    assert view["code"] == code and view["status"] == "active"
    assert view["entry_link"] == f"{system.base_url}/entry/{code}"
    for field in ("name", "contact_name", "phone", "settlement_period", "points_mode", "points_per_yuan",
                  "member_points_cap", "redemption_quota", "cart_enabled"):
        assert view[field] == body[field], field
    assert view["api_base_url"].rstrip("/") == "https://partner.example.com/api"
    assert view["previous_secret_until"] is None
    assert "secret" not in view

    got = ops.get(f"/ops/channels/{code}")
    assert ok(got) == view
    assert "secret" not in got.json() and secret not in got.text
    listed = ops.get("/ops/channels")
    assert [c for c in ok(listed)["channels"] if c["code"] == code] == [view]
    assert secret not in listed.text

    created_row = audit_rows(ops, f"/ops/channels/{code}/audit", "created")
    assert len(created_row) == 1 and created_row[0]["actor"] == "ops:local"
    assert value(created_row[0]["new"])["redemption_quota"] == body["redemption_quota"]
    assert secret not in ops.get(f"/ops/channels/{code}/audit").text


def test_duplicate_channel_code(ops):
    view, secret = channel(ops)
    r = ops.post("/ops/channels", json=channel_body(view["code"], name="Impostor"))
    assert_error(r, 409, "channel_exists", "code")
    assert ok(ops.get(f"/ops/channels/{view['code']}"))["name"] == view["name"]
    assert len(audit_rows(ops, f"/ops/channels/{view['code']}/audit", "created")) == 1


def test_channel_validation(anon, ops):
    assert_error(ops.post("/ops/channels", json=channel_body("Bad Code")), 422, "validation_error", "code")
    assert_error(ops.post("/ops/channels", json=channel_body(points_mode="cash")), 422, "validation_error",
                 "points_mode")
    assert_error(ops.post("/ops/channels", json=channel_body(redemption_quota=-1)), 422, "validation_error",
                 "redemption_quota")
    assert_error(ops.post("/ops/channels", json=channel_body(api_base_url="not a url")), 422,
                 "validation_error", "api_base_url")
    body = channel_body()
    del body["phone"]
    assert_error(ops.post("/ops/channels", json=body), 422, "validation_error", "phone")
    assert_error(ops.get(f"/ops/channels/{body['code']}"), 404, "channel_not_found")
    assert_error(ops.post("/ops/channels", data=b"{", headers={"Content-Type": "application/json"}), 400,
                 "invalid_json")
    assert_error(anon.post("/ops/channels", json=channel_body()), 401, "ops_auth_required")


def test_unknown_channel(ops):
    code = uid("nope-")
    assert_error(ops.get(f"/ops/channels/{code}"), 404, "channel_not_found")
    assert_error(ops.patch(f"/ops/channels/{code}", json={"redemption_quota": 1}), 404, "channel_not_found")
    assert_error(ops.post(f"/ops/channels/{code}/suspend"), 404, "channel_not_found")
    assert_error(ops.post(f"/ops/channels/{code}/secret", json={}), 404, "channel_not_found")
    assert_error(ops.get(f"/ops/channels/{code}/audit"), 404, "channel_not_found")
    assert_error(ops.get(f"/ops/channels/{code}/pool"), 404, "channel_not_found")
    assert_error(ops.put(f"/ops/channels/{code}/pool/GX", json={}), 404, "channel_not_found")


def test_edit_limits_is_audited(ops):
    view, _ = channel(ops, redemption_quota=10_000_000, member_points_cap=500_000)
    code = view["code"]
    edited = ok(ops.patch(f"/ops/channels/{code}", json={"redemption_quota": 8_000_000, "member_points_cap": 20_000,
                                                         "name": "Bank of Tests (new)"}))
    assert edited["redemption_quota"] == 8_000_000 and edited["member_points_cap"] == 20_000
    assert edited["name"] == "Bank of Tests (new)"
    assert ok(ops.get(f"/ops/channels/{code}"))["redemption_quota"] == 8_000_000

    rows = {r["field"]: r for r in audit_rows(ops, f"/ops/channels/{code}/audit", "edited")}
    assert (value(rows["redemption_quota"]["old"]), value(rows["redemption_quota"]["new"])) == (10_000_000, 8_000_000)
    assert (value(rows["member_points_cap"]["old"]), value(rows["member_points_cap"]["new"])) == (500_000, 20_000)
    assert all(r["actor"] == "ops:local" for r in rows.values())

    # no change, no audit row; invalid values are refused and change nothing
    ok(ops.patch(f"/ops/channels/{code}", json={"redemption_quota": 8_000_000}))
    assert len(audit_rows(ops, f"/ops/channels/{code}/audit", "edited")) == len(rows)
    assert_error(ops.patch(f"/ops/channels/{code}", json={"member_points_cap": -5}), 422, "validation_error",
                 "member_points_cap")
    assert_error(ops.patch(f"/ops/channels/{code}", json={"secret": "mine"}), 422, "validation_error", "secret")
    assert_error(ops.patch(f"/ops/channels/{code}", json={"code": "other"}), 422, "validation_error", "code")
    assert ok(ops.get(f"/ops/channels/{code}"))["member_points_cap"] == 20_000


def test_suspend_and_resume(ops):
    view, _ = channel(ops)
    code = view["code"]
    assert ok(ops.post(f"/ops/channels/{code}/suspend"))["status"] == "suspended"
    assert ok(ops.get(f"/ops/channels/{code}"))["status"] == "suspended"
    assert ok(ops.post(f"/ops/channels/{code}/suspend"))["status"] == "suspended"
    assert ok(ops.post(f"/ops/channels/{code}/resume"))["status"] == "active"
    assert ok(ops.get(f"/ops/channels/{code}"))["status"] == "active"
    rows = [(r["action"], r["old"], r["new"], r["actor"]) for r in audit_rows(ops, f"/ops/channels/{code}/audit")
            if r["field"] == "status"]
    assert rows == [("suspended", "active", "suspended", "ops:local"), ("resumed", "suspended", "active", "ops:local")]


def test_rotate_secret(ops):
    view, first = channel(ops)
    code = view["code"]
    before = time.time()
    rotated = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 3600}))
    second = rotated["secret"]
    assert second and second != first
    until = rotated["channel"]["previous_secret_until"]
    assert before + 3600 - 2 <= until <= time.time() + 3600 + 2
    got = ops.get(f"/ops/channels/{code}")
    assert ok(got)["previous_secret_until"] == until
    assert first not in got.text and second not in got.text
    audit = ops.get(f"/ops/channels/{code}/audit")
    assert first not in audit.text and second not in audit.text
    assert [value(r["new"])["previous_secret_until"] for r in audit_rows(ops, f"/ops/channels/{code}/audit",
                                                                          "secret_rotated")] == [until]
    # a second rotation inside the overlap is refused, and changes nothing
    assert_error(ops.post(f"/ops/channels/{code}/secret", json={}), 409, "rotation_in_progress")
    assert ok(ops.get(f"/ops/channels/{code}"))["previous_secret_until"] == until
    # the default overlap is a day; more than a week is refused
    view, _ = channel(ops)
    other = ok(ops.post(f"/ops/channels/{view['code']}/secret", json={}))
    assert abs(other["channel"]["previous_secret_until"] - (time.time() + 86_400)) <= 5
    assert_error(ops.post(f"/ops/channels/{view['code']}/secret", json={"overlap_seconds": 8 * 86_400}), 422,
                 "validation_error", "overlap_seconds")


# --- sub-pools and pricing -----------------------------------------------------

def _put(ops, code: str, goods_id: str, prices: dict):
    return ops.put(f"/ops/channels/{code}/pool/{goods_id}", json={"prices": prices})


def _skus(item: dict) -> dict[str, dict]:
    return {s["sku_id"]: s for s in item["skus"]}


def test_pool_prices_explicit_markup_and_base(system, ops):
    view, _ = channel(ops, points_per_yuan=7)
    code = view["code"]
    _, goods = approved_goods(system, ops, skus=[sku("EX", 1000), sku("MK", 1234), sku("BS", 800)],
                              base_prices={"EX": 1500, "MK": 1800, "BS": 1190})
    gid = goods["goods_id"]
    markup = {"payment_bps": 60, "platform_bps": 500, "channel_bps": 333, "fixed": 7}
    put = ok(_put(ops, code, gid, {"EX": {"price": 1399}, "MK": {"markup": markup}}))
    assert put["channel_code"] == code and put["goods_id"] == gid
    assert put["prices"]["EX"]["price"] == 1399 and put["prices"]["MK"]["markup"] == markup
    assert "BS" not in put["prices"]

    item = pool_item(ops, code, gid)
    assert item["on_sale"] is True and item["goods_status"] == "approved" and item["title"] == goods["title"]
    skus = _skus(item)
    expected_markup = math.ceil(1234 * (10_000 + 60 + 500 + 333) / 10_000) + 7
    assert expected_markup == 1352
    assert (skus["EX"]["price"], skus["EX"]["source"]) == (1399, "explicit")
    assert (skus["MK"]["price"], skus["MK"]["source"]) == (1352, "markup")
    assert (skus["BS"]["price"], skus["BS"]["source"]) == (1190, "base")
    assert {k: (s["settlement"], s["loss"], s["sellable"]) for k, s in skus.items()} == {
        "EX": (1000, 0, True), "MK": (1234, 0, True), "BS": (800, 0, True)}
    # points at 7 per yuan, rounded up: 1399 fen -> 97.93 -> 98
    assert {k: s["points"] for k, s in skus.items()} == {"EX": 98, "MK": 95, "BS": 84}
    assert ok(ops.get(f"/ops/channels/{code}/losses"))["losses"] == []


def test_markup_tracks_the_settlement_price(system, ops):
    view, _ = channel(ops)
    code = view["code"]
    sup, goods = approved_goods(system, ops, skus=[sku("S1", 1000)])
    gid = goods["goods_id"]
    ok(_put(ops, code, gid, {"S1": {"markup": {"platform_bps": 1000}}}))
    assert _skus(pool_item(ops, code, gid))["S1"]["price"] == 1100
    ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"settlement_price": 901}))
    # 901 * 1.1 = 991.1 -> 992
    assert _skus(pool_item(ops, code, gid))["S1"]["price"] == 992


def test_price_below_settlement_needs_allow_loss_and_shows_in_losses(system, ops):
    view, _ = channel(ops)
    code = view["code"]
    _, goods = approved_goods(system, ops, skus=[sku("S1", 1000), sku("S2", 2000)])
    gid = goods["goods_id"]

    assert_error(_put(ops, code, gid, {"S1": {"price": 999}}), 422, "price_below_settlement", "prices.S1")
    assert_error(_put(ops, code, gid, {"S2": {"markup": {"platform_bps": 100, "fixed": -100}}}), 422,
                 "price_below_settlement", "prices.S2")
    assert [i for i in ok(ops.get(f"/ops/channels/{code}/pool"))["items"] if i["goods_id"] == gid] == []

    ok(_put(ops, code, gid, {"S1": {"price": 900, "allow_loss": True}, "S2": {"price": 2000}}))
    skus = _skus(pool_item(ops, code, gid))
    assert (skus["S1"]["price"], skus["S1"]["loss"], skus["S1"]["allow_loss"], skus["S1"]["sellable"]) == \
        (900, 100, True, True)
    assert skus["S2"]["loss"] == 0
    losses = ok(ops.get(f"/ops/channels/{code}/losses"))["losses"]
    assert losses == [{"goods_id": gid, "title": goods["title"], "sku_id": "S1", "price": 900, "settlement": 1000,
                       "loss": 100, "on_sale": True}]


def test_only_master_pool_goods_enter_a_sub_pool(system, ops):
    view, _ = channel(ops)
    code = view["code"]
    sup, _ = supplier_api(system, ops)
    pending = publish(sup)
    assert_error(_put(ops, code, pending["goods_id"], {}), 409, "goods_not_in_master_pool")
    rejected = publish(sup)
    ok(ops.post(f"/ops/goods/{rejected['goods_id']}/reject", json={"reason": "no"}))
    assert_error(_put(ops, code, rejected["goods_id"], {}), 409, "goods_not_in_master_pool")
    assert_error(_put(ops, code, "GNOSUCHGOODS", {}), 404, "goods_not_found")
    approved = approve(ops, publish(sup))
    assert_error(_put(ops, code, approved["goods_id"], {"NOPE": {"price": 5000}}), 422, "validation_error",
                 "prices.NOPE")
    assert_error(_put(ops, code, approved["goods_id"], {"S1": {"price": 5000, "markup": {}}}), 422,
                 "validation_error", "prices.S1")
    assert_error(_put(ops, code, approved["goods_id"], {"S1": {}}), 422, "validation_error", "prices.S1")
    items = {i["goods_id"] for i in ok(ops.get(f"/ops/channels/{code}/pool"))["items"]}
    assert items == set()


def test_off_sale_leaves_every_sub_pool(system, ops):
    first, _ = channel(ops)
    second, _ = channel(ops)
    sup, goods = approved_goods(system, ops, skus=[sku("S1", 1000)])
    gid = goods["goods_id"]
    ok(_put(ops, first["code"], gid, {"S1": {"price": 1500}}))
    ok(_put(ops, second["code"], gid, {}))
    assert pool_item(ops, first["code"], gid)["on_sale"] and pool_item(ops, second["code"], gid)["on_sale"]

    ok(sup.post(f"/supplier/goods/{gid}/off-sale"))
    for code in (first["code"], second["code"]):
        item = pool_item(ops, code, gid)
        assert item["on_sale"] is False and item["goods_status"] == "off_sale"

    ok(sup.post(f"/supplier/goods/{gid}/submit"))
    assert pool_item(ops, first["code"], gid)["on_sale"] is False
    approve(ops, ok(ops.get(f"/ops/goods/{gid}")))
    assert pool_item(ops, first["code"], gid)["on_sale"] is True
    assert pool_item(ops, second["code"], gid)["on_sale"] is True


def test_settlement_raise_over_channel_price_stops_sale(system, ops):
    view, _ = channel(ops)
    code = view["code"]
    sup, goods = approved_goods(system, ops, skus=[sku("S1", 1000)])
    gid = goods["goods_id"]
    ok(_put(ops, code, gid, {"S1": {"price": 1100}}))
    raised = ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"settlement_price": 1200}))
    assert raised["status"] == "pending_review"
    assert pool_item(ops, code, gid)["on_sale"] is False
    approve(ops, raised, {"S1": 2400})
    item = pool_item(ops, code, gid)
    s1 = _skus(item)["S1"]
    # nobody accepted a loss at 1100 < 1200: never sold, and not a carried loss either
    assert (s1["price"], s1["loss"], s1["allow_loss"], s1["sellable"]) == (1100, 100, False, False)
    assert item["on_sale"] is False
    assert ok(ops.get(f"/ops/channels/{code}/losses"))["losses"] == []


def test_two_channels_price_the_same_goods_differently(system, ops):
    bank, _ = channel(ops, points_per_yuan=100)
    telecom, _ = channel(ops, points_per_yuan=10)
    _, goods = approved_goods(system, ops, skus=[sku("S1", 1000)], base_prices={"S1": 1600})
    gid = goods["goods_id"]
    ok(_put(ops, bank["code"], gid, {"S1": {"price": 1299}}))
    ok(_put(ops, telecom["code"], gid, {"S1": {"markup": {"payment_bps": 60, "channel_bps": 1500}}}))
    bank_sku = _skus(pool_item(ops, bank["code"], gid))["S1"]
    telecom_sku = _skus(pool_item(ops, telecom["code"], gid))["S1"]
    assert (bank_sku["price"], bank_sku["points"]) == (1299, 1299)
    assert (telecom_sku["price"], telecom_sku["points"]) == (1156, 116)
    # repricing one channel leaves the other alone
    ok(_put(ops, bank["code"], gid, {}))
    assert _skus(pool_item(ops, bank["code"], gid))["S1"]["price"] == 1600
    assert _skus(pool_item(ops, telecom["code"], gid))["S1"]["price"] == 1156


def test_remove_from_pool(system, ops):
    view, _ = channel(ops)
    code = view["code"]
    _, goods = approved_goods(system, ops)
    gid = goods["goods_id"]
    ok(_put(ops, code, gid, {}))
    assert ok(ops.delete(f"/ops/channels/{code}/pool/{gid}")) == {"channel_code": code, "goods_id": gid,
                                                                  "removed": True}
    assert [i for i in ok(ops.get(f"/ops/channels/{code}/pool"))["items"] if i["goods_id"] == gid] == []
    assert_error(ops.delete(f"/ops/channels/{code}/pool/{gid}"), 404, "pool_item_not_found")


def test_base_price_loss_accepted_at_approval_sells_and_is_reported(system, ops):
    """Ops approved a base price below settlement with allow_loss: channels without a rule sell at it."""
    view, _ = channel(ops)
    code = view["code"]
    sup, _ = supplier_api(system, ops)
    goods = approve(ops, publish(sup, skus=[sku("S1", 1000), sku("S2", 1000)]), {"S1": 950, "S2": 1200},
                    allow_loss=True)
    gid = goods["goods_id"]
    ok(_put(ops, code, gid, {}))
    item = pool_item(ops, code, gid)
    s1 = _skus(item)["S1"]
    assert (s1["price"], s1["source"], s1["loss"], s1["allow_loss"], s1["sellable"]) == (950, "base", 50, True, True)
    assert _skus(item)["S2"]["allow_loss"] is False and _skus(item)["S2"]["loss"] == 0
    assert item["on_sale"] is True
    assert ok(ops.get(f"/ops/channels/{code}/losses"))["losses"] == [
        {"goods_id": gid, "title": goods["title"], "sku_id": "S1", "price": 950, "settlement": 1000, "loss": 50,
         "on_sale": True}]
    # a channel price at or above settlement carries no loss
    ok(_put(ops, code, gid, {"S1": {"price": 1000}}))
    assert ok(ops.get(f"/ops/channels/{code}/losses"))["losses"] == []


def test_concurrent_creates_of_one_code(ops):
    code = uid("t-")
    results = race(5, lambda i: ops.post("/ops/channels", json=channel_body(code, name=f"Channel {i}")))
    assert sorted(r.status_code for r in results) == [201] + [409] * 4, [r.text for r in results]
    [winner] = [r.json() for r in results if r.status_code == 201]
    for r in results:
        if r.status_code == 409:
            assert_error(r, 409, "channel_exists", "code")
    assert ok(ops.get(f"/ops/channels/{code}"))["name"] == winner["channel"]["name"]
    assert len(audit_rows(ops, f"/ops/channels/{code}/audit", "created")) == 1
