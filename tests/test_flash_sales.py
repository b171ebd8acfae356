"""Flash sales over HTTP against Dynoxide: ops schedule a sale (audited, its allotment set aside from stock,
editable only before the start), members buy it through the ordinary checkout with the line's ``sale_id``,
and the sale sells exactly its allotment across shards, never more than the per-member limit per member,
only inside its window; cancelled units go back to the allotment while it runs and to stock after."""
from __future__ import annotations

import time
from collections import Counter

import pytest
import requests

from checkout_helpers import PASSWORD, Shop, assert_error, burst, make_shop, ok, summary, uid
from chalicelib.checkout.models import Wallet
from chalicelib.core.models import Audit
from chalicelib.orders.models import Order
from chalicelib.orders import parcels
from chalicelib.orders.orders import lines_of
from chalicelib.sales import rules, sales
from chalicelib.sales.models import SaleBuyer
from helpers import wait_for

STOCK = 1_000
SALE_POINTS = 1_000  # 10 yuan at 100 points per yuan: at the settlement price (1,000 fen)


def schedule(shop: Shop, allotment: int = 10, starts_in: float = -5, lasts: float = 3600, limit: int = 1,
             shards: int | None = None, **extra) -> dict:
    now = int(time.time())
    body = {"sale_id": uid("fs-"), "goods_id": shop.goods_id, "sku_id": shop.sku_id, "price_points": SALE_POINTS,
            "allotment": allotment, "starts_at": int(now + starts_in), "ends_at": int(now + starts_in + lasts),
            "member_limit": limit, **({"shards": shards} if shards else {}), **extra}
    return ok(shop.ops.post(f"/ops/channels/{shop.code}/sales", json=body), 201)


def sale_body(sale: dict, qty: int = 1) -> dict:
    return {"lines": [{"goods_id": sale["goods_id"], "sku_id": sale["sku_id"], "qty": qty,
                       "sale_id": sale["sale_id"]}], "password": PASSWORD}


def ops_sale(shop: Shop, sale: dict) -> dict:
    return ok(shop.ops.get(f"/ops/channels/{shop.code}/sales/{sale['sale_id']}"))


def member_sales(shop: Shop, member: str) -> dict:
    return ok(requests.get(f"{shop.base_url}/api/{shop.code}/sales", headers=shop.auth(member), timeout=30))


def buyer(shop: Shop, sale: dict, member: str) -> int:
    try:
        return int(SaleBuyer.get(sales.buyer_key(shop.code, sale["sale_id"], shop.member_ids[member]),
                                 consistent_read=True).bought)
    except SaleBuyer.DoesNotExist:
        return 0


def assert_books(shop: Shop, sale: dict, stock_before_sale: int) -> dict:
    """Per shard remaining + sold + returned = allotment; sold = the sale units of its paid orders, shard by
    shard; normal stock + what the sale still holds or sold = the stock before the sale."""
    view = ops_sale(shop, sale)
    for shard in view["by_shard"].values():
        assert min(shard.values()) >= 0, shard
        assert shard["remaining"] + shard["sold"] + shard["returned"] == shard["allotment"], shard
    taken: Counter = Counter()
    for order in shop.orders():
        for line in lines_of(order):
            if line.get("sale_id") == sale["sale_id"] and order.status == "paid":
                taken.update({k: int(v) for k, v in line["sale_takes"].items()})
    assert {k: s["sold"] for k, s in view["by_shard"].items() if s["sold"]} == {k: n for k, n in taken.items() if n}
    assert shop.stock() + view["remaining"] + view["sold"] == stock_before_sale
    return view


@pytest.fixture(scope="module")
def shop(system, ops) -> Shop:
    return make_shop(system, ops, "hosted", stock=STOCK)


def rich_member(shop: Shop, points: int = 100_000) -> str:
    member = shop.member()
    assert shop.grant(member, points).status_code == 201
    return member


def test_ops_schedule_a_sale_audited_with_its_allotment_set_aside_and_edit_it_only_before_start(shop, ops):
    stock = shop.stock()
    sale = schedule(shop, allotment=40, starts_in=600, shards=4)
    assert (sale["state"], sale["allotment"], sale["remaining"], sale["shards"]) == ("upcoming", 40, 40, 4)
    assert shop.stock() == stock - 40
    rows = list(Audit.query(f"sale#{shop.code}#{sale['sale_id']}"))
    assert [r.action for r in rows] == ["sale_scheduled"] and rows[0].actor

    path = f"/ops/channels/{shop.code}/sales/{sale['sale_id']}"
    edited = ok(ops.patch(path, json={"allotment": 30, "price_points": 1_500, "member_limit": 2}))
    assert (edited["allotment"], edited["price_points"], edited["member_limit"]) == (30, 1_500, 2)
    assert sorted(s["allotment"] for s in edited["by_shard"].values()) == [7, 7, 8, 8]
    assert shop.stock() == stock - 30
    assert [r.action for r in Audit.query(f"sale#{shop.code}#{sale['sale_id']}")] == ["sale_scheduled", "sale_edited"]

    # refused edits and schedules write nothing
    assert_error(ops.patch(path, json={"price_points": 999}), 409, "price_below_settlement")
    assert_error(ops.patch(path, json={"allotment": STOCK * 10}), 409, "out_of_stock")
    assert_error(ops.post(f"/ops/channels/{shop.code}/sales", json={
        "sale_id": sale["sale_id"], "goods_id": shop.goods_id, "sku_id": shop.sku_id, "price_points": SALE_POINTS,
        "allotment": 1, "starts_at": int(time.time()) + 60, "ends_at": int(time.time()) + 120}), 409, "sale_exists")
    assert_error(ops.post(f"/ops/channels/{shop.code}/sales", json={
        "sale_id": uid("fs-"), "goods_id": shop.goods_id, "sku_id": shop.sku_id, "price_points": SALE_POINTS,
        "allotment": 1, "starts_at": int(time.time()) + 120, "ends_at": int(time.time()) + 60}), 422,
        "validation_error")
    assert_error(ops.post(f"/ops/channels/{shop.code}/sales", json={
        "sale_id": uid("fs-"), "goods_id": "nope", "sku_id": shop.sku_id, "price_points": SALE_POINTS,
        "allotment": 1, "starts_at": int(time.time()) + 60, "ends_at": int(time.time()) + 120}), 404,
        "goods_unavailable")
    assert shop.stock() == stock - 30
    assert ops_sale(shop, sale)["price_points"] == 1_500

    # members see it upcoming, with the server's clock
    member = rich_member(shop)
    seen = next(s for s in member_sales(shop, member)["sales"] if s["sale_id"] == sale["sale_id"])
    assert (seen["state"], seen["sold_out"], seen["limit_reached"], seen["price_points"]) == (
        "upcoming", False, False, 1_500)

    # the shard count follows the expected rate
    assert rules.shards_for(10_000) == 25 and rules.shards_for(1) == 1 and rules.shards_for(10**6) == 32


def test_before_the_start_and_after_the_end_checkout_is_refused_without_a_write(system, ops):
    shop = make_shop(system, ops, "hosted", stock=STOCK)
    member = rich_member(shop)
    upcoming = schedule(shop, allotment=5, starts_in=600)
    wallet = Wallet.get(shop.member_ids[member], consistent_read=True)
    attempt = shop.place(requests.Session(), member, body=sale_body(upcoming))
    assert (attempt.status, attempt.code) == (409, "sale_not_started"), attempt.body
    assert ops_sale(shop, upcoming)["remaining"] == 5
    assert int(Wallet.get(shop.member_ids[member], consistent_read=True).balance) == int(wallet.balance)

    # a short sale: bought while it runs (at its price, from its allotment), refused once it ended
    short = schedule(shop, allotment=5, starts_in=-2, lasts=6)
    stock = shop.stock()
    paid = shop.place(requests.Session(), member, body=sale_body(short))
    assert paid.status == 201, paid.body
    assert paid.body["points"] == SALE_POINTS
    assert shop.stock() == stock  # the normal stock is not touched: the unit came from the allotment
    path = f"/ops/channels/{shop.code}/sales/{short['sale_id']}"
    assert_error(ops.patch(path, json={"price_points": 2_000}), 409, "sale_started")
    raised = ok(ops.patch(path, json={"allotment": 8}))  # raised while it runs: 3 more units from stock
    assert (raised["allotment"], raised["remaining"], shop.stock()) == (8, 7, stock - 3)
    assert_error(ops.patch(path, json={"allotment": 0}), 422, "validation_error")
    lowered = ok(ops.patch(path, json={"allotment": 1}))  # never below sold: 1 unit is sold
    assert (lowered["allotment"], lowered["remaining"], shop.stock()) == (1, 0, stock + 4)
    assert member_sales(shop, member)["sales"] and next(
        s for s in member_sales(shop, member)["sales"] if s["sale_id"] == short["sale_id"])["sold_out"] is True
    ok(ops.patch(path, json={"allotment": 3}))

    wait_for(lambda: member_sales(shop, member)["server_time"], lambda t: t >= short["ends_at"] + 0.5, timeout=30)
    late = shop.place(requests.Session(), rich_member(shop), body=sale_body(short))
    assert (late.status, late.code) == (409, "sale_ended"), late.body
    assert_error(ops.patch(path, json={"allotment": 5}), 409, "sale_ended")
    assert short["sale_id"] not in {s["sale_id"] for s in member_sales(shop, member)["sales"]}
    closed = ok(ops.post(f"{path}/close"))
    assert (closed["returned_now"], closed["status"], closed["remaining"]) == (2, "closed", 0)
    assert_books(shop, short, stock + 5)


def test_one_member_racing_100_ways_gets_exactly_the_limit(pooled, ops):
    shop = make_shop(pooled, ops, "hosted", stock=STOCK, api_timeout=10.0)
    member = rich_member(shop, points=400_000)
    sale = schedule(shop, allotment=50, limit=3, shards=4)
    attempts = burst(shop.base_url, [lambda s: shop.place(s, member, body=sale_body(sale)) for _ in range(100)],
                     workers=100)
    outcome = summary(attempts)
    assert outcome.get((201, None)) == 3, outcome
    assert set(outcome) <= {(201, None), (409, "sale_limit_reached")}, outcome
    assert buyer(shop, sale, member) == 3
    view = assert_books(shop, sale, STOCK)
    assert (view["sold"], view["remaining"]) == (3, 47)
    seen = next(s for s in member_sales(shop, member)["sales"] if s["sale_id"] == sale["sale_id"])
    assert (seen["bought"], seen["limit_reached"], seen["sold_out"]) == (3, True, False)
    wallet = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert int(wallet.spent) == 3 * SALE_POINTS and int(wallet.balance) == 400_000 - 3 * SALE_POINTS


def test_a_500_way_burst_sells_exactly_the_allotment_of_50_across_shards(pooled, ops):
    shop = make_shop(pooled, ops, "hosted", stock=STOCK, api_timeout=10.0)
    members = shop.members(100)
    for m in members:
        assert shop.grant(m, 100_000).status_code == 201
    sale = schedule(shop, allotment=50, limit=5, shards=6)  # 9,9,8,8,8,8: leftovers must be found across shards
    quota = shop.quota_item()
    tasks = [lambda s, m=m: shop.place(s, m, body=sale_body(sale)) for m in members for _ in range(5)]
    attempts = burst(shop.base_url, tasks, workers=100)
    outcome = summary(attempts)
    assert outcome.get((201, None)) == 50, outcome
    assert set(outcome) <= {(201, None), (409, "sale_sold_out"), (409, "sale_limit_reached")}, outcome
    view = assert_books(shop, sale, STOCK)
    assert (view["sold"], view["remaining"], view["sold_out"]) == (50, 0, True)
    assert 0 <= view["seconds_to_sold_out"] <= time.time() - sale["starts_at"]  # operating data: time to sell out
    assert all(s["remaining"] == 0 for s in view["by_shard"].values())
    paid = [o for o in shop.orders() if o.status == "paid"]
    assert len(paid) == 50 and len({o.order_id for o in paid}) == 50
    after = shop.quota_item()
    assert after.spent - quota.spent == 50 * SALE_POINTS
    shop.assert_shards_balanced()
    for m in members:  # every member's books: what they paid is what their wallet spent, within the limit
        mine = [o for o in paid if o.member_id == shop.member_ids[m]]
        assert len(mine) == buyer(shop, sale, m) <= 5
        wallet = Wallet.get(shop.member_ids[m], consistent_read=True)
        assert int(wallet.spent) == len(mine) * SALE_POINTS == 100_000 - int(wallet.balance)


def test_a_cancel_gives_the_unit_to_the_allotment_during_the_sale_and_to_stock_after(shop, ops):
    sale = schedule(shop, allotment=2, starts_in=-2, lasts=8, limit=1)
    first, second = rich_member(shop), rich_member(shop)
    orders = []
    for m in (first, second):
        attempt = shop.place(requests.Session(), m, body=sale_body(sale))
        assert attempt.status == 201, attempt.body
        orders.append(attempt.order_id)
    third = rich_member(shop)
    calls = sum(shop.fake.calls.values())
    sold_out = shop.place(requests.Session(), third, body=sale_body(sale))
    assert (sold_out.status, sold_out.code) == (409, "sale_sold_out")
    assert sum(shop.fake.calls.values()) == calls  # refused before the payment check: no call to the channel
    stock = shop.stock()

    during = parcels.split(orders[0])[0]
    ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{during.parcel_id}/cancel", headers=shop.auth(first),
                     timeout=30))
    view = ops_sale(shop, sale)
    assert (view["remaining"], view["sold"], shop.stock(), buyer(shop, sale, first)) == (1, 1, stock, 0)
    again = shop.place(requests.Session(), third, body=sale_body(sale))  # the unit sells again
    assert again.status == 201, again.body

    wait_for(lambda: member_sales(shop, third)["server_time"], lambda t: t >= sale["ends_at"] + 0.5, timeout=30)
    after = parcels.split(orders[1])[0]
    ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{after.parcel_id}/cancel", headers=shop.auth(second),
                     timeout=30))
    view = ops_sale(shop, sale)
    assert (view["remaining"], view["sold"], view["returned"], shop.stock()) == (0, 1, 1, stock + 1)
    assert buyer(shop, sale, second) == 0
    assert Order.get(orders[1]).status == "paid"  # the order's own status stays; its parcel is cancelled
