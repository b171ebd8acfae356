"""The channel's prices are guarded by its pricing version (issue 7, checkout capacity): every sub-pool
change and every points-per-yuan change raises the version on the channel and on the current period's
quota shards in its own transaction, and a checkout conditions the shards it debits on the version it
read with the channel. So a checkout priced before a change never commits after it: it reads again
and sells at the new price."""
from __future__ import annotations

import json

import threading
import time

from checkout_helpers import BURST_TIMEOUT, PRICE, burst, make_shop, ok, summary, ts
from chalicelib.channels.models import Channel
from chalicelib.checkout import checkout, quotas
from chalicelib.checkout.models import Quota

NEW_PRICE = 1500


class CommitCounter:
    """Counts checkout transactions, and runs ``change`` once just before the first one commits: the
    window between a checkout's reads (prices, channel) and its commit."""

    def __init__(self, monkeypatch, change=None) -> None:
        self.change, self.commits = change, 0
        real, counter = checkout.LabelledTransaction, self

        class Hooked(real):
            def commit(self) -> None:
                counter.commits += 1
                if counter.commits == 1 and counter.change is not None:
                    counter.change()
                super().commit()

        monkeypatch.setattr(checkout, "LabelledTransaction", Hooked)


def funded(system, ops, **shop_args):
    shop = make_shop(system, ops, "hosted", **shop_args)
    member = shop.member()
    ok(shop.grant(member, 100_000), 201)
    return shop, member


def reprice(shop, price: int) -> None:
    ok(shop.ops.put(f"/ops/channels/{shop.code}/pool/{shop.goods_id}", json={"prices": {shop.sku_id: {"price": price}}}))


def test_a_reprice_between_read_and_commit_makes_the_checkout_read_again_and_sell_at_the_new_price(
        system, ops, monkeypatch):
    shop, member = funded(system, ops)
    hook = CommitCounter(monkeypatch, lambda: reprice(shop, NEW_PRICE))
    attempt = shop.place(ops.session, member)
    assert attempt.status == 201, attempt.body
    assert hook.commits == 2  # the first transaction was refused on the shard's pricing version
    assert attempt.body["points"] == NEW_PRICE and attempt.body["amount"] == NEW_PRICE, attempt.body
    assert shop.wallet(member)["balance"] == 100_000 - NEW_PRICE
    assert shop.quota()["spent"] == NEW_PRICE


def test_a_removal_from_the_sub_pool_between_read_and_commit_never_sells(system, ops, monkeypatch):
    shop, member = funded(system, ops)
    hook = CommitCounter(monkeypatch, lambda: ok(ops.delete(f"/ops/channels/{shop.code}/pool/{shop.goods_id}")))
    attempt = shop.place(ops.session, member)
    assert (attempt.status, attempt.code, hook.commits) == (404, "goods_unavailable", 1), attempt.body
    assert shop.quota()["spent"] == 0 and shop.wallet(member)["balance"] == 100_000
    assert shop.orders() == []


def test_a_points_rate_change_between_read_and_commit_charges_the_new_rate(system, ops, monkeypatch):
    shop, member = funded(system, ops)
    hook = CommitCounter(monkeypatch, lambda: ok(ops.patch(f"/ops/channels/{shop.code}", json={"points_per_yuan": 200})))
    attempt = shop.place(ops.session, member)
    assert attempt.status == 201 and hook.commits == 2, attempt.body
    assert attempt.body["points"] == 2 * PRICE, attempt.body  # 12.00 yuan at 200 points per yuan


def test_every_shard_carries_the_channel_version_and_a_new_period_copies_it(system, ops):
    shop, member = funded(system, ops, shards=4)
    reprice(shop, NEW_PRICE)
    reprice(shop, PRICE)
    channel = Channel.get(shop.code, consistent_read=True)
    assert int(channel.pricing_version) == 3 and int(channel.quota_shards) == 4  # the set-up's put, then two
    assert {int(q.pricing_version) for q in shop.quota_shards()} == {3}
    now = int(time.time())
    opened = ok(ops.post(f"/ops/channels/{shop.code}/periods", json={
        "period_id": "P2", "starts_at": now - 5, "ends_at": now + 3600, "shards": 2}), 201)
    assert opened["shards"] == 2
    shards = list(quotas.get(shop.code, "P2").shards.values())  # by key, from shard 0's count
    assert len(shards) == 2 and {int(q.pricing_version) for q in shards} == {3}
    assert int(Channel.get(shop.code, consistent_read=True).quota_shards) == 2
    attempt = shop.place(ops.session, member)
    assert attempt.status == 201 and attempt.body["points"] == PRICE, attempt.body


def test_a_checkout_makes_three_dynamodb_round_trips_before_its_transaction_and_none_after(system, ops,
                                                                                              monkeypatch):
    """The route's channel read, one BatchGetItem (order, member, wallet, sub-pool, goods, stock, quota
    shards, the password API's breaker: not read again) and the payment attempt's reservation; then the one
    transaction, which also clears the attempt's slot where it must be cleared. The password call's figures
    come from the orders stream, and a new order's view needs no read of parcels it cannot have yet."""
    shop, member = funded(system, ops, shards=3)
    shop.place(ops.session, member)  # warm: connections, the goods' Stock item
    calls: list[tuple[int, str, bool]] = []
    from chalicelib import tables
    from chalicelib.core import tx

    def seen(model, params, **_) -> None:
        """Every call with its thread; ``True`` marks the transaction that puts an order (the checkout's)."""
        places = model.name == "TransactWriteItems" and any(
            "Put" in item and item["Put"]["TableName"].endswith("-orders")
            for item in json.loads(params["body"])["TransactItems"])
        calls.append((threading.get_ident(), model.name, places))

    tx.transaction()  # the shared client exists
    clients = {id(c): c for c in [m._get_connection().connection.client for m in tables.ALL_MODELS]
               + [tx._TX_CONNECTION.client]}
    for client in clients.values():
        client.meta.events.register("before-call.dynamodb", seen, unique_id="round-trips")
    try:
        attempt = shop.place(ops.session, member)
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-call.dynamodb", unique_id="round-trips")
    assert attempt.status == 201, attempt.body
    # Other threads run meanwhile (fulfilment executions' Lambda tasks on moto): keep the request's own.
    request = next(thread for thread, _, places in calls if places)
    mine = [name for thread, name, _ in calls if thread == request]
    before = mine[:mine.index("TransactWriteItems")]
    assert before == ["GetItem", "BatchGetItem", "UpdateItem"], mine
    assert mine[mine.index("TransactWriteItems") + 1:] == [], mine  # nothing read or written after the commit


def test_a_reprice_racing_a_burst_never_sells_at_a_price_not_current_at_commit(system, ops, monkeypatch):
    """A burst of checkouts, each held 30 ms between its reads and its commit, while ops re-price three
    times. An order sold at a price was stamped (just before its commit) while that price was current:
    after the request that set it was sent and before the request that replaced it answered."""
    shop = make_shop(system, ops, "hosted", api_timeout=BURST_TIMEOUT)
    members = shop.members(30)
    for m in members:
        ok(shop.grant(m, 100_000), 201)
    real_price = checkout._price

    priced_count = [0]
    progress = threading.Condition()

    def slow_price(*args, **kwargs):
        priced = real_price(*args, **kwargs)
        with progress:
            priced_count[0] += 1
            progress.notify_all()
        time.sleep(0.03)  # widen the read → commit window
        return priced

    monkeypatch.setattr(checkout, "_price", slow_price)
    prices = [PRICE, 1300, 1400, 1500]
    windows: dict[int, list[float]] = {PRICE: [0.0, 0.0]}  # price → [set sent, replaced answered]

    def ops_reprices() -> None:
        # each re-price once another quarter of the burst has been priced: the burst straddles all three,
        # however slowly a loaded machine starts it
        for step, (previous, price) in enumerate(zip(prices, prices[1:]), start=1):
            with progress:
                progress.wait_for(lambda s=step: priced_count[0] >= s * len(tasks) // 4, timeout=60)
            sent = time.time()
            reprice(shop, price)
            windows[price] = [sent, 0.0]
            windows[previous][1] = time.time()

    changer = threading.Thread(target=ops_reprices)
    tasks = [lambda s, m=m: shop.place(s, m) for m in members * 3]
    changer.start()
    attempts = burst(system.base_url, tasks, workers=30)
    changer.join()
    assert summary(attempts) == {(201, None): len(tasks)}, summary(attempts)
    sold = {}
    for order in shop.orders():
        (line,) = order.lines
        price, at = int(line["price"]), ts(order.created_at)
        sold[price] = sold.get(price, 0) + 1
        start, end = windows[price]
        assert at >= start, (price, order.created_at, windows)
        assert end == 0.0 or at <= end, (price, order.created_at, windows)
        assert int(order.points) == price  # at 100 points per yuan
    assert len(sold) >= 2, sold  # the burst did straddle a re-price


def test_each_quota_shard_is_its_own_partition_and_a_debit_writes_nothing_to_the_channel_index(system, ops):
    """A hot channel's quota debits spread over partitions only if the shards have distinct hash keys (issue 14's
    capacity model found them all under ``channel_code``); the audit's keys-only index must cost checkout nothing."""
    shop, member = funded(system, ops, shards=4)
    shop.place(ops.session, member)  # warm
    indexed = sorted(q.shard_id for q in Quota.channel_index.query(shop.code))
    assert indexed == sorted(Quota.key(shop.code, quotas.shard_key("P1", i)) for i in range(4)), indexed
    capacity: list[dict] = []
    from chalicelib import tables
    from chalicelib.core import tx

    def ask(params, model, **_) -> None:
        if model.name == "TransactWriteItems":
            params["ReturnConsumedCapacity"] = "INDEXES"

    def got(parsed, model, **_) -> None:
        if model.name == "TransactWriteItems":
            capacity.extend(parsed.get("ConsumedCapacity") or [])

    tx.transaction()  # the shared client exists
    clients = {id(c): c for c in [m._get_connection().connection.client for m in tables.ALL_MODELS]
               + [tx._TX_CONNECTION.client]}
    for client in clients.values():
        client.meta.events.register("before-parameter-build.dynamodb", ask, unique_id="quota-index-ask")
        client.meta.events.register("after-call.dynamodb", got, unique_id="quota-index-got")
    try:
        attempt = shop.place(ops.session, member)
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-parameter-build.dynamodb", unique_id="quota-index-ask")
            client.meta.events.unregister("after-call.dynamodb", unique_id="quota-index-got")
    assert attempt.status == 201, attempt.body
    quota = [c for c in capacity if c["TableName"] == Quota.Meta.table_name]
    assert quota and all(c.get("Table", c).get("WriteCapacityUnits") == 2.0 for c in quota), quota
    assert not any(c.get("GlobalSecondaryIndexes") for c in quota), quota  # the debit changed no indexed key
