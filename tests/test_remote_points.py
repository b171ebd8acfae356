"""Remote mode against a fake channel wallet: success, refusal, timeouts either side of the deduction,
and a query API that is down. In every case the channel's wallet and our quota agree afterwards."""
from __future__ import annotations

import time

import pytest

from checkout_helpers import BURST_TIMEOUT, Shop, burst, make_shop, ok, summary
from fake_wallet_channel import DOWN, FAIL, NORMAL, TIMEOUT_AFTER, TIMEOUT_BEFORE

STOCK = 1000


def assert_agree(shop: Shop, resolved: bool = True) -> dict:
    """The channel's deductions, our quota, our orders and the stock tell one story."""
    quota = shop.quota()
    orders = shop.orders()
    by_status: dict[str, int] = {}
    for o in orders:
        by_status[o.status] = by_status.get(o.status, 0) + int(o.points)
        if o.status == "paid":
            assert shop.fake.deducted(o.order_id), f"paid order {o.order_id} was never deducted by the channel"
        if o.status == "failed":
            assert not shop.fake.deducted(o.order_id), f"failed order {o.order_id} was deducted by the channel"
    ours = {o.order_id: o.status for o in orders}
    with shop.fake._lock:
        deductions = dict(shop.fake.deductions)
    assert all(ours.get(order_id) in ("paid", "awaiting_deduction") for order_id in deductions), (deductions, ours)
    paid_deducted = sum(d["points"] for order_id, d in deductions.items() if ours[order_id] == "paid")
    assert quota["spent"] == paid_deducted == by_status.get("paid", 0), (quota, by_status)
    assert quota["reserved"] == by_status.get("awaiting_deduction", 0), (quota, by_status)
    assert quota["remaining"] + quota["reserved"] + quota["spent"] == quota["limit"], quota
    shards = shop.assert_shards_balanced()  # confirm and release moved exactly the shards each order debited
    for field in ("remaining", "reserved", "spent", "limit"):
        assert sum(int(getattr(q, field)) for q in shards) == quota[field], (field, quota)
    assert quota["shards"] == shop.shards
    held = sum(int(o.lines[0]["qty"]) for o in orders if o.status != "failed")
    assert shop.stock() == STOCK - held
    if resolved:
        assert quota["spent"] == shop.fake.deducted_total(), quota
        assert quota["reserved"] == 0 and not ok(shop.ops.get(f"/ops/channels/{shop.code}/pending-orders"))["orders"]
    return quota


@pytest.fixture(params=[1, 4], ids=["1-shard", "4-shards"])
def shards(request) -> int:
    """Every remote-mode test runs on a one-item quota and on a quota split across 4 shard items."""
    return request.param


@pytest.fixture
def remote_shop(pooled, ops, shards):
    return lambda **options: make_shop(pooled, ops, "remote", quota=1_000_000, stock=STOCK, shards=shards, **options)


def test_deduct_succeeds(pooled, ops, remote_shop):
    shop = remote_shop()
    member = shop.member(points=5000)
    a = shop.place(ops.session, member, body=shop.body(qty=2))
    assert a.status == 201 and a.body["status"] == "paid", a.body
    assert shop.fake.balance(member) == 5000 - 2400
    quota = assert_agree(shop)
    assert quota["spent"] == 2400 and quota["remaining"] == 1_000_000 - 2400


def test_channel_refuses_the_deduction_and_everything_is_released(pooled, ops, remote_shop):
    shop = remote_shop()
    member = shop.member(points=5000)
    shop.fake.deduct_mode = FAIL
    a = shop.place(ops.session, member)
    assert a.status == 201 and a.body["status"] == "failed" and "insufficient" in a.body["failure"], a.body
    quota = assert_agree(shop)
    assert (quota["spent"], quota["remaining"]) == (0, 1_000_000)
    assert shop.fake.balance(member) == 5000

    # A member whose channel wallet is short: refused by the channel the same way (409 insufficient).
    shop.fake.deduct_mode = NORMAL
    poor = shop.member(points=100)
    b = shop.place(ops.session, poor)
    assert b.status == 201 and b.body["status"] == "failed", b.body
    assert_agree(shop)
    # The same key again answers the failed order; a new key after a top-up pays.
    assert shop.place(ops.session, poor, key=b.key).body["status"] == "failed"
    shop.fake.wallets[poor] = 5000
    assert shop.place(ops.session, poor).body["status"] == "paid"
    assert_agree(shop)


def test_timeout_after_the_channel_deducted_is_confirmed_by_query(pooled, ops, remote_shop):
    shop = remote_shop()
    member = shop.member(points=5000)
    shop.fake.deduct_mode = TIMEOUT_AFTER
    started = time.time()
    a = shop.place(ops.session, member)
    assert time.time() - started >= 3, "the call should have waited for the read timeout"
    assert a.status == 201 and a.body["status"] == "paid", a.body
    assert shop.fake.calls["points/query deducted"] == 1
    assert shop.fake.balance(member) == 5000 - 1200
    assert assert_agree(shop)["spent"] == 1200


def test_timeout_before_any_deduction_is_released_by_query(pooled, ops, remote_shop):
    shop = remote_shop()
    member = shop.member(points=5000)
    shop.fake.deduct_mode = TIMEOUT_BEFORE
    a = shop.place(ops.session, member)
    assert a.status == 201 and a.body["status"] == "failed", a.body
    assert shop.fake.calls["points/query not_found"] == 1
    assert shop.fake.balance(member) == 5000
    quota = assert_agree(shop)
    assert (quota["spent"], quota["remaining"]) == (0, 1_000_000)


def test_query_down_keeps_the_order_pending_for_ops_until_resolved(pooled, ops, remote_shop):
    shop = remote_shop()
    deducted, untouched = shop.member(points=5000), shop.member(points=5000)
    shop.fake.query_mode = DOWN
    shop.fake.member_modes = {deducted: TIMEOUT_AFTER, untouched: TIMEOUT_BEFORE}
    first = shop.place(ops.session, deducted)
    second = shop.place(ops.session, untouched, body=shop.body(qty=3))
    for a in (first, second):
        assert a.status == 201 and a.body["status"] == "awaiting_deduction", a.body
    assert shop.fake.calls["points/query down"] >= 2

    pending = ok(ops.get(f"/ops/channels/{shop.code}/pending-orders"))["orders"]
    assert {p["order_id"] for p in pending} == {first.order_id, second.order_id}
    assert all(p["resolve_attempts"] >= 1 for p in pending)
    quota = assert_agree(shop, resolved=False)
    assert quota["reserved"] == 1200 + 3600 and quota["spent"] == 1200 - 1200  # nothing confirmed yet
    assert shop.fake.deducted_total() == 1200  # the channel did take one: our books hold it as reserved

    # Still down: the sweep asks again and changes nothing.
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 0, "failed": 0, "awaiting_deduction": 2}
    assert_agree(shop, resolved=False)

    shop.fake.query_mode = NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 1, "failed": 1, "awaiting_deduction": 0}
    quota = assert_agree(shop)
    assert (quota["spent"], quota["remaining"]) == (1200, 1_000_000 - 1200)
    view = lambda m, a: ok(ops.session.get(f"{pooled.base_url}/api/{shop.code}/orders/{a.order_id}",  # noqa: E731
                                           headers=shop.auth(m)))["status"]
    assert (view(deducted, first), view(untouched, second)) == ("paid", "failed")
    # Resolving again is a no-op.
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 0, "failed": 0, "awaiting_deduction": 0}
    assert_agree(shop)


def test_mixed_burst_of_remote_outcomes_agrees(pooled, ops, remote_shop):
    """120 orders at once from members whose channel wallet succeeds, refuses, or times out either side."""
    shop = remote_shop(api_timeout=BURST_TIMEOUT)  # only the held answers time out, never a normal one on a busy machine
    modes = [NORMAL, FAIL, TIMEOUT_AFTER, TIMEOUT_BEFORE]
    members = shop.members(24, points=100_000)
    for i, m in enumerate(members):
        shop.fake.member_modes[m] = modes[i % len(modes)]
    # All 120 at once: every deduct is sent before the held ones time out and open the breaker
    attempts = burst(pooled.base_url, [lambda s, m=members[i % len(members)]: shop.place(s, m)
                                       for i in range(120)], 120)
    assert summary(attempts) == {(201, None): 120}, summary(attempts)
    expected = {NORMAL: "paid", FAIL: "failed", TIMEOUT_AFTER: "paid", TIMEOUT_BEFORE: "failed"}
    by_member = {}
    for i, a in enumerate(attempts):
        m = members[i % len(members)]
        assert a.body["status"] == expected[shop.fake.member_modes[m]], (shop.fake.member_modes[m], a.body)
        by_member[m] = by_member.get(m, 0) + (1200 if a.body["status"] == "paid" else 0)
    for m in members:
        assert shop.fake.balance(m) == 100_000 - by_member[m]
    quota = assert_agree(shop)
    assert quota["spent"] == 60 * 1200
    assert shop.fake.bad_signatures == 0


def test_bad_signature_is_refused_by_the_channel(pooled, ops, remote_shop):
    """Our calls are signed with the channel's secret; the fake proves it by refusing a wrong one."""
    shop = remote_shop()
    member = shop.member(points=5000)
    shop.fake.secret = "not-the-channel-secret"
    a = shop.place(ops.session, member)
    assert a.status >= 400 and shop.fake.bad_signatures >= 1, a.body
    shop.fake.secret = shop.secret
    assert shop.place(ops.session, member).body["status"] == "paid"
    assert_agree(shop)
