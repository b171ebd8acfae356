"""Over-redemption is impossible under concurrency: channel quota, member balance, SKU stock,
period end and suspension, each hammered by 500 simultaneous checkouts over real HTTP on
DynamoDB Local."""
from __future__ import annotations

import threading
import time

from checkout_helpers import Shop, burst, make_shop, ok, summary, ts

ATTEMPTS = 500
WORKERS = 64


class QuotaWatch:
    """Reads the quota item in a loop during a burst: remaining never negative, the sum always the limit."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.samples = 0
        self.violations: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            q = self.shop.quota_item()
            self.samples += 1
            remaining, reserved, spent, limit = int(q.remaining), int(q.reserved), int(q.spent), int(q.limit)
            if remaining < 0 or reserved < 0 or remaining + reserved + spent != limit:
                self.violations.append({"remaining": remaining, "reserved": reserved, "spent": spent, "limit": limit})
            time.sleep(0.02)

    def __enter__(self) -> "QuotaWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def paid_points(shop: Shop) -> int:
    return sum(int(o.points) for o in shop.orders() if o.status == "paid")


def test_channel_quota_is_never_exceeded_remote_mode(system, ops):
    """Remote mode: the channel's wallets hold plenty, so only the quota binds: exactly 100 orders."""
    shop = make_shop(system, ops, "remote", quota=100 * 1200)
    members = shop.members(50, points=10**9)
    tasks = [lambda s, m=members[i % len(members)]: shop.place(s, m) for i in range(ATTEMPTS)]
    with QuotaWatch(shop) as watch:
        attempts = burst(system.base_url, tasks, WORKERS)
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


def test_member_balance_is_never_overspent_hosted(system, ops):
    """One member, points for exactly 20 orders, 500 simultaneous orders with distinct keys."""
    n = 20
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, n * 1200), 201)
    tasks = [lambda s: shop.place(s, member) for _ in range(ATTEMPTS)]
    attempts = burst(system.base_url, tasks, WORKERS)
    counts = summary(attempts)
    assert counts == {(201, None): n, (409, "insufficient_points"): ATTEMPTS - n}, counts

    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["granted"], wallet["spent"]) == (0, n * 1200, n * 1200), wallet
    from chalicelib.models import Wallet
    stored = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert int(stored.balance) == 0 and all(int(l["left"]) >= 0 for l in stored.lots.as_dict().values())
    quota = shop.quota()
    assert quota["spent"] == n * 1200 == paid_points(shop)
    assert len(shop.orders()) == n


def test_sku_stock_is_never_oversold(system, ops):
    """Stock 37, 500 simultaneous orders by 100 members who all have points: exactly 37 orders."""
    shop = make_shop(system, ops, "hosted", stock=37)
    members = shop.members(100)
    grants = burst(system.base_url, [lambda s, m=m: shop.grant(m, 10 * 1200, session=s) for m in members], 32)
    assert {g.status_code for g in grants} == {201}
    tasks = [lambda s, m=members[i % len(members)]: shop.place(s, m) for i in range(ATTEMPTS)]
    attempts = burst(system.base_url, tasks, WORKERS)
    counts = summary(attempts)
    assert counts == {(201, None): 37, (409, "out_of_stock"): ATTEMPTS - 37}, counts
    assert shop.stock() == 0
    assert len(shop.orders()) == 37
    assert shop.quota()["spent"] == 37 * 1200 == paid_points(shop)


def test_no_order_after_the_period_ends(system, ops):
    """Checkouts fired continuously across the period end: nothing is created at or after ``ends_at``."""
    shop = make_shop(system, ops, "hosted", period_seconds=14)
    members = shop.members(40)
    grants = burst(system.base_url, [lambda s, m=m: shop.grant(m, 100 * 1200, session=s) for m in members], 20)
    assert {g.status_code for g in grants} == {201}, [g.text for g in grants if g.status_code != 201]
    ends_at = shop.ends_at
    assert time.time() < ends_at - 6, "set-up took too long for this test's period"
    time.sleep(ends_at - 6 - time.time())  # start buying about 6 s before the end
    fired = []

    def keep_buying(session, member):
        made = []
        while time.time() < ends_at + 2 or len(fired) < ATTEMPTS:  # across the end, 500 attempts at least
            fired.append(1)
            made.append(shop.place(session, member))
        return made

    results = burst(system.base_url, [lambda s, m=m: keep_buying(s, m) for m in members], len(members))
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


def test_no_order_after_the_channel_is_suspended(system, ops):
    """Ops suspend the channel during a 500-order burst: once the suspend call returns, nothing new is created."""
    shop = make_shop(system, ops, "hosted")
    members = shop.members(50)
    grants = burst(system.base_url, [lambda s, m=m: shop.grant(m, 100 * 1200, session=s) for m in members], 25)
    assert {g.status_code for g in grants} == {201}
    done = []
    suspended: dict[str, float] = {}

    def suspend_when_busy():
        while len(done) < 120:
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
    attempts = burst(system.base_url, [lambda s, m=members[i % len(members)]: attempt(s, m)
                                       for i in range(ATTEMPTS)], WORKERS)
    trigger.join()
    at = suspended["at"]

    counts = summary(attempts)
    assert set(counts) <= {(201, None), (403, "channel_suspended")}, counts
    assert counts.get((201, None), 0) >= 100, counts
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
