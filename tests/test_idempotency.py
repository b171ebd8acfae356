"""The Idempotency-Key makes retries safe: one key, one order, points spent once, whatever the concurrency."""
from __future__ import annotations

from checkout_helpers import assert_error, burst, burst_shop, ok, summary, uid

ATTEMPTS = 200
WORKERS = 100  # one key's uniqueness proven at ≥ 100-way


def test_concurrent_retries_of_one_order_make_one_order(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, 50 * 1200), 201)
    key = uid("retry-")
    attempts = burst(pooled.base_url, [lambda s: shop.place(s, member, key=key) for _ in range(ATTEMPTS)], WORKERS)

    counts = summary(attempts)
    assert counts == {(201, None): 1, (200, None): ATTEMPTS - 1}, counts
    assert len({a.order_id for a in attempts}) == 1
    assert {a.body["status"] for a in attempts} == {"paid"}
    orders = shop.orders()
    assert [o.order_id for o in orders] == [attempts[0].order_id]

    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["spent"]) == (49 * 1200, 1200), wallet
    quota = shop.quota()
    assert quota["spent"] == 1200 and quota["remaining"] == quota["limit"] - 1200
    assert shop.stock() == 100_000 - 1

    # A later retry still answers the same order; the same key with another body is refused.
    again = shop.place(ops.session, member, key=key)
    assert (again.status, again.order_id) == (200, attempts[0].order_id)
    other = shop.place(ops.session, member, key=key, body=shop.body(qty=2))
    assert (other.status, other.code) == (409, "idempotency_key_reused")
    assert shop.wallet(member)["balance"] == 49 * 1200


def test_same_key_with_two_bodies_at_once_makes_one_order(pooled, ops):
    """Half the racers send qty 1, half qty 2 under one key: one order, the other body refused, never a second."""
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, 50 * 1200), 201)
    key = uid("race-")
    bodies = [shop.body(qty=1 + i % 2) for i in range(100)]
    attempts = burst(pooled.base_url, [lambda s, b=b: shop.place(s, member, key=key, body=b) for b in bodies], 50)

    orders = shop.orders()
    assert len(orders) == 1
    won = int(orders[0].lines[0]["qty"])
    for body, a in zip(bodies, attempts):
        if body["lines"][0]["qty"] == won:
            assert a.status in (200, 201) and a.order_id == orders[0].order_id, (a.status, a.body)
        else:
            assert (a.status, a.code) == (409, "idempotency_key_reused"), (a.status, a.body)
    assert sum(a.status == 201 for a in attempts) == 1
    assert shop.wallet(member)["spent"] == won * 1200 == shop.quota()["spent"]


def test_keys_are_per_member_and_validated(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    ann, bob = shop.member(), shop.member()
    for m in (ann, bob):
        ok(shop.grant(m, 5 * 1200), 201)
    key = uid("shared-")
    a = shop.place(ops.session, ann, key=key)
    b = shop.place(ops.session, bob, key=key)
    assert (a.status, b.status) == (201, 201) and a.order_id != b.order_id
    assert shop.wallet(ann)["spent"] == shop.wallet(bob)["spent"] == 1200

    for bad in ("short", "x" * 65):
        r = ops.session.post(f"{pooled.base_url}/api/{shop.code}/orders", json=shop.body(),
                             headers={**shop.auth(ann), "Idempotency-Key": bad})
        assert_error(r, 422, "validation_error")
    r = ops.session.post(f"{pooled.base_url}/api/{shop.code}/orders", json=shop.body(), headers=shop.auth(ann))
    assert_error(r, 422, "validation_error")
    assert shop.wallet(ann)["spent"] == 1200


def test_remote_retry_deducts_once(pooled, ops):
    """A remote-mode order retried 100 times at once: the channel is asked to deduct for one order only."""
    shop = burst_shop(pooled, ops, "remote")
    member = shop.member(points=10_000)
    key = uid("remote-")
    attempts = burst(pooled.base_url, [lambda s: shop.place(s, member, key=key) for _ in range(100)], 50)
    assert summary(attempts) == {(201, None): 1, (200, None): 99}, summary(attempts)
    order_id = attempts[0].order_id
    assert {a.order_id for a in attempts} == {order_id}
    assert shop.fake.deducted(order_id) and shop.fake.balance(member) == 10_000 - 1200
    assert shop.fake.deducted_total() == 1200 == shop.quota()["spent"]
    assert shop.fake.calls["points/deduct deducted"] == 1
    # The 200s may come back while the first is still asking the channel; read back, it is paid.
    order = ok(ops.session.get(f"{pooled.base_url}/api/{shop.code}/orders/{order_id}", headers=shop.auth(member)))
    assert order["status"] == "paid"
