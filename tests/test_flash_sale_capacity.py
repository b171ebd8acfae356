"""The checkout path's short-lived cache (``core.cache``) against the rules it must not break: with the cache on,
a suspended channel stops selling at once (the quota shards' condition), and goods taken off sale while a flash
sale runs stop selling within the bound (a sale line takes no ``Stock``, so the goods read is all that stops it).

Uses ``system`` (the app in this process): the bound is set here for these tests only; the rest of the suite
runs with it at 0."""
from __future__ import annotations

import time

import pytest
import requests

from checkout_helpers import make_shop
from chalicelib.core import cache
from chalicelib.sales import starts, warm
from test_flash_sales import rich_member, sale_body, schedule

BOUND = 2.0


@pytest.fixture
def cached(monkeypatch):
    monkeypatch.setattr(cache, "BOUND", BOUND)
    cache._entries.clear()
    yield
    cache._entries.clear()


def test_goods_taken_off_sale_stop_selling_within_the_bound(system, ops, cached):
    shop = make_shop(system, ops, "hosted", stock=2_000)
    sale = schedule(shop, allotment=1_000, limit=99)
    buyers = [rich_member(shop, points=200_000) for _ in range(10)]  # room for 990 units before any limit
    member = buyers[0]
    session = requests.Session()
    assert shop.place(session, member, body=sale_body(sale)).status == 201  # the goods are now in the cache
    assert any(k[0] == "Goods" for k in cache._entries)

    ok_off = ops.post(f"/ops/goods/{shop.goods_id}/off-sale")
    assert ok_off.status_code == 200, ok_off.text
    off_at = time.monotonic()
    outcomes = []  # (sent after the off-sale answered, status, code)
    while sum(1 for sent, _, _ in outcomes if sent > BOUND + 0.5) < 3:
        sent = time.monotonic() - off_at
        attempt = shop.place(session, buyers[len(outcomes) % len(buyers)], body=sale_body(sale))
        outcomes.append((sent, attempt.status, attempt.code))
    # Every cached goods item was read before the off-sale answered, so it is gone by then + BOUND (+ a margin
    # for the instant between a read and its keeping): whatever is sent after that is refused.
    late = [(s, c) for sent, s, c in outcomes if sent > BOUND + 0.5]
    assert late and all(o == (404, "goods_unavailable") for o in late), outcomes


def test_a_suspended_channel_stops_selling_at_once_with_the_cache_on(system, ops, cached):
    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=50, limit=50)
    member = rich_member(shop)
    session = requests.Session()
    assert shop.place(session, member, body=sale_body(sale)).status == 201
    assert shop.place(session, member).status == 201  # an ordinary line too: the channel is cached
    assert any(k[0] == "Channel" for k in cache._entries)

    assert ops.post(f"/ops/channels/{shop.code}/suspend").status_code == 200
    for body in (sale_body(sale), shop.body()):
        attempt = shop.place(session, member, body=body)
        assert (attempt.status, attempt.code) == (403, "channel_suspended"), attempt.body


def test_scheduling_a_sale_schedules_warm_capacity_around_its_window_and_a_re_time_moves_it(system, ops):
    """Up ``LEAD_SECONDS`` before the start, down ``TAIL_SECONDS`` after the end, on the API's and the door's
    alias, sized from the expected rate; moving the window before the start moves the actions (same names)."""
    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=10, starts_in=3600, lasts=600, expected_rate=10_000)
    recorded = warm.adapter()
    assert isinstance(recorded, warm.RecordedScaling)
    mine = {n: a for n, a in recorded.actions.items() if f"-{sale['sale_id']}-" in n}
    concurrency = warm.concurrency_for(10_000)
    assert concurrency == 1_500  # 10,000/s × 0.12 s × 1.25
    assert sorted((a.target, a.at, a.min_capacity) for a in mine.values()) == sorted(
        [(t, sale["starts_at"] - warm.LEAD_SECONDS, concurrency) for t in warm.targets()]
        + [(t, sale["ends_at"] + warm.TAIL_SECONDS, 0) for t in warm.targets()])
    assert all(t.startswith("function:") and t.endswith(":live") for t in warm.targets())
    view = ok_json(ops.get(f"/ops/channels/{shop.code}/sales/{sale['sale_id']}"))
    assert view["warm"]["scheduled"] is True and sorted(view["warm"]["actions"]) == sorted(mine)

    later = sale["starts_at"] + 1800
    moved = ok_json(ops.patch(f"/ops/channels/{shop.code}/sales/{sale['sale_id']}",
                              json={"starts_at": later, "ends_at": later + 600}))
    assert moved["warm"]["up_at"] == later - warm.LEAD_SECONDS
    again = {n: a for n, a in recorded.actions.items() if f"-{sale['sale_id']}-" in n}
    assert set(again) == set(mine)  # replaced, not added
    assert {a.at for n, a in again.items() if n.endswith("-up")} == {later - warm.LEAD_SECONDS}
    assert {a.at for n, a in again.items() if n.endswith("-down")} == {later + 600 + warm.TAIL_SECONDS}


def test_a_failed_warm_schedule_leaves_the_sale_scheduled_and_says_so(system, ops, monkeypatch):
    class Down:
        def put(self, action):
            raise ConnectionError("application-autoscaling unreachable")

    monkeypatch.setattr(warm, "_ADAPTER", Down())
    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=10, starts_in=3600)
    assert sale["warm"] == {"scheduled": False, "error": "ConnectionError", "concurrency": warm.concurrency_for(1_000)}
    assert sale["remaining"] == 10


def test_concurrency_sizing_is_bounded():
    assert warm.concurrency_for(1) == 1
    assert warm.concurrency_for(10**7) == warm.MAX_CONCURRENCY
    assert warm.concurrency_for(1_000, attempt_seconds=0.2) == 250


def ok_json(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_after_a_sell_out_the_crowd_reads_nothing_of_the_sale_and_a_replay_still_answers_its_order(
        system, ops, cached, monkeypatch):
    from dynamo_proxy import DynamoProxy, route_through

    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=1, limit=1, shards=1)
    buyer, late = rich_member(shop), rich_member(shop)
    session = requests.Session()
    paid = shop.place(session, buyer, key="sellout-key-1", body=sale_body(sale))
    assert paid.status == 201
    first = shop.place(session, late, body=sale_body(sale))
    assert (first.status, first.code) == (409, "sale_sold_out")  # read every shard: now known sold out here

    monkeypatch.setattr(cache, "BOUND", 600.0)  # the sold-out state's bound is not what this test measures
    with DynamoProxy(system.dynamodb.endpoint) as proxy:
        route_through(proxy, monkeypatch, plain=True)
        again = shop.place(session, late, body=sale_body(sale))
        assert (again.status, again.code) == (409, "sale_sold_out")
        assert dict(proxy.forwarded) == {"GetItem": 1}, proxy.forwarded  # the order id's replay check only
        replay = shop.place(session, buyer, key="sellout-key-1", body=sale_body(sale))
        assert (replay.status, replay.order_id) == (200, paid.order_id)


def test_sale_orders_reach_fulfilment_through_the_buffer_at_a_paced_rate(system, ops):
    """A sale order's checkout starts no execution (an ordinary order still does, at once); the minutely sweep
    starts the buffered ones, each once, and the split takes them off the buffer."""
    from chalicelib.orders.models import Order
    from chalicelib.orders import fulfilment
    from chalicelib.sales import starts

    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=5, limit=5)
    member = rich_member(shop)
    names: list[str] = []
    client = fulfilment._sfn()
    handler = lambda params, **_: names.append(params["name"])  # noqa: E731
    client.meta.events.register("before-parameter-build.sfn.StartExecution", handler)
    try:
        session = requests.Session()
        on_sale = [shop.place(session, member, body=sale_body(sale)).order_id for _ in range(3)]
        ordinary = shop.place(session, member).order_id
        assert names == [ordinary]  # the sale's three wait in the buffer
        assert all(Order.get(o, consistent_read=True).unsplit == shop.code for o in on_sale)
        started = starts.drain(rate=1_000, budget=30)
        assert started.get(shop.code, 0) >= 3 and set(on_sale) <= set(names)
        assert names.count(ordinary) == 1  # an ordinary order is never started again by the buffer
    finally:
        client.meta.events.unregister("before-parameter-build.sfn.StartExecution", handler)


def test_paced_keeps_to_its_rate_and_budget():
    clock = [0.0]
    done: list[float] = []
    n = starts.paced(range(1_000), rate=200, budget=2.0, act=lambda i: done.append(clock[0]),
                     clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    assert n == 400 and done[0] == 0.0 and done[-1] == 399 / 200
    assert all(b - a >= 1 / 200 - 1e-9 for a, b in zip(done, done[1:]))
