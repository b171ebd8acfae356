"""The books balance after a mixed concurrent workload on a hosted and a remote channel.

Per channel: quota spent = the points of its paid orders, reserved = its orders still awaiting the
channel, limit = remaining + reserved + spent, stock = initial − what live orders hold. Per hosted
member (after a sweep): granted − spent − expired = balance = what its lots hold, spent = its paid orders.
Remote: the channel's own deductions = our spent.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict

from checkout_helpers import Shop, burst, make_shop, ok, summary
from chalicelib.models import Grant, Order, Wallet
from chalicelib.wallets import sweep
from fake_wallet_channel import DOWN, FAIL, NORMAL, TIMEOUT_AFTER, TIMEOUT_BEFORE

STOCK = 5000


def check_channel_books(shop: Shop) -> dict:
    quota = ok(shop.ops.get(f"/ops/channels/{shop.code}/quota"))
    orders = shop.orders()
    points = defaultdict(int)
    for o in orders:
        points[o.status] += int(o.points)
        assert o.channel_code == shop.code and o.period_id == shop.period_id
        assert int(o.points) == sum(int(l["points"]) * int(l["qty"]) for l in o.lines)
    assert set(points) <= {"paid", "awaiting_deduction", "failed"}, dict(points)
    assert quota["spent"] == points["paid"], (quota, dict(points))
    assert quota["reserved"] == points["awaiting_deduction"], (quota, dict(points))
    assert quota["remaining"] + quota["reserved"] + quota["spent"] == quota["limit"], quota
    assert quota["remaining"] >= 0
    shards = shop.assert_shards_balanced()  # and on every shard
    assert sum(int(q.spent) for q in shards) == points["paid"] and quota["shards"] == shop.shards
    held = sum(int(l["qty"]) for o in orders if o.status != "failed" for l in o.lines)
    assert shop.stock() == STOCK - held
    return {"quota": quota, "orders": orders}


def check_hosted_wallets(shop: Shop, orders: list[Order], quota: dict) -> None:
    grants = list(Grant.scan(Grant.grant_key.startswith(f"{shop.code}#")))
    assert sum(int(g.points) for g in grants) == quota["granted"]
    paid_by_member = defaultdict(int)
    for o in orders:
        if o.status == "paid":
            paid_by_member[o.member_id] += int(o.points)
    granted_total = 0
    for member_id in shop.member_ids.values():
        sweep(member_id)
        w = Wallet.get(member_id, consistent_read=True)
        granted, spent, expired, balance = int(w.granted), int(w.spent), int(w.expired), int(w.balance)
        lots = w.lots.as_dict()
        assert granted - spent - expired == balance, (member_id, granted, spent, expired, balance)
        assert balance == sum(int(l["left"]) for l in lots.values()) and balance >= 0
        assert all(int(l["left"]) >= 0 for l in lots.values())
        assert granted == sum(int(g.points) for g in grants if g.member_id == member_id)
        assert spent == paid_by_member[member_id], (member_id, spent, paid_by_member[member_id])
        assert balance <= int(shop.cap)
        granted_total += granted
    assert granted_total == quota["granted"]


def test_books_balance_after_a_mixed_workload(system, ops):
    rnd = random.Random(7)
    # Hosted: wallets run short (grants can never exceed the quota, so it cannot bind here).
    hosted = make_shop(system, ops, "hosted", quota=330_000, cap=30_000, stock=STOCK)
    members = hosted.members(30)
    soon = int(time.time()) + 4
    grant_tasks = []
    for i, m in enumerate(members):
        grant_tasks.append(lambda s, m=m, i=i: hosted.grant(m, 6000 + 1200 * (i % 5), session=s))
        grant_tasks.append(lambda s, m=m: hosted.grant(m, 2400, expires_at=soon, session=s))  # short-lived lot
        grant_tasks.append(lambda s, m=m: hosted.grant(m, 30_001, session=s))  # over the cap: refused
    grant_tasks.append(lambda s: hosted.grant(members[0], 1200, grant_id="dup", session=s))
    grant_tasks.append(lambda s: hosted.grant(members[0], 1200, grant_id="dup", session=s))
    grants = burst(system.base_url, grant_tasks, 32)
    assert sum(g.status_code == 201 for g in grants) == 61, [g.text for g in grants if g.status_code >= 300][:3]

    remote = make_shop(system, ops, "remote", quota=60 * 1200, stock=STOCK, shards=3)  # a hot channel's split quota
    remote_members = remote.members(20, points=20 * 1200)
    modes = [NORMAL, NORMAL, FAIL, TIMEOUT_AFTER, TIMEOUT_BEFORE]
    for i, m in enumerate(remote_members):
        remote.fake.member_modes[m] = modes[i % len(modes)]

    def hosted_order(s, i):
        m = members[(i // 3) % len(members)]
        key = f"k-{i // 3}"  # every order sent three times by its member: retries
        return hosted.place(s, m, key=f"{key}-{m}"[:64], body=hosted.body(qty=1 + (i // 3) % 3))

    tasks = [lambda s, i=i: hosted_order(s, i) for i in range(300)]
    tasks += [lambda s, i=i: remote.place(s, remote_members[i % len(remote_members)],
                                          body=remote.body(qty=1 + i % 2)) for i in range(200)]
    rnd.shuffle(tasks)
    attempts = burst(system.base_url, tasks, 80)
    allowed = {(201, None), (200, None), (409, "insufficient_points"), (409, "quota_exhausted")}
    assert set(summary(attempts)) == allowed, summary(attempts)  # every limit and retries were exercised

    # A few remote orders left hanging: the query API is down while their deduction times out.
    remote.fake.query_mode = DOWN
    ok(ops.post(f"/ops/channels/{remote.code}/periods/{remote.period_id}/raise", json={"points": 10 * 1200}))
    hung = [remote.member(points=5000) for _ in range(4)]
    for i, m in enumerate(hung):
        remote.fake.member_modes[m] = TIMEOUT_AFTER if i % 2 else TIMEOUT_BEFORE
    hanging = burst(system.base_url, [lambda s, m=m: remote.place(s, m) for m in hung], 4)
    assert {a.body["status"] for a in hanging} == {"awaiting_deduction"}
    check_channel_books(remote)  # balanced while orders are still pending

    time.sleep(max(0.0, soon - time.time()) + 0.5)  # the short-lived lots expire
    remote.fake.query_mode = NORMAL
    assert ok(ops.post(f"/ops/channels/{remote.code}/pending-orders/resolve")) == {
        "paid": 2, "failed": 2, "awaiting_deduction": 0}

    books = check_channel_books(hosted)
    check_hosted_wallets(hosted, books["orders"], books["quota"])
    assert sum(int(w.expired) for w in (Wallet.get(m) for m in hosted.member_ids.values())) > 0

    books = check_channel_books(remote)
    assert books["quota"]["reserved"] == 0
    assert books["quota"]["spent"] == remote.fake.deducted_total()
    for m in remote_members + hung:
        ours = sum(int(o.points) for o in books["orders"]
                   if o.status == "paid" and o.member_id == remote.member_ids[m])
        start = 20 * 1200 if m in remote_members else 5000
        assert remote.fake.balance(m) == start - ours, m
