"""DynamoDB under contention, on the local engine: a share of transactions is cancelled for a conflict.

Dynoxide serialises transactions and never reports a conflict; real DynamoDB cancels one that meets another on
an item (``TransactionCanceledException`` with ``TransactionConflict`` reasons) and refuses a plain write to such
an item (``TransactionConflictException``). ``DynamoProxy`` answers a seeded share of the app's writes that way,
so the retry paths (``Contended``, ``commit_retrying``) run here as they do on AWS under load: the limits hold
exactly, the books balance and nothing answers 500."""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from pynamodb.exceptions import TransactWriteError, UpdateError

from checkout_helpers import BURST_TIMEOUT, SETTLEMENT, assert_error, burst, make_shop, summary
from chalicelib.checkout import checkout
from chalicelib.checkout.models import MemberRedemption, Wallet
from chalicelib.core.errors import Busy
from chalicelib.core.tx import Contended, LabelledTransaction, commit_retrying, transaction
from chalicelib.members import members as members_mod
from chalicelib.members.models import PaymentGuard
from chalicelib.orders.models import Order
from chalicelib.supply.models import Goods
from dynamo_proxy import ONGOING, DynamoProxy, route_through, writing
from fake_wallet_channel import FAIL
from test_money_hardening import grant_codes
from test_payment_auth import hosted_member, mobile, send_otp
from test_quota_concurrency import paid_points, shard_spent_matches_paid_orders

SHARE = 0.3  # of the app's transactions cancelled for a conflict while a burst runs


@pytest.fixture
def proxy(system, monkeypatch):
    """The app's transactions go through the proxy (no conflicts until a test asks for them)."""
    proxy = DynamoProxy(system.dynamodb.endpoint, seed=20240607).start()
    route_through(proxy, monkeypatch)
    yield proxy
    proxy.stop()


def sku_change(shop, change: dict) -> requests.Response:
    return requests.put(f"{shop.base_url}/supplier/goods/{shop.goods_id}/skus/{shop.sku_id}",
                        headers={"X-Api-Key": shop.supplier_key}, json=change, timeout=30)


def scratch_transaction(member_id: str) -> LabelledTransaction:
    """Two actions on items nobody else touches: a check that an order does not exist, a wallet update."""
    tx = LabelledTransaction()
    tx.check("order", Order, f"no-such-order-{member_id}", condition=Order.order_id.does_not_exist())
    tx.update("wallet", Wallet(member_id), [Wallet.balance.add(1)])
    return tx


# --- the harness answers as DynamoDB does, and the client reads it as it would on AWS ------------------

def test_an_injected_conflict_reads_as_dynamodbs_and_is_not_retried_by_botocore(proxy, monkeypatch):
    """Parsed by botocore and PynamoDB into the error AWS gives; botocore sends neither error again (its
    retry rules cover throttling and transient faults, not these), so retrying is the app's business."""
    route_through(proxy, monkeypatch, plain=True)
    member_id = f"scratch-{uuid.uuid4().hex}"
    proxy.conflicts(1.0, plain_share=1.0, only=lambda body: member_id.encode() in body)  # this test's writes only
    tx = transaction()  # the shared client, now on the proxy
    tx.condition_check(Order, f"no-such-order-{member_id}", condition=Order.order_id.does_not_exist())
    tx.update(Wallet(member_id), [Wallet.balance.add(1)])
    with pytest.raises(TransactWriteError) as raised:
        with tx:
            pass
    error = raised.value
    assert error.cause_response_code == "TransactionCanceledException"
    assert error.cause_response_message.startswith(
        "Transaction cancelled, please refer cancellation reasons for specific reasons [")
    reasons = error.cancellation_reasons
    assert len(reasons) == 2 and {None if r is None else (r.code, r.message) for r in reasons} <= {
        None, ("TransactionConflict", ONGOING)} and any(r is not None for r in reasons), reasons
    assert proxy.injected["TransactWriteItems"] == 1 and proxy.forwarded["TransactWriteItems"] == 0

    # Through the app's wrapper: a cancellation naming only conflicts is Contended, never Refused.
    with pytest.raises(Contended):
        scratch_transaction(member_id).commit()
    assert proxy.injected["TransactWriteItems"] == 2

    # A plain write to an item a transaction is writing: TransactionConflictException, sent once.
    with pytest.raises(UpdateError) as plain:
        Wallet(member_id).update(actions=[Wallet.balance.add(1)])
    assert plain.value.cause_response_code == "TransactionConflictException"
    assert (proxy.injected["UpdateItem"], proxy.forwarded["UpdateItem"]) == (1, 0)

    # commit_retrying builds and sends again on every conflict, then gives up with the documented 503 busy.
    with pytest.raises(Busy):
        commit_retrying(lambda: scratch_transaction(member_id), attempts=5)
    assert proxy.injected["TransactWriteItems"] == 2 + 5
    proxy.conflicts(0.0)
    commit_retrying(lambda: scratch_transaction(member_id), attempts=5)  # once the conflicts stop, it commits
    assert int(Wallet.get(member_id, consistent_read=True).balance) == 1


def test_a_conflict_share_is_drawn_from_a_seeded_sequence(system):
    """The same seed injects the same number of conflicts over the same number of transactions."""
    counts = []
    for _ in range(2):
        with DynamoProxy(system.dynamodb.endpoint, seed=11) as proxy:
            proxy.conflicts(SHARE)
            bodies = [proxy._made_up("TransactWriteItems", b'{"TransactItems": [{}, {}, {}]}') for _ in range(200)]
        counts.append(sum(b is not None for b in bodies))
        for made_up in filter(None, bodies):
            codes = [r["Code"] for r in made_up["CancellationReasons"]]
            assert len(codes) == 3 and set(codes) <= {"None", "TransactionConflict"} and "TransactionConflict" in codes
            assert made_up["Message"].endswith(f"[{', '.join(codes)}]")
    assert counts[0] == counts[1] and 40 <= counts[0] <= 80, counts


# --- the limits hold, the books balance, nothing answers 500 -----------------------------------------

def test_quota_holds_exactly_when_checkouts_meet_conflicts(system, ops, proxy):
    """A quota of 100 orders, 300 checkouts at once by members whose channel wallets hold plenty (remote mode:
    only the quota binds), 30% of the transactions (each order's commit, then its confirm) cancelled for a
    conflict: exactly 100 are paid, the others are told the quota is used up; quota, stock and wallets agree."""
    stock = 1000
    shop = make_shop(system, ops, "remote", quota=100 * 1200, stock=stock, api_timeout=BURST_TIMEOUT)
    members = shop.members(50, points=10**9)
    proxy.conflicts(SHARE)
    attempts = burst(system.base_url, [lambda s, m=members[i % 50]: shop.place(s, m) for i in range(300)], 64)
    proxy.conflicts(0.0)
    counts = summary(attempts)
    assert set(counts) <= {(201, None), (409, "quota_exhausted"), (503, "busy")}, counts
    assert counts[(201, None)] == 100 and proxy.injected["TransactWriteItems"] >= 50, (counts, proxy.injected)
    assert all(a.body["status"] == "paid" for a in attempts if a.status == 201)
    print(f"\nquota burst: {counts}, conflicts injected {dict(proxy.injected)}, "
          f"busy answers retried {sum(a.busy_retries for a in attempts)}")

    orders = shop.orders()
    assert len(orders) == 100 and {o.status for o in orders} == {"paid"}
    quota = shop.quota()
    assert (quota["remaining"], quota["reserved"], quota["spent"]) == (0, 0, 100 * 1200), quota
    assert quota["spent"] == paid_points(shop) == shop.fake.deducted_total()
    assert sum(10**9 - shop.fake.balance(m) for m in members) == quota["spent"]
    shard_spent_matches_paid_orders(shop)
    assert stock - shop.stock() == sum(int(line["qty"]) for o in orders for line in checkout.lines_of(o)) == 100
    for m in members:  # each member's cap counter is what that member's paid orders took
        counter = MemberRedemption.get(shop.member_ids[m], shop.period_id, consistent_read=True)
        assert int(counter.redeemed) == sum(int(o.points) for o in orders if o.member_id == shop.member_ids[m])


def test_grant_room_and_member_cap_hold_exactly_when_grants_meet_conflicts(system, ops, proxy):
    """Hosted grants at once with 30% of their transactions cancelled for a conflict: one member with a cap of
    5,000 sent 100 grants of 100 gets exactly 50; 40 new members sent one grant of 100 against a grant room of
    2,000 get exactly 20 (their first grant also creates them, a transaction that meets conflicts too)."""
    capped = make_shop(system, ops, "hosted", cap=5000)
    member = capped.member()
    room = make_shop(system, ops, "hosted", quota=2000)
    newcomers = [f"new-{uuid.uuid4().hex[:10]}" for _ in range(40)]
    tasks = [lambda s: capped.grant(member, 100, session=s) for _ in range(100)]
    tasks += [lambda s, m=m: room.grant(m, 100, session=s) for m in newcomers]
    proxy.conflicts(SHARE)
    results = burst(system.base_url, tasks, 64)
    proxy.conflicts(0.0)
    assert proxy.injected["TransactWriteItems"] >= 30, proxy.injected
    assert grant_codes(results[:100]) == {(201, None): 50, (409, "member_cap_exceeded"): 50}, \
        grant_codes(results[:100])
    assert grant_codes(results[100:]) == {(201, None): 20, (409, "grant_quota_exhausted"): 20}, \
        grant_codes(results[100:])

    stored = Wallet.get(capped.member_ids[member], consistent_read=True)
    assert (int(stored.balance), int(stored.granted), len(stored.lots.as_dict())) == (5000, 5000, 50)
    assert capped.wallet(member)["balance"] == 5000
    quota = room.quota()
    assert (quota["granted"], quota["grant_room"]) == (2000, 0), quota
    room.assert_shards_balanced()
    # Every new member was created once (a conflicted creation is read again, not duplicated); the 20 granted
    # hold the 2,000 points.
    created = [members_mod.enter(room.code, m) for m in newcomers]
    assert len({m.member_id for m in created}) == 40
    balances = [int(Wallet.get(m.member_id, consistent_read=True).balance) for m in created]
    assert sorted(balances) == [0] * 20 + [100] * 20, balances


def test_remote_confirm_and_release_finish_every_order_when_they_meet_conflicts(system, ops, proxy):
    """Remote mode, 80 orders at once, the channel refusing a third of the members, 30% of the transactions
    (the order's commit, then its confirm or release) cancelled for a conflict: every order ends paid or failed
    as the channel answered, no quota stays reserved, stock and the members' cap counters come back."""
    stock = 1000
    shop = make_shop(system, ops, "remote", quota=100 * 1200, stock=stock, api_timeout=BURST_TIMEOUT)
    members = shop.members(40, points=10**6)
    refused = set(members[::3])
    for m in refused:
        shop.fake.member_modes[m] = FAIL
    proxy.conflicts(SHARE)
    started = time.time()
    attempts = burst(system.base_url, [lambda s, m=members[i % 40]: shop.place(s, m) for i in range(80)], 40)
    proxy.conflicts(0.0)
    assert summary(attempts) == {(201, None): 80}, summary(attempts)
    assert proxy.injected["TransactWriteItems"] >= 20, proxy.injected
    print(f"\nremote burst in {time.time() - started:.1f}s, conflicts injected {dict(proxy.injected)}")

    by_member = {o.order_id: o for o in shop.orders()}
    assert len(by_member) == 80
    for attempt in attempts:
        order = by_member[attempt.order_id]
        external = next(m for m, mid in shop.member_ids.items() if mid == order.member_id)
        expected = "failed" if external in refused else "paid"
        assert attempt.body["status"] == order.status == expected, (attempt.body, order.status)
    assert checkout.pending(shop.code) == []
    paid = [o for o in by_member.values() if o.status == "paid"]
    quota = shop.quota()
    assert (quota["reserved"], quota["spent"], quota["remaining"]) == (
        0, len(paid) * 1200, quota["limit"] - len(paid) * 1200), quota
    assert quota["spent"] == paid_points(shop) == shop.fake.deducted_total()
    shard_spent_matches_paid_orders(shop)
    assert stock - shop.stock() == len(paid)
    for m in members:
        counter = MemberRedemption.get(shop.member_ids[m], shop.period_id, consistent_read=True)
        assert int(counter.redeemed) == (0 if m in refused else 2 * 1200), m


# --- a supplier's change meeting a checkout on the same Stock item -------------------------------------

def test_a_suppliers_sku_change_that_meets_a_checkout_is_a_409_not_a_500(system, ops, proxy):
    """A supplier's stock or price change and a checkout both write the SKU's ``Stock`` item; on DynamoDB the
    supplier's transaction, meeting a checkout's, is cancelled for a conflict. It was re-raised as a 500; it
    is the 409 ``concurrent_update`` a stock moved by a checkout already answers (read again, retry), and
    nothing moved."""
    shop = make_shop(system, ops, "remote", stock=50)
    version = int(Goods.get(shop.goods_id, consistent_read=True).version)
    proxy.conflicts(1.0, only=writing(Goods))  # every supplier write meets a checkout's; checkouts do not
    for change in ({"stock": 60}, {"settlement_price": SETTLEMENT - 10}):
        assert_error(sku_change(shop, change), 409, "concurrent_update")
    assert proxy.injected["TransactWriteItems"] == 2
    assert (shop.stock(), int(Goods.get(shop.goods_id, consistent_read=True).version)) == (50, version)
    proxy.conflicts(0.0)
    assert sku_change(shop, {"stock": 60}).status_code == 200 and shop.stock() == 60


# --- a plain write to an item a checkout transaction is writing -----------------------------------------

def test_an_otp_checkout_whose_guard_write_meets_another_orders_transaction_pays(system, ops, proxy, monkeypatch):
    """One-time-code channels: each checkout reserves its attempt on the member's ``PaymentGuard`` item with a
    plain conditional update, and a placed order consumes the code on that same item in its transaction. On
    DynamoDB, the member's second order reserving while the first one's transaction is in flight gets
    ``TransactionConflictException``; that is a lost race to read again and retry, not a 500."""
    route_through(proxy, monkeypatch, plain=True)
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    proxy.conflicts(0.0, plain_share=1.0, only=writing(PaymentGuard), times=1)
    placed = shop.place(ops.session, member, body=shop.body(otp=code))
    assert proxy.injected["UpdateItem"] == 1
    assert (placed.status, placed.body.get("status")) == (201, "paid"), placed.body
