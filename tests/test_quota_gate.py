"""Checkout's gate lives on the quota shards, not on the channel item: it follows suspension and periods."""
import time

import requests

from checkout_helpers import make_shop, ok


def _place(shop, external_id: str):
    return shop.place(requests.Session(), external_id)


def test_suspend_and_resume_flip_every_shard_of_the_current_period(system, ops):
    shop = make_shop(system, ops, "remote", shards=3)
    member = shop.member(points=10_000_000)
    assert ok(ops.post(f"/ops/channels/{shop.code}/suspend"))["status"] == "suspended"
    assert [q.selling for q in shop.quota_shards()] == [False, False, False]
    assert shop.quota()["selling"] is False
    before = shop.quota()
    ok(ops.post(f"/ops/channels/{shop.code}/resume"))
    assert [q.selling for q in shop.quota_shards()] == [True, True, True]
    attempt = _place(shop, member)
    assert attempt.status == 201, attempt.body
    assert shop.quota()["spent"] == before["spent"] + shop.price_points


def test_a_new_period_closes_the_old_one_at_once(system, ops):
    shop = make_shop(system, ops, "remote", shards=2)
    member = shop.member(points=10_000_000)
    assert _place(shop, member).status == 201
    now = int(time.time())
    opened = ok(ops.post(f"/ops/channels/{shop.code}/periods",
                         json={"period_id": "P2", "starts_at": now - 5, "ends_at": now + 3600, "shards": 2}), 201)
    assert opened["selling"] is True
    assert [q.selling for q in shop.quota_shards()] == [False, False]  # P1, as stored
    attempt = _place(shop, member)  # goes to P2 now
    assert attempt.status == 201, attempt.body
    assert attempt.body["period_id"] == "P2"


def test_a_period_opened_while_suspended_does_not_sell_until_resumed(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=10_000_000)
    ok(ops.post(f"/ops/channels/{shop.code}/suspend"))
    now = int(time.time())
    ok(ops.post(f"/ops/channels/{shop.code}/periods",
                json={"period_id": "P2", "starts_at": now - 5, "ends_at": now + 3600}), 201)
    assert ok(ops.get(f"/ops/channels/{shop.code}/quota"))["selling"] is False
    ok(ops.post(f"/ops/channels/{shop.code}/resume"))
    assert ok(ops.get(f"/ops/channels/{shop.code}/quota"))["selling"] is True
    assert _place(shop, member).status == 201


def test_suspended_channel_is_refused_by_name(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=10_000_000)
    ok(ops.post(f"/ops/channels/{shop.code}/suspend"))
    attempt = _place(shop, member)
    assert (attempt.status, attempt.code) == (403, "channel_suspended")
