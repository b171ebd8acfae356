"""Over-redemption is impossible under concurrency: channel quota, member balance and SKU stock, each
proven once at full concurrency (200 checkouts, 100 at a time, over real HTTP on Dynoxide, served by the
app's worker processes); period end and suspension with the smallest burst that still crosses them."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from checkout_helpers import Shop, assert_error, burst, burst_shop, ok, summary, ts
from chalicelib.checkout.checkout import quota_takes
from chalicelib.core.models import Audit

ATTEMPTS = 200
WORKERS = 100  # ≥ 100-way: the limits below are proven at this concurrency


class QuotaWatch:
    """Reads the quota shards in a loop during a burst: on every shard remaining never negative and
    remaining + reserved + spent always its limit; the limits always sum to the period's quota."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.limit = shop.quota_item().limit
        self.samples = 0
        self.violations: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            shards = self.shop.quota_shards()
            self.samples += 1
            for q in shards:
                remaining, reserved, spent, limit = int(q.remaining), int(q.reserved), int(q.spent), int(q.limit)
                if remaining < 0 or reserved < 0 or remaining + reserved + spent != limit:
                    self.violations.append({"shard": q.period_id, "remaining": remaining, "reserved": reserved,
                                            "spent": spent, "limit": limit})
            if sum(int(q.limit) for q in shards) != self.limit:
                self.violations.append({"limits": [int(q.limit) for q in shards], "quota": self.limit})
            time.sleep(0.02)

    def __enter__(self) -> "QuotaWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def paid_points(shop: Shop) -> int:
    return sum(int(o.points) for o in shop.orders() if o.status == "paid")


def shard_spent_matches_paid_orders(shop: Shop) -> None:
    """Each shard's spent is exactly what paid orders took from that shard; each order's takes sum to its points."""
    taken: Counter = Counter()
    for o in shop.orders():
        takes = quota_takes(o)
        assert sum(takes.values()) == int(o.points), (o.order_id, takes, int(o.points))
        if o.status == "paid":
            taken.update(takes)
    assert {i: int(q.spent) for i, q in enumerate(shop.assert_shards_balanced()) if int(q.spent)} == dict(
        (i, n) for i, n in taken.items() if n)


@pytest.mark.parametrize("shards", [1, 7])
def test_channel_quota_is_never_exceeded_remote_mode(pooled, ops, shards):
    """Remote mode: the channel's wallets hold plenty, so only the quota binds: exactly 100 orders.

    With 7 shards the quota splits unevenly (17,143 ×6 + 17,142) and no shard holds a whole number
    of 1,200-point orders: 98 orders fit in single shards, so the last ones must debit several shards
    at once while everyone races for them — and still none is refused while the total has room."""
    shop = burst_shop(pooled, ops, "remote", quota=100 * 1200, shards=shards)
    if shards == 7:
        assert [int(q.limit) for q in shop.quota_shards()] == [17_143] * 6 + [17_142]
    members = shop.members(50, points=10**9)
    tasks = [lambda s, m=members[i % len(members)]: shop.place(s, m) for i in range(ATTEMPTS)]
    with QuotaWatch(shop) as watch:
        attempts = burst(pooled.base_url, tasks, WORKERS)
    counts = summary(attempts)
    assert counts == {(201, None): 100, (409, "quota_exhausted"): ATTEMPTS - 100}, counts
    assert all(a.body["status"] == "paid" for a in attempts if a.status == 201)
    assert watch.samples > 5 and watch.violations == [], watch.violations

    quota = shop.quota()
    assert (quota["remaining"], quota["reserved"], quota["spent"]) == (0, 0, 100 * 1200), quota
    orders = shop.orders()
    assert len(orders) == 100 and {o.status for o in orders} == {"paid"}
    assert quota["spent"] == paid_points(shop) == shop.fake.deducted_total()
    assert sum(10**9 - shop.fake.balance(m) for m in members) == quota["spent"]
    assert shop.fake.bad_signatures == 0
    shard_spent_matches_paid_orders(shop)
    assert all(int(q.remaining) == 0 for q in shop.quota_shards())
    spanning = sum(len(quota_takes(o)) > 1 for o in orders)
    assert spanning >= (2 if shards == 7 else 0), spanning


def test_no_order_is_refused_while_the_total_covers_it(pooled, ops):
    """Exactly as many simultaneous orders as the quota holds, all racing for the same few shards: every one
    succeeds. 72,000 in 7 shards (10,286 ×5 + 10,285 ×2) holds 56 orders in single shards and 4 that must span
    several; an order that loses its shard to another re-reads and takes another, it is never refused."""
    n = 60
    shop = burst_shop(pooled, ops, "hosted", quota=n * 1200, shards=7)
    members = shop.members(n)
    grants = burst(pooled.base_url, [lambda s, m=m: shop.grant(m, 1200, session=s) for m in members], 30)
    assert {g.status_code for g in grants} == {201}, [g.text for g in grants if g.status_code != 201][:3]
    attempts = burst(pooled.base_url, [lambda s, m=m: shop.place(s, m) for m in members], n)
    assert summary(attempts) == {(201, None): n}, summary(attempts)
    shard_spent_matches_paid_orders(shop)
    shards = shop.assert_shards_balanced()
    assert [(int(q.remaining), int(q.grant_room)) for q in shards] == [(0, 0)] * 7
    assert sum(len(quota_takes(o)) > 1 for o in shop.orders()) >= 4


def test_retries_of_the_order_that_used_the_last_quota_answer_that_order(pooled, ops):
    """100 simultaneous sends of one order whose points are the whole quota (two shards of 600): one order, and
    every retry answers it (200), none says ``quota_exhausted`` because its own first send took the quota."""
    shop = burst_shop(pooled, ops, "remote", quota=1200, shards=2)
    member = shop.member(points=10**6)
    attempts = burst(pooled.base_url, [lambda s: shop.place(s, member, key="the-only-order") for _ in range(100)], 50)
    assert summary(attempts) == {(201, None): 1, (200, None): 99}, summary(attempts)
    assert len({a.order_id for a in attempts}) == 1 and len(shop.orders()) == 1
    assert quota_takes(shop.orders()[0]) == {0: 600, 1: 600}
    assert shop.quota()["spent"] == 1200 and shop.fake.deducted_total() == 1200


def test_an_order_larger_than_any_shard_debits_several(pooled, ops):
    """4 shards of 2,500: 6,000 points fit in no single shard but in the total, so the order takes three
    shards in one transaction; the next takes what is left across shards; only a real shortfall refuses."""
    shop = burst_shop(pooled, ops, "remote", quota=10_000, shards=4)
    member = shop.member(points=10**6)
    big = shop.place(ops.session, member, body=shop.body(qty=5))
    assert big.status == 201 and big.body["status"] == "paid", big.body
    order = next(o for o in shop.orders() if o.order_id == big.order_id)
    takes = quota_takes(order)
    assert len(takes) == 3 and sum(takes.values()) == 6000 and sorted(takes.values()) == [1000, 2500, 2500], takes
    assert sorted(int(q.remaining) for q in shop.assert_shards_balanced()) == [0, 0, 1500, 2500]

    nxt = shop.place(ops.session, member, body=shop.body(qty=3))  # 3,600 of the 4,000 left, over two shards
    assert nxt.status == 201 and nxt.body["status"] == "paid", nxt.body
    refused = shop.place(ops.session, member, body=shop.body(qty=1))  # 1,200 > the 400 left in total
    assert (refused.status, refused.code) == (409, "quota_exhausted"), refused.body
    quota = shop.quota()
    assert (quota["shards"], quota["limit"], quota["remaining"], quota["spent"]) == (4, 10_000, 400, 9600), quota
    shard_spent_matches_paid_orders(shop)

    # Refused by the channel: the reservation goes back to exactly the shards it came from.
    shop.fake.deduct_mode = "fail"
    before = [int(q.remaining) for q in shop.quota_shards()]
    ok(ops.post(f"/ops/channels/{shop.code}/periods/{shop.period_id}/raise", json={"points": 3000}))
    raised = [int(q.remaining) for q in shop.quota_shards()]
    failed = shop.place(ops.session, member, body=shop.body(qty=2))  # 2,400: no shard holds it alone
    assert failed.body["status"] == "failed", failed.body
    assert [int(q.remaining) for q in shop.assert_shards_balanced()] == raised != before
    assert len(quota_takes(next(o for o in shop.orders() if o.order_id == failed.order_id))) > 1


def test_open_and_raise_split_the_quota_exactly(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted", quota=10_001, shards=4)
    assert [int(q.limit) for q in shop.assert_shards_balanced()] == [2501, 2500, 2500, 2500]
    member = shop.member()
    ok(shop.grant(member, 3600), 201)
    assert shop.place(ops.session, member, body=shop.body(qty=3)).status == 201  # 3,600 over two shards
    before = shop.assert_shards_balanced()
    raised = ok(ops.post(f"/ops/channels/{shop.code}/periods/{shop.period_id}/raise", json={"points": 1003}))
    assert (raised["shards"], raised["limit"], raised["remaining"], raised["grant_room"]) == (
        4, 11_004, 11_004 - 3600, 11_004 - 3600), raised
    after = shop.assert_shards_balanced()
    added = [int(b.limit) - int(a.limit) for a, b in zip(before, after)]
    assert sum(added) == 1003 and sorted(added) == [250, 251, 251, 251], added
    # The odd units went to the emptiest shards; remaining and grant room rose by the same amounts.
    assert [int(b.remaining) - int(a.remaining) for a, b in zip(before, after)] == added
    assert [int(b.grant_room) - int(a.grant_room) for a, b in zip(before, after)] == added
    emptiest = sorted(range(4), key=lambda i: (int(before[i].remaining), i))
    assert all(added[i] == 251 for i in emptiest[:3]), (added, [int(q.remaining) for q in before])
    rows = [r for r in Audit.query(f"channel#{shop.code}") if r.action == "quota_raised"]
    assert [(r.old, r.new) for r in rows] == [("10001", "11004")], [(r.old, r.new) for r in rows]
    # A raise smaller than the shard count touches only some shards, still exactly.
    ok(ops.post(f"/ops/channels/{shop.code}/periods/{shop.period_id}/raise", json={"points": 2}))
    assert sum(int(q.limit) for q in shop.assert_shards_balanced()) == 11_006


def test_shards_are_configuration(pooled, ops):
    """1 to 32 shards per period; without ``shards`` a period is one item, keyed by the period id as before."""
    shop = burst_shop(pooled, ops, "hosted", quota=1000)
    assert [q.period_id for q in shop.quota_shards()] == ["P1"] and shop.quota()["shards"] == 1
    now = int(time.time())
    for bad in (0, 33, "many"):
        assert_error(ops.post(f"/ops/channels/{shop.code}/periods", json={
            "period_id": "P2", "starts_at": now, "ends_at": now + 60, "shards": bad}), 422, "validation_error")
    opened = ok(ops.post(f"/ops/channels/{shop.code}/periods", json={
        "period_id": "P3", "starts_at": now, "ends_at": now + 60, "quota_points": 100, "shards": 32}), 201)
    assert (opened["shards"], opened["limit"], opened["remaining"], opened["grant_room"]) == (32, 100, 100, 100)
    assert_error(ops.post(f"/ops/channels/{shop.code}/periods", json={
        "period_id": "P3", "starts_at": now, "ends_at": now + 60, "shards": 2}), 409, "period_exists")
    assert ok(ops.get(f"/ops/channels/{shop.code}/quota"))["shards"] == 32


def test_member_balance_is_never_overspent_hosted(pooled, ops):
    """One member, points for exactly 20 orders, 200 orders 100 at a time with distinct keys."""
    n = 20
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, n * 1200), 201)
    tasks = [lambda s: shop.place(s, member) for _ in range(ATTEMPTS)]
    attempts = burst(pooled.base_url, tasks, WORKERS)
    counts = summary(attempts)
    assert counts == {(201, None): n, (409, "insufficient_points"): ATTEMPTS - n}, counts

    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["granted"], wallet["spent"]) == (0, n * 1200, n * 1200), wallet
    from chalicelib.checkout.models import Wallet
    stored = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert int(stored.balance) == 0 and all(int(l["left"]) >= 0 for l in stored.lots.as_dict().values())
    quota = shop.quota()
    assert quota["spent"] == n * 1200 == paid_points(shop)
    assert len(shop.orders()) == n


def test_sku_stock_is_never_oversold(pooled, ops):
    """Stock 37, 200 orders 100 at a time by 100 members who all have points: exactly 37 orders."""
    shop = burst_shop(pooled, ops, "hosted", stock=37)
    members = shop.members(100)
    grants = burst(pooled.base_url, [lambda s, m=m: shop.grant(m, 10 * 1200, session=s) for m in members], 32)
    assert {g.status_code for g in grants} == {201}
    tasks = [lambda s, m=members[i % len(members)]: shop.place(s, m) for i in range(ATTEMPTS)]
    attempts = burst(pooled.base_url, tasks, WORKERS)
    counts = summary(attempts)
    assert counts == {(201, None): 37, (409, "out_of_stock"): ATTEMPTS - 37}, counts
    assert shop.stock() == 0
    assert len(shop.orders()) == 37
    assert shop.quota()["spent"] == 37 * 1200 == paid_points(shop)


def test_no_order_after_the_period_ends(pooled, ops):
    """Checkouts fired continuously across the period end: nothing is created at or after ``ends_at``."""
    shop = burst_shop(pooled, ops, "hosted", period_seconds=14)
    members = shop.members(40)
    grants = burst(pooled.base_url, [lambda s, m=m: shop.grant(m, 100 * 1200, session=s) for m in members], 20)
    assert {g.status_code for g in grants} == {201}, [g.text for g in grants if g.status_code != 201]
    ends_at = shop.ends_at
    assert time.time() < ends_at - 6, "set-up took too long for this test's period"
    time.sleep(ends_at - 6 - time.time())  # start buying about 6 s before the end
    fired = []

    def keep_buying(session, member):
        made = []
        while time.time() < ends_at + 2 or len(fired) < ATTEMPTS:  # across the end, ATTEMPTS at least
            fired.append(1)
            made.append(shop.place(session, member))
        return made

    results = burst(pooled.base_url, [lambda s, m=m: keep_buying(s, m) for m in members], len(members))
    attempts = [a for r in results for a in r]
    assert len(attempts) >= ATTEMPTS, f"only {len(attempts)} attempts"

    before = [a for a in attempts if a.done < ends_at]
    after = [a for a in attempts if a.sent >= ends_at]
    assert any(a.status == 201 for a in before), summary(before)
    assert after and summary(after) == {(409, "period_ended"): len(after)}, summary(after)
    assert {(a.status, a.code) for a in attempts} <= {(201, None), (409, "period_ended")}, summary(attempts)

    orders = shop.orders()
    assert len(orders) == sum(a.status == 201 for a in attempts)
    late = [(o.order_id, o.created_at) for o in orders if ts(o.created_at) >= ends_at]
    assert late == [], f"orders created at or after the period end {ends_at}: {late}"
    assert shop.quota_item().spent == paid_points(shop)


def test_no_order_after_the_channel_is_suspended(pooled, ops):
    """Ops suspend the channel during a 200-order burst: once the suspend call returns, nothing new is created."""
    shop = burst_shop(pooled, ops, "hosted")
    members = shop.members(50)
    grants = burst(pooled.base_url, [lambda s, m=m: shop.grant(m, 100 * 1200, session=s) for m in members], 25)
    assert {g.status_code for g in grants} == {201}
    done = []
    suspended: dict[str, float] = {}

    def suspend_when_busy():
        while len(done) < 60:
            time.sleep(0.01)
        response = ops.post(f"/ops/channels/{shop.code}/suspend")
        suspended["at"] = time.time()
        assert response.status_code == 200 and response.json()["status"] == "suspended", response.text

    def attempt(session, member):
        a = shop.place(session, member)
        done.append(a)
        return a

    trigger = threading.Thread(target=suspend_when_busy)
    trigger.start()
    attempts = burst(pooled.base_url, [lambda s, m=members[i % len(members)]: attempt(s, m)
                                       for i in range(ATTEMPTS)], 50)  # 90 wait their turn past the suspension
    trigger.join()
    at = suspended["at"]

    counts = summary(attempts)
    assert set(counts) <= {(201, None), (403, "channel_suspended")}, counts
    assert counts.get((201, None), 0) >= 60, counts  # every order done before the trigger was paid
    after = [a for a in attempts if a.sent > at]
    assert after and summary(after) == {(403, "channel_suspended"): len(after)}, summary(after)

    orders = shop.orders()
    assert len(orders) == counts[(201, None)]
    late = [(o.order_id, o.created_at) for o in orders if ts(o.created_at) > at]
    assert late == [], f"orders created after the suspension returned at {at}: {late}"
    assert shop.quota_item().spent == paid_points(shop)

    # Resumed, the same channel sells again.
    ok(ops.post(f"/ops/channels/{shop.code}/resume"))
    assert shop.place(ops.session, members[0]).status == 201
