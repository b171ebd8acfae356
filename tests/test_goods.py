"""Goods over HTTP: publish, review, the master pool, ownership, audited price and stock changes."""
from __future__ import annotations

from helpers import (
    approve, approved_goods, assert_error, audit_rows, draft, ok, publish, race, sku, supplier_api, value,
)
from image_helpers import upload_image


def _ops_goods(ops, goods_id: str) -> dict:
    return ok(ops.get(f"/ops/goods/{goods_id}"))


def test_publish_waits_for_review_and_is_audited(system, ops):
    sup, sid = supplier_api(system, ops)
    body = draft(skus=[sku("S1", 1000, 5), sku("S2", 1500, 0, "large")])
    goods = ok(sup.post("/supplier/goods", json=body), 201)
    assert goods["status"] == "pending_review" and goods["supplier_id"] == sid and goods["ref"] == body["ref"]
    assert goods["version"] == 1
    assert goods["skus"] == [
        {"sku_id": "S1", "spec": "standard", "settlement_price": 1000, "stock": 5},
        {"sku_id": "S2", "spec": "large", "settlement_price": 1500, "stock": 0},
    ]
    assert ok(sup.get(f"/supplier/goods/{goods['goods_id']}")) == goods
    assert goods["goods_id"] in {g["goods_id"] for g in ok(sup.get("/supplier/goods"))["goods"]}
    assert goods["goods_id"] in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    assert goods["goods_id"] in {g["goods_id"] for g in ok(ops.get("/ops/goods?status=pending_review"))["goods"]}
    assert goods["goods_id"] not in {g["goods_id"] for g in ok(ops.get("/ops/goods?status=approved"))["goods"]}

    rows = audit_rows(sup, f"/supplier/goods/{goods['goods_id']}/audit")
    assert {(r["action"], r["field"], r["new"]) for r in rows} == {
        ("published", "status", "pending_review"),
        ("price_set", "skus.S1.settlement_price", "1000"),
        ("price_set", "skus.S2.settlement_price", "1500"),
    }
    assert all(r["actor"] == f"supplier:{sid}" for r in rows)


def test_duplicate_ref_is_a_conflict(system, ops):
    sup, _ = supplier_api(system, ops)
    first = publish(sup, ref="dup-1")
    assert_error(sup.post("/supplier/goods", json=draft("dup-1", title="Other")), 409, "duplicate_ref", "ref")
    assert ok(sup.get(f"/supplier/goods/{first['goods_id']}"))["title"] == first["title"]
    assert [g["ref"] for g in ok(sup.get("/supplier/goods"))["goods"]].count("dup-1") == 1
    # refs are per supplier: another supplier may use the same one
    other, _ = supplier_api(system, ops)
    assert publish(other, ref="dup-1")["goods_id"] != first["goods_id"]


def test_publish_validation(system, ops):
    sup, _ = supplier_api(system, ops)
    assert_error(sup.post("/supplier/goods", json=draft(skus=[sku("A"), sku("A")])), 422, "validation_error", "skus")
    assert_error(sup.post("/supplier/goods", json=draft(skus=[sku("A", 0)])), 422, "validation_error",
                 "skus.0.settlement_price")
    assert_error(sup.post("/supplier/goods", json=draft(skus=[sku("A", stock=-1)])), 422, "validation_error",
                 "skus.0.stock")
    body = draft()
    body["skus"] = []
    assert_error(sup.post("/supplier/goods", json=body), 422, "validation_error", "skus")
    assert_error(sup.post("/supplier/goods", data=b"{", headers={"Content-Type": "application/json"}), 400,
                 "invalid_json")
    assert ok(sup.get("/supplier/goods"))["goods"] == []


def test_approve_with_base_prices_enters_master_pool(system, ops):
    sup, _ = supplier_api(system, ops)
    goods = publish(sup, skus=[sku("S1", 1000), sku("S2", 2000)])
    approved = ok(ops.post(f"/ops/goods/{goods['goods_id']}/approve",
                           json={"base_prices": {"S1": 1290, "S2": 2590}}))
    assert approved["status"] == "approved"
    assert {s["sku_id"]: s["base_price"] for s in approved["skus"]} == {"S1": 1290, "S2": 2590}
    assert ok(sup.get(f"/supplier/goods/{goods['goods_id']}"))["status"] == "approved"
    assert goods["goods_id"] in {g["goods_id"] for g in ok(ops.get("/ops/goods?status=approved"))["goods"]}
    assert goods["goods_id"] not in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    rows = audit_rows(ops, f"/ops/goods/{goods['goods_id']}/audit")
    assert {(r["action"], r["field"], r["new"], r["actor"]) for r in rows if r["actor"] == "ops:local"} == {
        ("base_price_set", "skus.S1.base_price", "1290", "ops:local"),
        ("base_price_set", "skus.S2.base_price", "2590", "ops:local"),
        ("approved", "status", "approved", "ops:local"),
    }
    # approving again is not possible: it is no longer pending
    assert_error(ops.post(f"/ops/goods/{goods['goods_id']}/approve", json={"base_prices": {"S1": 1, "S2": 1}}),
                 409, "invalid_status")


def test_approve_must_price_exactly_the_skus(system, ops):
    sup, _ = supplier_api(system, ops)
    goods = publish(sup, skus=[sku("S1", 1000), sku("S2", 2000)])
    gid = goods["goods_id"]
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 1200}}), 422,
                 "validation_error", "base_prices.S2")
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 1200, "S2": 2400, "S9": 1}}),
                 422, "validation_error", "base_prices.S9")
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {}}), 422, "validation_error",
                 "base_prices")
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 0, "S2": 1}}), 422,
                 "validation_error", "base_prices")
    assert _ops_goods(ops, gid)["status"] == "pending_review"
    assert_error(ops.post("/ops/goods/GNOPE/approve", json={"base_prices": {"S1": 1}}), 404, "goods_not_found")


def test_base_price_below_settlement_needs_allow_loss(system, ops):
    sup, _ = supplier_api(system, ops)
    goods = publish(sup, skus=[sku("S1", 1000), sku("S2", 500)])
    gid = goods["goods_id"]
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 999, "S2": 600}}), 422,
                 "price_below_settlement", "base_prices.S1")
    after = _ops_goods(ops, gid)
    assert after["status"] == "pending_review" and all("base_price" not in s for s in after["skus"])
    assert_error(ops.post(f"/ops/goods/{gid}/approve",
                          json={"base_prices": {"S1": 999, "S2": 600}, "allow_loss": False}), 422,
                 "price_below_settlement")
    approved = ok(ops.post(f"/ops/goods/{gid}/approve",
                           json={"base_prices": {"S1": 999, "S2": 600}, "allow_loss": True}))
    assert approved["status"] == "approved"
    assert {s["sku_id"]: s["base_price"] for s in approved["skus"]} == {"S1": 999, "S2": 600}
    # the accepted loss is recorded with the SKU it applies to (S2 sells above settlement)
    assert {s["sku_id"]: s["base_allow_loss"] for s in approved["skus"]} == {"S1": True, "S2": False}


def test_reject_with_reason_then_resubmit(system, ops):
    sup, _ = supplier_api(system, ops)
    goods = publish(sup)
    gid = goods["goods_id"]
    assert_error(ops.post(f"/ops/goods/{gid}/reject", json={}), 422, "validation_error", "reason")
    rejected = ok(ops.post(f"/ops/goods/{gid}/reject", json={"reason": "photos are blurry"}))
    assert rejected["status"] == "rejected"
    mine = ok(sup.get(f"/supplier/goods/{gid}"))
    assert mine["status"] == "rejected" and mine["reject_reason"] == "photos are blurry"
    assert gid not in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    assert gid in {g["goods_id"] for g in ok(ops.get("/ops/goods?status=rejected"))["goods"]}
    # a rejected goods cannot be approved or rejected again until resubmitted
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 2000}}), 409, "invalid_status")
    assert_error(ops.post(f"/ops/goods/{gid}/reject", json={"reason": "again"}), 409, "invalid_status")

    ok(sup.patch(f"/supplier/goods/{gid}", json={"images": [upload_image(sup)]}))
    resubmitted = ok(sup.post(f"/supplier/goods/{gid}/submit"))
    assert resubmitted["status"] == "pending_review" and resubmitted["reject_reason"] is None
    assert gid in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    actions = [r["action"] for r in audit_rows(sup, f"/supplier/goods/{gid}/audit")]
    assert actions[-3:] == ["rejected", "edited", "submitted"]
    assert_error(sup.post(f"/supplier/goods/{gid}/submit"), 409, "invalid_status")


def test_off_sale_then_submit(system, ops):
    sup, goods = approved_goods(system, ops)
    gid = goods["goods_id"]
    off = ok(sup.post(f"/supplier/goods/{gid}/off-sale"))
    assert off["status"] == "off_sale"
    assert _ops_goods(ops, gid)["status"] == "off_sale"
    assert gid not in {g["goods_id"] for g in ok(ops.get("/ops/goods?status=approved"))["goods"]}
    assert_error(sup.post(f"/supplier/goods/{gid}/off-sale"), 409, "invalid_status")
    back = ok(sup.post(f"/supplier/goods/{gid}/submit"))
    assert back["status"] == "pending_review"
    assert gid in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit")
    assert [(r["action"], r["old"], r["new"]) for r in rows[-2:]] == [
        ("taken_off_sale", "approved", "off_sale"), ("submitted", "off_sale", "pending_review")]


def test_ops_can_take_goods_off_sale(system, ops):
    sup, goods = approved_goods(system, ops)
    assert ok(ops.post(f"/ops/goods/{goods['goods_id']}/off-sale"))["status"] == "off_sale"
    assert ok(sup.get(f"/supplier/goods/{goods['goods_id']}"))["status"] == "off_sale"
    row = audit_rows(ops, f"/ops/goods/{goods['goods_id']}/audit", "taken_off_sale")[-1]
    assert row["actor"] == "ops:local"


def test_suppliers_cannot_see_or_change_each_others_goods(system, ops):
    owner, owner_id = supplier_api(system, ops)
    intruder, _ = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=owner, skus=[sku("S1", 1000, 7)])
    gid = goods["goods_id"]
    before = _ops_goods(ops, gid)

    assert_error(intruder.get(f"/supplier/goods/{gid}"), 404, "goods_not_found")
    assert_error(intruder.get(f"/supplier/goods/{gid}/audit"), 404, "goods_not_found")
    assert_error(intruder.patch(f"/supplier/goods/{gid}", json={"title": "mine now"}), 404, "goods_not_found")
    assert_error(intruder.put(f"/supplier/goods/{gid}/skus/S1", json={"stock": 0}), 404, "goods_not_found")
    assert_error(intruder.put(f"/supplier/goods/{gid}/skus/S1", json={"settlement_price": 99999}), 404,
                 "goods_not_found")
    assert_error(intruder.put(f"/supplier/goods/{gid}/skus/NEW", json={"spec": "x", "settlement_price": 1,
                                                                    "stock": 1}), 404, "goods_not_found")
    assert_error(intruder.post(f"/supplier/goods/{gid}/off-sale"), 404, "goods_not_found")
    assert_error(intruder.post(f"/supplier/goods/{gid}/submit"), 404, "goods_not_found")
    # a missing goods answers exactly the same
    missing = intruder.get("/supplier/goods/GDOESNOTEXIST")
    assert_error(missing, 404, "goods_not_found")
    assert gid not in {g["goods_id"] for g in ok(intruder.get("/supplier/goods"))["goods"]}

    assert _ops_goods(ops, gid) == before
    assert all(r["actor"] in (f"supplier:{owner_id}", "ops:local")
               for r in audit_rows(ops, f"/ops/goods/{gid}/audit"))


def test_supplier_routes_need_a_key(anon):
    assert_error(anon.get("/supplier/goods"), 401, "invalid_api_key")
    assert_error(anon.post("/supplier/goods", json=draft()), 401, "invalid_api_key")


def test_price_raise_sends_approved_goods_back_to_review(system, ops):
    sup, sid = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=sup, skus=[sku("S1", 1000), sku("S2", 3000)])
    gid = goods["goods_id"]
    raised = ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"settlement_price": 1200}))
    assert raised["status"] == "pending_review"
    assert {s["sku_id"]: s["settlement_price"] for s in raised["skus"]} == {"S1": 1200, "S2": 3000}
    assert _ops_goods(ops, gid)["status"] == "pending_review"
    assert gid in {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}

    rows = audit_rows(ops, f"/ops/goods/{gid}/audit")
    price = [r for r in rows if r["action"] == "price_raised"]
    assert len(price) == 1
    assert price[0]["field"] == "skus.S1.settlement_price"
    assert value(price[0]["old"]) == 1000 and value(price[0]["new"]) == 1200
    assert price[0]["actor"] == f"supplier:{sid}"
    review = [r for r in rows if r["action"] == "sent_to_review"]
    assert [(r["old"], r["new"], r["actor"]) for r in review] == [("approved", "pending_review", f"supplier:{sid}")]

    # the base price stays on record; ops re-approve it (and a base below the new settlement is refused)
    assert {s["sku_id"]: s["base_price"] for s in raised["skus"]} == {"S1": 2000, "S2": 6000}
    assert_error(ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"S1": 1100, "S2": 6000}}), 422,
                 "price_below_settlement", "base_prices.S1")
    assert approve(ops, raised, {"S1": 2400, "S2": 6000})["status"] == "approved"


def test_price_decrease_stays_approved(system, ops):
    sup, sid = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=sup, skus=[sku("S1", 1000)])
    gid = goods["goods_id"]
    lowered = ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"settlement_price": 900}))
    assert lowered["status"] == "approved"
    assert lowered["skus"][0]["settlement_price"] == 900 and lowered["skus"][0]["base_price"] == 2000
    row = audit_rows(sup, f"/supplier/goods/{gid}/audit", "price_lowered")
    assert [(r["field"], value(r["old"]), value(r["new"]), r["actor"]) for r in row] == [
        ("skus.S1.settlement_price", 1000, 900, f"supplier:{sid}")]
    assert audit_rows(sup, f"/supplier/goods/{gid}/audit", "sent_to_review") == []


def test_stock_change_is_audited_and_keeps_status(system, ops):
    sup, sid = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=sup, skus=[sku("S1", 1000, 10)])
    gid = goods["goods_id"]
    changed = ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"stock": 3}))
    assert changed["status"] == "approved" and changed["skus"][0]["stock"] == 3
    assert changed["version"] == goods["version"] + 1
    rows = audit_rows(ops, f"/ops/goods/{gid}/audit", "stock_set")
    assert [(r["field"], value(r["old"]), value(r["new"]), r["actor"]) for r in rows] == [
        ("skus.S1.stock", 10, 3, f"supplier:{sid}")]
    # the same stock again is no change and no audit row
    same = ok(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"stock": 3}))
    assert same["version"] == changed["version"]
    assert len(audit_rows(ops, f"/ops/goods/{gid}/audit", "stock_set")) == 1


def test_sku_change_validation_and_new_sku(system, ops):
    sup, _ = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=sup, skus=[sku("S1", 1000, 10)])
    gid = goods["goods_id"]
    assert_error(sup.put(f"/supplier/goods/{gid}/skus/S1", json={}), 422, "validation_error")
    assert_error(sup.put(f"/supplier/goods/{gid}/skus/S1", json={"stock": -1}), 422, "validation_error", "stock")
    assert_error(sup.put(f"/supplier/goods/{gid}/skus/S2", json={"stock": 4}), 422, "validation_error")
    assert _ops_goods(ops, gid)["status"] == "approved"
    added = ok(sup.put(f"/supplier/goods/{gid}/skus/S2", json={"spec": "gift", "settlement_price": 1500,
                                                               "stock": 4}))
    assert added["status"] == "pending_review"
    assert {s["sku_id"] for s in added["skus"]} == {"S1", "S2"}
    assert [r["field"] for r in audit_rows(sup, f"/supplier/goods/{gid}/audit", "sku_added")] == ["skus.S2"]


def test_edit_details(system, ops):
    """Goods not yet approved change directly (ops review them whole); every content field is audited."""
    sup, sid = supplier_api(system, ops)
    goods = publish(sup)
    gid = goods["goods_id"]
    image = upload_image(sup)
    edited = ok(sup.patch(f"/supplier/goods/{gid}", json={"title": "Tea box, new season",
                                                         "description": "Spring 2026", "images": [image]}))
    assert edited["title"] == "Tea box, new season" and edited["description"] == "Spring 2026"
    assert edited["images"] == [image] and edited["version"] == goods["version"] + 1
    assert edited["revision"] is None
    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit", "edited")
    assert sorted((r["field"], value(r["old"]), value(r["new"]), r["actor"]) for r in rows) == [
        ("description", "Longjing, 250 g", "Spring 2026", f"supplier:{sid}"),
        ("images", [], [image], f"supplier:{sid}"),
        ("title", "Tea gift box", "Tea box, new season", f"supplier:{sid}")]
    assert_error(sup.patch(f"/supplier/goods/{gid}", json={"status": "approved"}), 422, "validation_error",
                 "status")
    assert_error(sup.patch(f"/supplier/goods/{gid}", json={"title": ""}), 422, "validation_error", "title")
    assert ok(sup.get(f"/supplier/goods/{gid}"))["status"] == "pending_review"


def test_concurrent_stock_edits_lose_no_update(system, ops):
    """Writers racing on one SKU: each write either lands (and is audited) or is refused as a conflict."""
    sup, _ = supplier_api(system, ops)
    _, goods = approved_goods(system, ops, sup=sup, skus=[sku("S1", 1000, 100)])
    gid = goods["goods_id"]
    results = race(8, lambda i: sup.put(f"/supplier/goods/{gid}/skus/S1", json={"stock": 200 + i}))
    won = [r for r in results if r.status_code == 200]
    lost = [r for r in results if r.status_code != 200]
    assert won, [r.text for r in results]
    for r in lost:
        assert_error(r, 409, "concurrent_update")

    final = _ops_goods(ops, gid)
    assert final["version"] == goods["version"] + len(won)
    rows = audit_rows(ops, f"/ops/goods/{gid}/audit", "stock_set")
    assert len(rows) == len(won)
    # every accepted write started from the value the previous one left: one chain from 100, no lost update
    steps = {value(r["old"]): value(r["new"]) for r in rows}
    assert len(steps) == len(rows), rows
    chain = [100]
    while chain[-1] in steps:
        chain.append(steps[chain[-1]])
    assert len(chain) == len(rows) + 1, rows
    assert final["skus"][0]["stock"] == chain[-1]


def test_stale_edit_is_refused(system, ops):
    """Racing PATCHes: the version check refuses every write that read a goods changed meanwhile."""
    sup, _ = supplier_api(system, ops)
    goods = publish(sup)
    gid = goods["goods_id"]
    results = race(6, lambda i: sup.patch(f"/supplier/goods/{gid}", json={"title": f"title {i}"}))
    won = [i for i, r in enumerate(results) if r.status_code == 200]
    for r in results:
        if r.status_code != 200:
            assert_error(r, 409, "concurrent_update")
    final = ok(sup.get(f"/supplier/goods/{gid}"))
    assert final["version"] == goods["version"] + len(won)
    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit", "edited")
    assert len(rows) == len(won)
    assert final["title"] == rows[-1]["new"]


def test_concurrent_publish_of_one_ref_creates_it_once(system, ops):
    sup, _ = supplier_api(system, ops)
    ref = "race-ref"
    results = race(6, lambda i: sup.post("/supplier/goods", json=draft(ref, title=f"title {i}")))
    assert sorted(r.status_code for r in results) == [201] + [409] * 5, [r.text for r in results]
    for r in results:
        if r.status_code == 409:
            assert_error(r, 409, "duplicate_ref", "ref")
    [winner] = [r.json() for r in results if r.status_code == 201]
    mine = [g for g in ok(sup.get("/supplier/goods"))["goods"] if g["ref"] == ref]
    assert [g["title"] for g in mine] == [winner["title"]]
    assert len(audit_rows(sup, f"/supplier/goods/{winner['goods_id']}/audit", "published")) == 1


def test_ops_goods_list_validates_status(ops):
    assert_error(ops.get("/ops/goods?status=sold"), 422, "validation_error", "status")
