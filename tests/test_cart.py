"""The member's server-side cart over HTTP: only in cart-enabled channels, bounded, priced from the
channel's sub-pool when read, safe under concurrent changes, and emptied by the order placed from it
unless it changed meanwhile."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import requests

from chalicelib.checkout import carts
from chalicelib.checkout.models import Cart
from chalicelib.core.errors import Conflict
from checkout_helpers import PASSWORD, Shop, assert_error, make_shop, ok, uid
from helpers import race

SAMPLE_SKUS = [f"K{i:02d}" for i in range(25)]
SAMPLE_PRICE = 600  # fen: 600 points a unit at 100 points per yuan


def cart_shop(pooled, ops) -> tuple[Shop, str]:
    """A hosted, cart-enabled channel selling the tea box (S1) and a sample box with 25 SKUs."""
    shop = make_shop(pooled, ops, "hosted")
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"cart_enabled": True}))
    goods = ok(requests.post(f"{shop.base_url}/supplier/goods", headers={"X-Api-Key": shop.supplier_key}, json={
        "ref": uid("ref-"), "title": "Sample box", "category": "food",
        "skus": [{"sku_id": s, "spec": f"flavour {s}", "settlement_price": 500, "stock": 1000} for s in SAMPLE_SKUS]},
        timeout=30), 201)
    ok(ops.post(f"/ops/goods/{goods['goods_id']}/approve",
                json={"base_prices": {s: SAMPLE_PRICE for s in SAMPLE_SKUS}}))
    ok(ops.put(f"/ops/channels/{shop.code}/pool/{goods['goods_id']}", json={"prices": {}}))
    return shop, goods["goods_id"]


def cart(shop: Shop, member: str) -> dict:
    return ok(requests.get(f"{shop.base_url}/api/{shop.code}/cart", headers=shop.auth(member), timeout=30))


def put(shop: Shop, member: str, goods_id: str, sku_id: str, qty: int) -> requests.Response:
    return requests.put(f"{shop.base_url}/api/{shop.code}/cart/lines/{goods_id}/{sku_id}", json={"qty": qty},
                        headers=shop.auth(member), timeout=60)


def remove(shop: Shop, member: str, goods_id: str, sku_id: str) -> requests.Response:
    return requests.delete(f"{shop.base_url}/api/{shop.code}/cart/lines/{goods_id}/{sku_id}",
                           headers=shop.auth(member), timeout=60)


def checkout(shop: Shop, member: str, view: dict, key: str | None = None) -> requests.Response:
    body = {"lines": [{k: l[k] for k in ("goods_id", "sku_id", "qty")} for l in view["lines"]],
            "password": PASSWORD, "cart_version": view["version"]}
    return requests.post(f"{shop.base_url}/api/{shop.code}/orders", json=body, timeout=60,
                         headers={**shop.auth(member), "Idempotency-Key": key or uid("key-")})


def skus_in(view: dict) -> dict[tuple[str, str], int]:
    return {(l["goods_id"], l["sku_id"]): l["qty"] for l in view["lines"]}


def test_a_channel_without_cart_has_none(pooled, ops):
    shop = make_shop(pooled, ops, "hosted")
    member = shop.member()
    assert_error(requests.get(f"{shop.base_url}/api/{shop.code}/cart", headers=shop.auth(member), timeout=30),
                 404, "cart_disabled")
    assert_error(put(shop, member, shop.goods_id, shop.sku_id, 1), 404, "cart_disabled")
    assert_error(remove(shop, member, shop.goods_id, shop.sku_id), 404, "cart_disabled")
    topics = ok(requests.get(f"{shop.base_url}/api/{shop.code}/topics", headers=shop.auth(member), timeout=30))
    assert topics["channel"]["cart_enabled"] is False


def test_cart_lines_are_bounded_and_priced_from_the_sub_pool(pooled, ops):
    shop, sample = cart_shop(pooled, ops)
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    empty = cart(shop, member)
    assert (empty["lines"], empty["total_points"], empty["balance"], empty["points_left"]) == ([], 0, 10_000, 10_000)

    view = ok(put(shop, member, shop.goods_id, shop.sku_id, 2))
    assert skus_in(view) == {(shop.goods_id, shop.sku_id): 2}
    line = view["lines"][0]
    assert (line["title"], line["spec"], line["price"], line["points"], line["available"]) == (
        "Tea gift box", "250 g", 1200, 1200, True)
    assert (view["total_points"], view["total_amount"], view["points_left"]) == (2400, 2400, 10_000 - 2400)

    # Re-priced by ops: the cart shows the new price on its next read, like the catalog and checkout.
    ok(ops.put(f"/ops/channels/{shop.code}/pool/{shop.goods_id}", json={"prices": {shop.sku_id: {"price": 1500}}}))
    view = cart(shop, member)
    assert (view["lines"][0]["points"], view["total_points"], view["points_left"]) == (1500, 3000, 7000)

    for qty in (0, 100, -1, "two"):
        assert_error(put(shop, member, shop.goods_id, shop.sku_id, qty), 422, "validation_error")
    assert_error(put(shop, member, uid("G"), "S1", 1), 404, "goods_unavailable")
    assert_error(put(shop, member, shop.goods_id, "NOPE", 1), 404, "goods_unavailable")

    for sku in SAMPLE_SKUS[:19]:
        ok(put(shop, member, sample, sku, 1))
    full = cart(shop, member)
    assert len(full["lines"]) == 20 and full["total_points"] == 3000 + 19 * SAMPLE_PRICE
    assert_error(put(shop, member, sample, SAMPLE_SKUS[19], 1), 409, "cart_full")
    assert skus_in(ok(put(shop, member, sample, SAMPLE_SKUS[0], 99)))[(sample, SAMPLE_SKUS[0])] == 99  # change: fine
    view = ok(remove(shop, member, sample, SAMPLE_SKUS[0]))
    assert len(view["lines"]) == 19 and (sample, SAMPLE_SKUS[0]) not in skus_in(view)
    assert ok(remove(shop, member, sample, SAMPLE_SKUS[0]))["version"] == view["version"]  # gone: nothing written

    # Goods taken off this channel's sub-pool stay in the cart, marked unavailable, out of the total.
    ok(ops.delete(f"/ops/channels/{shop.code}/pool/{shop.goods_id}"))
    view = cart(shop, member)
    tea = next(l for l in view["lines"] if l["goods_id"] == shop.goods_id)
    assert (tea["available"], view["ready"], view["total_points"]) == (False, False, 18 * SAMPLE_PRICE)

    other = shop.member()  # carts are per member
    assert cart(shop, other)["lines"] == []


def test_concurrent_changes_never_pass_the_bound_or_lose_a_line(pooled, ops):
    shop, sample = cart_shop(pooled, ops)
    member = shop.member()
    # 200 writers at once over 25 SKUs (8 quantities each): 20 SKUs get in, the rest are refused as full.
    added = race(200, lambda i: put(shop, member, sample, SAMPLE_SKUS[i % 25], i // 25 + 1))
    refused = [r for r in added if r.status_code != 200]
    assert all((r.status_code, r.json()["error"]["code"]) == (409, "cart_full") for r in refused), \
        [r.text for r in refused if r.status_code != 409][:3]
    view = cart(shop, member)
    final = {sku: qty for (_, sku), qty in skus_in(view).items()}
    won = {SAMPLE_SKUS[i % 25] for i, r in enumerate(added) if r.status_code == 200}
    assert set(final) == won and len(final) == 20
    for sku, qty in final.items():  # the quantity is one a writer of that SKU was told it set
        assert qty in {i // 25 + 1 for i, r in enumerate(added) if SAMPLE_SKUS[i % 25] == sku and r.status_code == 200}
    assert {SAMPLE_SKUS[i % 25] for i, r in enumerate(added) if r.status_code == 409}.isdisjoint(won)

    # Removes, quantity changes and new adds at once: every change that answered 200 is in the cart.
    lines = [sku for _, sku in skus_in(view)]
    removed, changed, fresh = lines[:10], lines[10:], sorted(set(SAMPLE_SKUS) - won)
    tasks = ([lambda s=s: remove(shop, member, sample, s) for s in removed]
             + [lambda s=s: put(shop, member, sample, s, 7) for s in changed]
             + [lambda s=s: put(shop, member, sample, s, 3) for s in fresh])
    answers = race(len(tasks), lambda i: tasks[i]())
    assert all(r.status_code == 200 for r in answers[:20]), [r.text for r in answers[:20] if r.status_code != 200]
    assert all((r.status_code, r.json().get("error", {}).get("code")) in ((200, None), (409, "cart_full"))
               for r in answers[20:])
    fresh_won = {s for s, r in zip(fresh, answers[20:]) if r.status_code == 200}
    final = {sku: qty for (_, sku), qty in skus_in(cart(shop, member)).items()}
    assert final == {**{s: 7 for s in changed}, **{s: 3 for s in fresh_won}}
    assert len(final) <= 20


def test_checkout_of_the_cart_is_one_order_and_empties_it(pooled, ops):
    shop, sample = cart_shop(pooled, ops)
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    ok(put(shop, member, shop.goods_id, shop.sku_id, 1))
    view = ok(put(shop, member, sample, "K03", 2))
    assert view["ready"] and view["total_points"] == 1200 + 2 * SAMPLE_PRICE
    key = uid("key-")
    order = ok(checkout(shop, member, view, key), 201)
    assert (order["status"], order["points"], len(order["lines"])) == ("paid", view["total_points"], 2)
    after = cart(shop, member)
    assert (after["lines"], after["balance"]) == ([], 10_000 - view["total_points"])
    assert after["version"] > view["version"]

    # A replay of the checkout answers the same order and leaves a cart filled since then alone.
    ok(put(shop, member, sample, "K04", 1))
    assert ok(checkout(shop, member, view, key))["order_id"] == order["order_id"]
    assert skus_in(cart(shop, member)) == {(sample, "K04"): 1}
    ids = [o["order_id"] for o in ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders",
                                                  headers=shop.auth(member), timeout=30))["orders"]]
    assert ids == [order["order_id"]]


def test_a_cart_changed_after_it_was_read_survives_the_checkout(pooled, ops):
    shop, sample = cart_shop(pooled, ops)
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    read = ok(put(shop, member, sample, "K01", 1))
    ok(put(shop, member, sample, "K02", 1))  # on another device, after the first read
    ok(checkout(shop, member, read), 201)  # the order is what was read: K01 only
    assert skus_in(cart(shop, member)) == {(sample, "K01"): 1, (sample, "K02"): 1}

    # An order whose lines are not the cart's (buy now with a stale version) empties nothing either.
    view = cart(shop, member)
    ok(checkout(shop, member, dict(view, lines=view["lines"][:1])), 201)
    assert len(cart(shop, member)["lines"]) == 2


def test_with_qty_keeps_lines_unique_ordered_and_bounded():
    """The pure rule behind every change, over random sequences of sets and removes."""
    rnd = random.Random(10)
    for _ in range(300):
        lines: list[dict] = []
        for _ in range(rnd.randint(1, 60)):
            key = (f"G{rnd.randint(1, 6)}", f"S{rnd.randint(1, 5)}")
            qty = rnd.choice([0, 0, 1, 2, rnd.randint(1, carts.MAX_QTY)])
            given, before = lines, [dict(l) for l in lines]
            try:
                lines = carts.with_qty(given, key[0], key[1], qty)
            except Conflict as refused:
                assert refused.code == "cart_full" and len(before) == carts.MAX_LINES and qty > 0
                assert key not in {(l["goods_id"], l["sku_id"]) for l in before}
                continue
            keys = [(l["goods_id"], l["sku_id"]) for l in lines]
            assert len(keys) == len(set(keys)) <= carts.MAX_LINES
            assert all(1 <= l["qty"] <= carts.MAX_QTY for l in lines)
            found = [l for l in lines if (l["goods_id"], l["sku_id"]) == key]
            assert found == ([{"goods_id": key[0], "sku_id": key[1], "qty": qty}] if qty else [])
            others = [l for l in before if (l["goods_id"], l["sku_id"]) != key]
            assert [l for l in lines if (l["goods_id"], l["sku_id"]) != key] == others  # the rest untouched, in order
            assert given == before  # the input is never changed in place


def test_an_expired_cart_reads_empty_and_starts_again(pooled, ops):
    shop, sample = cart_shop(pooled, ops)
    member = shop.member()
    ok(put(shop, member, sample, "K01", 2))
    stored = Cart.get(shop.member_ids[member])
    stored.update([Cart.expires_at.set(datetime(2020, 1, 1, tzinfo=timezone.utc))])  # DynamoDB's TTL deletes late
    view = cart(shop, member)
    assert (view["lines"], view["count"], view["expires_at"]) == ([], 0, None)
    after = ok(put(shop, member, sample, "K02", 1))
    assert skus_in(after) == {(sample, "K02"): 1} and after["version"] == view["version"] + 1
    assert after["expires_at"] > datetime.now(timezone.utc).timestamp() + (carts.TTL_DAYS - 1) * 86_400


def test_a_remote_channels_cart_checks_out_through_the_channels_deduction(pooled, ops):
    shop = make_shop(pooled, ops, "remote")
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"cart_enabled": True}))
    member = shop.member(points=10_000)  # the channel keeps the wallet
    view = ok(put(shop, member, shop.goods_id, shop.sku_id, 3))
    assert view["total_points"] == 3 * shop.price_points
    order = ok(checkout(shop, member, view), 201)
    assert (order["status"], order["points"]) == ("paid", 3 * shop.price_points)
    assert shop.fake.wallets[member] == 10_000 - 3 * shop.price_points
    assert cart(shop, member)["lines"] == []
