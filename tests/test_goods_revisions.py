"""Content changes of approved goods go back to review as a revision, audited, with the supplier's own images only.

Members and the catalog keep seeing the approved content until ops approve the revision; ops may reject
it with a reason the supplier reads. Every content change writes its audit rows in the same transaction.
"""
from __future__ import annotations

import requests

from helpers import approve, assert_error, audit_rows, channel, ok, publish, race, sku, supplier_api, value
from image_helpers import link, png, post, settled, upload_image
from test_catalog import member, put_pool

CHANGE = {"title": "Tea box, new season", "description": "Spring 2026 harvest", "category": "gifts"}


def _on_sale(system, ops, sup, images: list[str]) -> tuple[dict, object, str]:
    """Approved goods with ``images`` in a new channel's pool; the goods and a member of that channel."""
    goods = approve(ops, publish(sup, skus=[sku("S1", 1000, 10)], images=images))
    view, secret = channel(ops)
    put_pool(ops, view["code"], goods["goods_id"])
    return goods, member(system, view["code"], secret), view["code"]


def _member_sees(api, code: str, goods_id: str) -> tuple[dict, dict]:
    card = next(c for c in ok(api.get(f"/api/{code}/catalog"))["items"] if c["goods_id"] == goods_id)
    return card, ok(api.get(f"/api/{code}/goods/{goods_id}"))


def _content(view: dict) -> dict:
    return {k: view[k] for k in ("title", "description", "images", "category")}


def test_edit_of_approved_goods_waits_for_review_then_ops_approve(system, ops):
    sup, sid = supplier_api(system, ops)
    old_image, new_image = upload_image(sup, png(rgb=(0, 120, 0))), upload_image(sup, png(rgb=(0, 0, 120)))
    goods, shopper, code = _on_sale(system, ops, sup, [old_image])
    gid, approved = goods["goods_id"], _content(goods)

    edited = ok(sup.patch(f"/supplier/goods/{gid}", json={**CHANGE, "images": [new_image]}))
    # the goods keep selling at the approved version
    assert edited["status"] == "approved" and _content(edited) == approved
    revision = edited["revision"]
    assert revision["state"] == "pending" and revision["reject_reason"] is None
    assert _content(revision) == {**CHANGE, "images": [new_image]}
    assert _content(ok(ops.get(f"/ops/goods/{gid}"))) == approved
    card, detail = _member_sees(shopper, code, gid)
    assert (card["title"], card["category"]) == (approved["title"], approved["category"])
    assert (detail["title"], detail["description"]) == (approved["title"], approved["description"])
    assert len(detail["images"]) == 1 and old_image in detail["images"][0] and old_image in card["image"]
    assert new_image not in card["image"] + "".join(detail["images"])
    # ops find it among the revisions waiting for review (and not among goods waiting for a first review)
    assert gid in [g["goods_id"] for g in ok(ops.get("/ops/goods-revisions"))["goods"]]
    assert gid not in [g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]]

    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit", "revision_edited")
    assert sorted((r["field"], value(r["old"]), value(r["new"]), r["actor"]) for r in rows) == sorted([
        ("title", approved["title"], CHANGE["title"], f"supplier:{sid}"),
        ("description", approved["description"], CHANGE["description"], f"supplier:{sid}"),
        ("category", approved["category"], CHANGE["category"], f"supplier:{sid}"),
        ("images", [old_image], [new_image], f"supplier:{sid}")])
    assert [(r["field"], r["new"]) for r in audit_rows(sup, f"/supplier/goods/{gid}/audit", "sent_to_review")] == [
        ("revision", "pending")]

    # ops approve exactly the version they reviewed
    assert_error(ops.post(f"/ops/goods/{gid}/revision/approve", json={"version": edited["version"] - 1}), 409,
                 "revision_changed")
    done = ok(ops.post(f"/ops/goods/{gid}/revision/approve", json={"version": edited["version"]}))
    assert _content(done) == {**CHANGE, "images": [new_image]} and done["revision"] is None
    assert done["status"] == "approved"
    card, detail = _member_sees(shopper, code, gid)
    assert card["title"] == CHANGE["title"] and detail["description"] == CHANGE["description"]
    assert new_image in card["image"] and old_image not in "".join(detail["images"])
    assert gid not in [g["goods_id"] for g in ok(ops.get("/ops/goods-revisions"))["goods"]]
    rows = audit_rows(ops, f"/ops/goods/{gid}/audit", "revision_approved")
    assert {(r["field"], r["actor"]) for r in rows} == {(f, "ops:local") for f in (*CHANGE, "images")}
    assert_error(ops.post(f"/ops/goods/{gid}/revision/approve"), 409, "no_pending_revision")


def test_rejected_revision_keeps_approved_content_and_tells_the_supplier_why(system, ops):
    sup, _ = supplier_api(system, ops)
    goods, shopper, code = _on_sale(system, ops, sup, [])
    gid, approved = goods["goods_id"], _content(goods)
    ok(sup.patch(f"/supplier/goods/{gid}", json={"description": "Cures everything"}))
    assert_error(ops.post(f"/ops/goods/{gid}/revision/reject", json={}), 422, "validation_error", "reason")
    rejected = ok(ops.post(f"/ops/goods/{gid}/revision/reject", json={"reason": "health claims are not allowed"}))
    assert _content(rejected) == approved and rejected["status"] == "approved"

    mine = ok(sup.get(f"/supplier/goods/{gid}"))
    assert mine["revision"]["state"] == "rejected"
    assert mine["revision"]["reject_reason"] == "health claims are not allowed"
    assert mine["revision"]["description"] == "Cures everything"
    assert _member_sees(shopper, code, gid)[1]["description"] == approved["description"]
    assert gid not in [g["goods_id"] for g in ok(ops.get("/ops/goods-revisions"))["goods"]]
    assert gid in [g["goods_id"] for g in ok(ops.get("/ops/goods-revisions?state=rejected"))["goods"]]
    assert_error(ops.get("/ops/goods-revisions?state=maybe"), 422, "validation_error", "state")
    assert_error(ops.post(f"/ops/goods/{gid}/revision/approve"), 409, "no_pending_revision")
    assert_error(ops.post(f"/ops/goods/{gid}/revision/reject", json={"reason": "again"}), 409, "no_pending_revision")
    [row] = audit_rows(sup, f"/supplier/goods/{gid}/audit", "revision_rejected")
    assert row["new"] == "health claims are not allowed"

    # the next edit starts a new revision from the approved content, not from the rejected one
    again = ok(sup.patch(f"/supplier/goods/{gid}", json={"title": "Tea box"}))
    assert again["revision"]["state"] == "pending" and again["revision"]["reject_reason"] is None
    assert _content(again["revision"]) == {**approved, "title": "Tea box"}


def test_edits_while_pending_build_one_revision_and_undoing_withdraws_it(system, ops):
    sup, _ = supplier_api(system, ops)
    goods, _, _ = _on_sale(system, ops, sup, [])
    gid, approved = goods["goods_id"], _content(goods)
    ok(sup.patch(f"/supplier/goods/{gid}", json={"title": "New title"}))
    both = ok(sup.patch(f"/supplier/goods/{gid}", json={"category": "gifts"}))
    assert _content(both["revision"]) == {**approved, "title": "New title", "category": "gifts"}
    # the same values again: nothing to write, nothing to audit
    same = ok(sup.patch(f"/supplier/goods/{gid}", json={"category": "gifts"}))
    assert same["version"] == both["version"]
    back = ok(sup.patch(f"/supplier/goods/{gid}", json={"title": approved["title"], "category": approved["category"]}))
    assert back["revision"] is None and _content(back) == approved
    assert gid not in [g["goods_id"] for g in ok(ops.get("/ops/goods-revisions"))["goods"]]
    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit")   # rows of one transaction share their time
    assert sorted((r["action"], r["field"]) for r in rows if r["action"] not in ("published", "price_set",
                                                                                  "base_price_set", "approved")) == [
        ("revision_edited", "category"), ("revision_edited", "category"), ("revision_edited", "title"),
        ("revision_edited", "title"), ("revision_withdrawn", "revision"), ("sent_to_review", "revision")]


def test_images_must_be_the_suppliers_own_processed_image_uploads(system, ops):
    sup, sid = supplier_api(system, ops)
    other, other_id = supplier_api(system, ops)
    theirs = upload_image(other)
    mine = upload_image(sup)
    unposted = link(sup)                                   # a link never used: no object, not processed
    refused = link(sup)
    post(refused, b"<html>not a png</html>")
    assert settled(sup, refused["upload_id"])["status"] == "refused"
    csv_link = link(sup, "goods_csv", "text/csv")
    goods, _, _ = _on_sale(system, ops, sup, [mine])
    gid = goods["goods_id"]
    before = ok(sup.get(f"/supplier/goods/{gid}"))
    audit_before = audit_rows(sup, f"/supplier/goods/{gid}/audit")

    cases = [
        (["https://img.example/tea.jpg"], "image_not_upload", "images.0"),
        ([mine, "/static/logo.png"], "image_not_upload", "images.1"),
        ([theirs], "image_not_owned", "images.0"),                                   # another supplier's id
        ([f"uploads/{other_id}/image/{theirs}"], "image_not_owned", "images.0"),     # ... or its key
        ([f"uploads/{sid}/image/{theirs}"], "image_not_owned", "images.0"),          # ... under my prefix
        (["0" * 32], "image_not_owned", "images.0"),                                 # no such upload
        ([unposted["upload_id"]], "image_not_processed", "images.0"),
        ([refused["upload_id"]], "image_not_processed", "images.0"),
        ([csv_link["upload_id"]], "image_not_processed", "images.0"),
        ([mine, mine], "validation_error", "images"),
    ]
    for images, code, field in cases:
        assert_error(sup.patch(f"/supplier/goods/{gid}", json={"title": "x", "images": images}), 422, code, field)
        assert_error(sup.post("/supplier/goods", json={**CHANGE, "ref": "bad-image",
                                                       "images": images, "skus": [sku()]}), 422, code, field)
    # nothing was written: no goods, no change, no audit row
    assert "bad-image" not in [g["ref"] for g in ok(sup.get("/supplier/goods"))["goods"]]
    assert ok(sup.get(f"/supplier/goods/{gid}")) == before
    assert audit_rows(sup, f"/supplier/goods/{gid}/audit") == audit_before

    # my own processed upload, by id or by its key, is accepted
    second = upload_image(sup, png(rgb=(9, 9, 9)))
    edited = ok(sup.patch(f"/supplier/goods/{gid}", json={"images": [f"uploads/{sid}/image/{second}", mine]}))
    assert edited["revision"]["images"] == [second, mine]


def test_concurrent_edits_lose_no_audit_row_and_never_half_change(system, ops):
    """Racing full-content edits of approved goods: each lands whole with its rows, or is refused whole."""
    sup, _ = supplier_api(system, ops)
    images = [upload_image(sup, png(rgb=(i * 20, 0, 0))) for i in range(8)]
    goods, _, _ = _on_sale(system, ops, sup, [])
    gid, approved = goods["goods_id"], _content(goods)
    bodies = [{"title": f"title {i}", "description": f"description {i}", "category": f"cat-{i}",
               "images": [images[i]]} for i in range(8)]
    results = race(8, lambda i: sup.patch(f"/supplier/goods/{gid}", json=bodies[i]))
    won = [i for i, r in enumerate(results) if r.status_code == 200]
    assert won, [r.text for r in results]
    for r in results:
        if r.status_code != 200:
            assert_error(r, 409, "concurrent_update")

    final = ok(sup.get(f"/supplier/goods/{gid}"))
    assert _content(final) == approved
    assert _content(final["revision"]) in bodies   # one whole body, never fields of two
    assert final["version"] == goods["version"] + len(won)
    rows = audit_rows(sup, f"/supplier/goods/{gid}/audit", "revision_edited")
    assert len(rows) == 4 * len(won)
    for field in ("title", "description", "category", "images"):
        steps = {str(r["old"]): str(r["new"]) for r in rows if r["field"] == field}
        assert len(steps) == len(won)
        chain = [str(approved[field]) if field != "images" else "[]"]
        while chain[-1] in steps:
            chain.append(steps[chain[-1]])
        assert len(chain) == len(won) + 1, (field, rows)    # one unbroken chain of accepted edits

    # ops approving while the supplier edits: members see one whole version, every change audited
    results = race(6, lambda i: ops.post(f"/ops/goods/{gid}/revision/approve") if i == 0
                   else sup.patch(f"/supplier/goods/{gid}", json=bodies[i]))
    for r in results:
        assert r.status_code == 200 or r.json()["error"]["code"] == "concurrent_update", r.text
    live = _content(ok(ops.get(f"/ops/goods/{gid}")))
    assert live == approved or live in bodies
    approved_rows = audit_rows(ops, f"/ops/goods/{gid}/audit", "revision_approved")
    assert len(approved_rows) == (0 if live == approved else 4)


def test_supplier_cannot_touch_another_suppliers_revision(system, ops):
    owner, _ = supplier_api(system, ops)
    intruder, _ = supplier_api(system, ops)
    goods, _, _ = _on_sale(system, ops, owner, [])
    gid = goods["goods_id"]
    assert_error(intruder.patch(f"/supplier/goods/{gid}", json={"title": "mine"}), 404, "goods_not_found")
    ok(owner.patch(f"/supplier/goods/{gid}", json={"title": "Owner's change"}))
    for path in ("/ops/goods-revisions", f"/ops/goods/{gid}/revision/approve", f"/ops/goods/{gid}/revision/reject"):
        r = requests.request("GET" if path.endswith("revisions") else "POST", system.base_url + path,
                             headers={"X-Api-Key": "nope"}, timeout=30)
        assert r.status_code == 401, (path, r.text)
    assert ok(owner.get(f"/supplier/goods/{gid}"))["revision"]["title"] == "Owner's change"
