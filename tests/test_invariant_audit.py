"""The invariant audit: a clean run finds nothing; an item corrupted on purpose (a wallet's balance, a quota
shard, an order's points) is found, and only it; the hourly Lambda records its run for ops."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from checkout_helpers import Shop, make_shop, ok
from chalice.local import LambdaContext
from chalicelib.checkout.models import Quota, Wallet
from chalicelib.orders import parcels
from chalicelib.orders.models import Order
from chalicelib.settlement import invariants
from chalicelib.orders import refunds

EVENTS = Path(__file__).resolve().parent.parent / "events"
PAUSE = 0.2  # the confirming second read; the Lambda's own is audit.CONFIRM_PAUSE


class Shops:
    """A hosted shop over two quota shards (orders, one parcel cancelled) and a remote one (orders paid)."""

    def __init__(self, system, ops) -> None:
        self.hosted = make_shop(system, ops, "hosted", shards=2)
        self.members = [self.hosted.member() for _ in range(2)]
        for m in self.members:
            ok(self.hosted.grant(m, 30_000), 201)
        self.orders = [self._order(self.hosted, self.members[i % 2], 1 + i % 2) for i in range(4)]
        [parcel] = parcels.of_order(self.orders[3])
        refunds.cancel(self.hosted.member_ids[self.members[1]], self.hosted.code, parcel.parcel_id)
        self.remote = make_shop(system, ops, "remote")
        buyer = self.remote.member(points=20_000)
        for _ in range(2):
            self._order(self.remote, buyer, 1)
        self.codes = [self.hosted.code, self.remote.code]

    @staticmethod
    def _order(shop: Shop, member: str, qty: int) -> str:
        attempt = shop.place(requests.Session(), member, body=shop.body(qty=qty))
        assert attempt.status == 201, attempt.body
        parcels.split(attempt.order_id)
        return attempt.order_id


@pytest.fixture(scope="module")
def shops(system, ops) -> Shops:
    return Shops(system, ops)


def subjects(summary: dict) -> dict[str, dict[str, tuple[int, int]]]:
    return {f["subject"]: {c["check"]: (c["expected"], c["found"]) for c in f["checks"]} for f in summary["findings"]}


def test_a_clean_run_finds_nothing(shops: Shops, ops) -> None:
    summary = invariants.run(shops.codes, pause=PAUSE)
    assert (summary["drifts"], summary["findings"], summary["unsettled"]) == (0, [], 0)
    assert summary["checked"] == {"channels": 2, "periods": 2, "wallets": 2, "members": 3, "orders": 6}
    latest = ok(ops.get("/ops/audit/latest"))["run"]
    assert (latest["started_at"], latest["drifts"], latest["findings"]) == (summary["started_at"], 0, [])


def test_a_corrupted_wallet_balance_is_found_and_only_it(shops: Shops, capsys) -> None:
    member_id = shops.hosted.member_ids[shops.members[0]]
    wallet = Wallet.get(member_id, consistent_read=True)
    balance = int(wallet.balance)
    Wallet(member_id).update([Wallet.balance.add(7)])
    try:
        summary = invariants.run(shops.codes, pause=PAUSE)
    finally:
        Wallet(member_id).update([Wallet.balance.add(-7)])
    assert subjects(summary) == {f"wallet:{shops.hosted.code}:{member_id}": {
        "balance = granted - spent + refunded - expired": (balance, balance + 7),
        "balance = points left in its lots": (balance, balance + 7)}}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"InvariantDrift"' in line]
    assert any(m.get("channel") == shops.hosted.code and m["InvariantDrift"] == [1.0] for m in emitted)
    assert invariants.run(shops.codes, pause=PAUSE)["drifts"] == 0


def test_a_corrupted_quota_shard_is_found_and_only_it(shops: Shops) -> None:
    code = shops.hosted.code
    shard = Quota.get(Quota.key(code, "P1#1"), consistent_read=True)
    spent = int(shard.spent)
    Quota.item(code, "P1#1").update([Quota.spent.add(5)])
    try:
        summary = invariants.run(shops.codes, pause=PAUSE)
    finally:
        Quota.item(code, "P1#1").update([Quota.spent.add(-5)])
    limit = int(shard.limit)
    assert subjects(summary) == {f"quota:{code}:P1": {
        "shard 1: remaining + reserved + spent = limit": (limit, limit + 5),
        "shard 1: spent = orders' takes - given back": (spent, spent + 5)}}
    assert invariants.run(shops.codes, pause=PAUSE)["drifts"] == 0


def test_a_corrupted_order_is_found_with_the_wallet_it_was_charged_to(shops: Shops) -> None:
    order_id = shops.orders[0]
    order = Order.get(order_id, consistent_read=True)
    points = int(order.points)
    Order(order_id).update([Order.points.add(1)])
    try:
        summary = invariants.run(shops.codes, pause=PAUSE)
    finally:
        Order(order_id).update([Order.points.add(-1)])
    wallet = Wallet.get(order.member_id, consistent_read=True)
    code = shops.hosted.code
    assert subjects(summary) == {
        f"order:{code}:{order_id}": {"points = quota taken": (points, points + 1),
                                     "points = its parcels' points": (points, points + 1)},
        f"wallet:{code}:{order.member_id}": {
            "balance = granted - spent + refunded - expired": (int(wallet.balance) - 1, int(wallet.balance)),
            "spent = the items' sum": (int(wallet.spent) + 1, int(wallet.spent))}}


def test_the_hourly_lambda_records_its_run_for_ops(system, shops: Shops, ops) -> None:
    code = shops.remote.code
    Quota.item(code, "P1").update([Quota.reserved.add(3)])
    try:
        event = json.loads((EVENTS / "invariant_audit.json").read_text())  # the sample event
        summary = system.app.invariant_audit(event, LambdaContext("invariant_audit", 256))
    finally:
        Quota.item(code, "P1").update([Quota.reserved.add(-3)])
    found = subjects(summary)
    assert found[f"quota:{code}:P1"] == {"shard 0: remaining + reserved + spent = limit": (10_000_000, 10_000_003),
                                         "shard 0: reserved = awaiting orders' takes": (0, 3)}
    assert not any(s.endswith(f":{shops.hosted.code}:P1") or f":{shops.hosted.code}:" in s for s in found)
    latest = ok(ops.get("/ops/audit/latest"))["run"]
    assert latest["started_at"] == summary["started_at"] and latest["drifts"] == summary["drifts"] >= 1
    assert subjects(latest)[f"quota:{code}:P1"] == found[f"quota:{code}:P1"]


def test_the_hourly_run_does_not_grow_with_sandbox_members(system, ops) -> None:
    """Anyone with a sandbox channel's code may sign members into it (its purpose): those members add nothing
    to the hourly run's work (issue 16, item 7). Ops may still audit a sandbox by naming it."""
    sandbox = make_shop(system, ops, "hosted", sandbox=True)
    event = json.loads((EVENTS / "invariant_audit.json").read_text())
    before = system.app.invariant_audit(event, LambdaContext("invariant_audit", 256))["checked"]
    for _ in range(3):  # forged by whoever holds the code: each signed entry creates a member
        sandbox.member()
    after = system.app.invariant_audit(event, LambdaContext("invariant_audit", 256))["checked"]
    assert (after["channels"], after["members"]) == (before["channels"], before["members"])
    named = invariants.run([sandbox.code], pause=PAUSE)
    assert (named["checked"]["channels"], named["checked"]["members"], named["drifts"]) == (1, 3, 0)
