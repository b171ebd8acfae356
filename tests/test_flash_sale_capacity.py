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
from test_flash_sales import rich_member, sale_body, schedule

BOUND = 2.0


@pytest.fixture
def cached(monkeypatch):
    monkeypatch.setattr(cache, "BOUND", BOUND)
    cache._entries.clear()
    yield
    cache._entries.clear()


def test_goods_taken_off_sale_stop_selling_within_the_bound(system, ops, cached):
    shop = make_shop(system, ops, "hosted", stock=100)
    sale = schedule(shop, allotment=50, limit=50)
    member = rich_member(shop)
    session = requests.Session()
    assert shop.place(session, member, body=sale_body(sale)).status == 201  # the goods are now in the cache
    assert any(k[0] == "Goods" for k in cache._entries)

    ok_off = ops.post(f"/ops/goods/{shop.goods_id}/off-sale")
    assert ok_off.status_code == 200, ok_off.text
    off_at = time.monotonic()
    outcomes = []
    while time.monotonic() - off_at < BOUND + 1.5:
        attempt = shop.place(session, member, body=sale_body(sale))
        outcomes.append((time.monotonic() - off_at, attempt.status, attempt.code))
    refused = [o for o in outcomes if (o[1], o[2]) == (404, "goods_unavailable")]
    assert refused, outcomes
    first_refusal = refused[0][0]
    assert first_refusal <= BOUND + 0.5, outcomes
    # from the first refusal on, nothing sells any more
    assert all((s, c) == (404, "goods_unavailable") for t, s, c in outcomes if t >= first_refusal), outcomes


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
