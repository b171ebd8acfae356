"""Releasing a remote-mode order (issue 7 loose ends): every "not deducted" answer of the channel's query
(``not_found`` and ``failed``, contract "Remote points mode") releases it once the channel acknowledged the
cancel, and a release gives back to the member's cap counter only what the order itself counted."""
from __future__ import annotations

from checkout_helpers import make_shop, ok
from chalicelib.checkout.models import MemberRedemption
from chalicelib.orders.models import Order
from fake_wallet_channel import DOWN, FAILED, NORMAL, TIMEOUT_BEFORE


def test_a_query_answering_failed_releases_the_order_after_the_cancel(system, ops):
    """The channel answers ``failed`` for the order whose deduct timed out: cancel, then release — before,
    the order waited for ever, holding quota, stock and the member's cap room."""
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5000)
    shop.fake.deduct_mode, shop.fake.query_mode, shop.fake.cancel_mode = TIMEOUT_BEFORE, FAILED, DOWN
    stuck = shop.place(ops.session, member)
    assert stuck.status == 201 and stuck.body["status"] == "awaiting_deduction", stuck.body
    assert shop.fake.calls["points/query failed"] == 1 and shop.fake.calls["points/cancel down"] >= 1
    assert (shop.quota()["reserved"], shop.stock()) == (1200, 100_000 - 1)   # no cancel acknowledged: it waits

    shop.fake.deduct_mode, shop.fake.cancel_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 0, "failed": 1, "awaiting_deduction": 0}
    assert shop.fake.calls["points/query failed"] == 2 and stuck.order_id in shop.fake.cancelled
    quota = shop.quota()
    assert (quota["reserved"], quota["spent"], quota["remaining"]) == (0, 0, quota["limit"])
    assert shop.stock() == 100_000
    order = ok(ops.session.get(f"{system.base_url}/api/{shop.code}/orders/{stuck.order_id}", headers=shop.auth(member)))
    assert order["status"] == "failed"
    assert shop.fake.balance(member) == 5000 and not shop.fake.deducted(stuck.order_id)
    assert not ok(ops.get(f"/ops/channels/{shop.code}/pending-orders"))["orders"]


def test_a_release_gives_back_only_what_the_order_counted_against_the_cap(system, ops):
    """An order placed before the per-member counter existed added nothing to it: released, it leaves the
    counter as it is (before: it pushed the counter 1,200 lower than the member's redemptions, loosening
    the cap by as much); an order that counted gives back exactly its points."""
    shop = make_shop(system, ops, "remote", cap=3 * 1200)
    member = shop.member(points=10**6)
    usage = lambda: int(MemberRedemption.get(shop.member_ids[member], shop.period_id,  # noqa: E731
                                             consistent_read=True).redeemed)
    assert shop.place(ops.session, member).body["status"] == "paid"
    shop.fake.deduct_mode, shop.fake.cancel_mode = TIMEOUT_BEFORE, DOWN
    legacy, counted = shop.place(ops.session, member), shop.place(ops.session, member)
    assert [a.body["status"] for a in (legacy, counted)] == ["awaiting_deduction"] * 2
    assert Order.get(counted.order_id, consistent_read=True).cap_counted == 1200
    assert usage() == 3 * 1200
    # ``legacy`` as an order from before the counter: no record on it, and its points not in the counter.
    Order(legacy.order_id).update(actions=[Order.cap_counted.remove()])
    MemberRedemption(shop.member_ids[member], shop.period_id).update(actions=[MemberRedemption.redeemed.add(-1200)])
    assert usage() == 2 * 1200

    shop.fake.deduct_mode, shop.fake.cancel_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 0, "failed": 2, "awaiting_deduction": 0}
    assert usage() == 1200                            # the paid order's points, and nothing taken below them
    assert [shop.place(ops.session, member).body["status"] for _ in range(2)] == ["paid", "paid"]
    refused = shop.place(ops.session, member)
    assert (refused.status, refused.code) == (409, "member_cap_exceeded"), refused.body
    assert usage() == 3 * 1200 and shop.fake.deducted_total() == 3 * 1200
