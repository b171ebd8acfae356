"""Money hardening (issue 7): prices under 1 fen never sell and never mint points, the real reason of a
refusal is named, and every price an order uses is guarded in its transaction."""
from __future__ import annotations

import json
import time

import pytest
import requests

from chalice.local import LambdaContext

from checkout_helpers import BURST_TIMEOUT, SETTLEMENT, Shop, assert_error, burst, make_shop, ok, summary
from chalicelib.channels import channels
from chalicelib.channels.models import PoolItem
from chalicelib.checkout import checkout
from chalicelib.checkout.models import MemberRedemption, Wallet
from chalicelib.core.clock import now_iso
from chalicelib.orders.models import Order
from chalicelib.partners import channel_api
from chalicelib.supply.models import Goods
from dynamo_proxy import DynamoProxy, route_through
from fake_wallet_channel import DOWN, FAIL, NORMAL, TIMEOUT_AFTER, TIMEOUT_BEFORE
from test_events import EVENTS


def snapshot(shop: Shop, member: str) -> dict:
    """Everything a bad order could move: quota, stock, orders, the member's points (ours or the channel's)."""
    quota = shop.quota()
    points = (int(Wallet.get(shop.member_ids[member], consistent_read=True).balance)
              if shop.points_mode == "hosted" else shop.fake.balance(member))
    return {"remaining": quota["remaining"], "reserved": quota["reserved"], "spent": quota["spent"],
            "granted": quota["granted"], "stock": shop.stock(), "orders": len(shop.orders()), "points": points}


def funded_shop(system, ops, points_mode: str) -> tuple[Shop, str]:
    shop = make_shop(system, ops, points_mode)
    member = shop.member(points=50_000)
    if points_mode == "hosted":
        ok(shop.grant(member, 50_000), 201)
    return shop, member


def sku_change(shop: Shop, **change) -> dict:
    return ok(requests.put(f"{shop.base_url}/supplier/goods/{shop.goods_id}/skus/{shop.sku_id}",
                           headers={"X-Api-Key": shop.supplier_key}, json=change, timeout=30))


def on_sale(shop: Shop, member: str) -> bool:
    items = ok(requests.get(f"{shop.base_url}/api/{shop.code}/catalog", headers=shop.auth(member), timeout=30))
    return any(i["goods_id"] == shop.goods_id for i in items["items"])


# --- a price is at least 1 fen, where it is set ---------------------------------------------

def test_a_markup_under_one_fen_is_refused_where_it_is_set(system, ops):
    shop = make_shop(system, ops, "hosted")
    put = lambda rule: ops.put(f"/ops/channels/{shop.code}/pool/{shop.goods_id}",  # noqa: E731
                               json={"prices": {shop.sku_id: {**rule, "allow_loss": True}}})
    for fixed in (-100_000_000, -SETTLEMENT - 1, -SETTLEMENT):  # 1,000 fen settlement: these price at ≤ 0
        assert_error(put({"markup": {"fixed": fixed}}), 422, "price_not_positive")
    assert_error(put({"markup": {"payment_bps": 100, "fixed": -1011}}), 422, "price_not_positive")  # 1010 - 1011
    ok(put({"markup": {"fixed": -SETTLEMENT + 1}}))  # 1 fen, a loss ops accepted: allowed
    assert [s["price"] for s in ok(ops.get(f"/ops/channels/{shop.code}/pool"))["items"][0]["skus"]] == [1]
    # The base sale price is at least 1 fen at approval too.
    draft = ok(requests.post(f"{shop.base_url}/supplier/goods", headers={"X-Api-Key": shop.supplier_key}, json={
        "ref": "zero-base", "title": "Free tea", "category": "food",
        "skus": [{"sku_id": "S1", "spec": "1 g", "settlement_price": 10, "stock": 5}]}, timeout=30), 201)
    refused = ops.post(f"/ops/goods/{draft['goods_id']}/approve", json={"base_prices": {"S1": 0}, "allow_loss": True})
    assert refused.status_code == 422, refused.text
    assert ok(ops.get(f"/ops/goods/{draft['goods_id']}"))["status"] == "pending_review"


def test_a_markup_that_falls_under_one_fen_when_the_settlement_price_drops_never_sells(system, ops):
    """Review case "negative price": a markup with a very negative fixed part, accepted as a loss at 100 fen;
    the supplier then lowers its settlement price (no review needed) and the rule computes -400 fen. Buying
    it used to *add* 400 points to the member's wallet and 400 to the channel's quota."""
    for mode in ("hosted", "remote"):
        shop, member = funded_shop(system, ops, mode)
        ok(ops.put(f"/ops/channels/{shop.code}/pool/{shop.goods_id}",
                   json={"prices": {shop.sku_id: {"markup": {"fixed": -900}, "allow_loss": True}}}))
        assert on_sale(shop, member)
        sku_change(shop, settlement_price=500)
        before = snapshot(shop, member)
        attempt = shop.place(ops.session, member)
        assert (attempt.status, attempt.code) == (409, "price_not_sellable"), (mode, attempt.body)
        assert snapshot(shop, member) == before, mode
        assert not on_sale(shop, member)  # the store no longer offers it either
        sku = ok(ops.get(f"/ops/channels/{shop.code}/pool"))["items"][0]["skus"][0]
        assert (sku["price"], sku["sellable"]) == (-400, False), sku
        # Re-priced above 1 fen, it sells again at the rule's price.
        ok(ops.put(f"/ops/channels/{shop.code}/pool/{shop.goods_id}",
                   json={"prices": {shop.sku_id: {"markup": {"fixed": -450}, "allow_loss": True}}}))
        bought = shop.place(ops.session, member)
        assert bought.status == 201 and bought.body["points"] == 50, bought.body


def test_a_bad_price_stored_past_the_api_is_refused_and_moves_nothing(system, ops):
    """A price written straight into the pool item (a migration, a console edit): the transaction is never
    built, nothing is minted, and the refusal names the price."""
    for mode in ("hosted", "remote"):
        for bad in (-500, 0):
            shop, member = funded_shop(system, ops, mode)
            PoolItem.get(shop.code, shop.goods_id).update(actions=[PoolItem.prices.set({shop.sku_id: {"price": bad}})])
            before = snapshot(shop, member)
            attempt = shop.place(ops.session, member)
            assert (attempt.status, attempt.code) == (409, "price_not_sellable"), (mode, bad, attempt.body)
            assert snapshot(shop, member) == before, (mode, bad)
            assert shop.fake.deducted_total() == 0


# --- a refusal names its real reason; every price the order uses is guarded --------------------

class JustBeforeCommit:
    """Runs ``change`` once, after checkout has read and priced the order and just before its transaction
    commits: the window in which goods leave approval or a price moves under an order in flight."""

    def __init__(self, monkeypatch, change) -> None:
        self.change, self.fired = change, False
        real = checkout.LabelledTransaction
        hook = self

        class Hooked(real):
            def commit(self) -> None:
                if not hook.fired:
                    hook.fired = True
                    hook.change()
                super().commit()

        monkeypatch.setattr(checkout, "LabelledTransaction", Hooked)


def test_refusals_name_the_real_reason_and_move_nothing(system, ops, monkeypatch):
    shop, member = funded_shop(system, ops, "hosted")
    ops_ = lambda path: ok(ops.post(path))  # noqa: E731
    cases = {
        "goods_unavailable": lambda: ops_(f"/ops/goods/{shop.goods_id}/off-sale"),
        "price_changed": lambda: sku_change(shop, settlement_price=SETTLEMENT - 1),
        "out_of_stock": lambda: sku_change(shop, stock=0),
    }
    points_and_quota = lambda: {k: v for k, v in snapshot(shop, member).items() if k != "stock"}  # noqa: E731
    for code, change in cases.items():
        before = points_and_quota()
        hook = JustBeforeCommit(monkeypatch, change)
        attempt = shop.place(ops.session, member)
        assert hook.fired and (attempt.code, points_and_quota()) == (code, before), (code, attempt.body)
        monkeypatch.undo()
        shop, member = funded_shop(system, ops, "hosted")


def test_the_base_sale_price_is_guarded_in_the_checkout_transaction(system, ops, monkeypatch):
    """The goods go back to review and are approved again at another base price while an order is in flight
    (same settlement price, approved again): the order was priced at the old base price and must not commit."""
    shop, member = funded_shop(system, ops, "hosted")

    def reapprove_at_another_base_price() -> None:
        Goods.get(shop.goods_id).update(actions=[Goods.status.set("pending_review")])
        ok(ops.post(f"/ops/goods/{shop.goods_id}/approve", json={"base_prices": {shop.sku_id: 2400}}))

    before = snapshot(shop, member)
    JustBeforeCommit(monkeypatch, reapprove_at_another_base_price)
    attempt = shop.place(ops.session, member)
    assert (attempt.status, attempt.code) == (409, "price_changed"), attempt.body
    assert snapshot(shop, member) == before
    monkeypatch.undo()
    again = shop.place(ops.session, member)
    assert again.status == 201 and again.body["points"] == 2400, again.body


# --- a commit whose response was lost is not a duplicate; a replay finishes the order ----------------

@pytest.fixture
def lossy(system, monkeypatch):
    """Transactions go through a proxy that can lose the answer to the checkout's commit (it puts the order;
    the later confirm does not): ``drop_for`` names the order, ``drops`` how many answers to lose."""
    proxy = DynamoProxy(system.dynamodb.endpoint).start()
    route_through(proxy, monkeypatch)
    yield proxy
    proxy.stop()


def test_a_commit_whose_response_was_lost_is_paid_and_deducted_once(system, ops, lossy):
    """botocore resends the committed transaction; with the request token DynamoDB (and Dynoxide) answers the
    resend as the success it was. Before, the resend failed on the order's own condition, checkout took it for
    a duplicate and answered the order "awaiting_deduction" without ever asking the channel to deduct."""
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5000)
    key = "lost-response-1"
    lossy.drop_for, lossy.drops = checkout.order_id_for(shop.code, shop.member_ids[member], key), 1
    attempt = shop.place(ops.session, member, key=key)
    assert attempt.status == 201 and attempt.body["status"] == "paid", attempt.body
    assert lossy.drops == 0 and len(lossy.seen) == 2, lossy.seen  # the commit, and botocore's resend of it
    (first, token), (resend, same) = lossy.seen
    assert (first, resend) == (200, 200) and token == same and token.startswith(lossy.drop_for), lossy.seen
    assert shop.fake.calls["points/deduct deducted"] == 1 and shop.fake.balance(member) == 5000 - 1200
    assert len(shop.orders()) == 1 and shop.quota()["spent"] == 1200


def test_a_first_call_that_died_after_its_commit_is_finished_by_the_members_retry(system, ops, lossy):
    """Every answer to the commit is lost (botocore gives up: the member sees an error) although the order
    committed, reserving quota, and the channel was never asked. The member's retry with the same key finds
    the order; once its creator is past its lease, the retry sends the deduct and the order is paid."""
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5000)
    key = "died-after-commit-1"
    order_id = checkout.order_id_for(shop.code, shop.member_ids[member], key)
    lossy.drop_for, lossy.drops = order_id, 10
    first = shop.place(ops.session, member, key=key)
    assert first.status >= 500, first.body
    order = Order.get(order_id, consistent_read=True)
    assert order.status == "awaiting_deduction" and not shop.fake.calls["points/deduct deducted"]
    assert shop.quota()["reserved"] == 1200

    # While its creator may still be at work, a retry answers the order as it is and sends nothing.
    lossy.drops = 0
    early = shop.place(ops.session, member, key=key)
    assert early.status == 200 and early.body["status"] == "awaiting_deduction", early.body
    assert not shop.fake.calls["points/deduct deducted"]
    # The creator's lease has run out (it died): the retry takes over and finishes the order.
    stale = now_iso(time.time() - checkout.DEDUCT_LEASE_SECONDS - 1)
    order.update(actions=[Order.updated_at.set(stale)])
    retry = shop.place(ops.session, member, key=key)
    assert retry.status == 200 and retry.body["status"] == "paid", retry.body
    assert shop.fake.calls["points/deduct deducted"] == 1 and shop.fake.balance(member) == 5000 - 1200
    quota = shop.quota()
    assert (quota["reserved"], quota["spent"]) == (0, 1200) and len(shop.orders()) == 1


# --- the per-member cap: live points (hosted), points redeemed in the period (remote) ---------------

def grant_codes(results) -> dict:
    counts: dict = {}
    for r in results:
        key = (r.status_code, r.json().get("error", {}).get("code") if r.status_code >= 400 else None)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_hosted_cap_counts_live_points_only_under_concurrency(system, ops):
    """3,000 of the member's points expired (never swept: the member did not open the wallet). With a cap of
    5,000 the member may receive 5,000 more: 100 grants of 100 at once, exactly 50 get through. Before, the
    stored balance still counted the expired 3,000 and only 20 did."""
    shop = make_shop(system, ops, "hosted", cap=5000)
    member = shop.member()
    ok(shop.grant(member, 3000, expires_at=int(time.time()) + 2), 201)
    time.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 1.1)
    results = burst(system.base_url, [lambda s: shop.grant(member, 100, session=s) for _ in range(100)], 50)
    assert grant_codes(results) == {(201, None): 50, (409, "member_cap_exceeded"): 50}, grant_codes(results)
    stored = Wallet.get(shop.member_ids[member], consistent_read=True)
    lots = stored.lots.as_dict()
    assert (int(stored.balance), int(stored.expired), int(stored.granted)) == (5000, 3000, 8000)
    assert len(lots) == 50 and all(int(l["left"]) == 100 for l in lots.values())  # the expired lot folded out
    assert shop.wallet(member)["balance"] == 5000


def test_remote_cap_holds_under_100_parallel_checkouts(system, ops):
    """Remote mode: the channel's wallet holds plenty and the quota is large; one member's cap of 12,000 points
    per period lets exactly 10 of 100 simultaneous orders through (before: all 100)."""
    shop = make_shop(system, ops, "remote", cap=10 * 1200, api_timeout=BURST_TIMEOUT)
    member = shop.member(points=10**9)

    def through_the_password_guard(session):
        """The payment-password guard turns away one member's confirmations beyond a few at once (429
        payment_busy, nothing written): sent again, as the store does, until each reaches the checkout."""
        while (attempt := shop.place(session, member)).code == "payment_busy":
            time.sleep(0.01)
        return attempt

    attempts = burst(system.base_url, [through_the_password_guard for _ in range(100)], 50)
    assert summary(attempts) == {(201, None): 10, (409, "member_cap_exceeded"): 90}, summary(attempts)
    assert shop.fake.deducted_total() == 12_000 == shop.quota()["spent"]
    usage = MemberRedemption.get(shop.member_ids[member], shop.period_id, consistent_read=True)
    assert int(usage.redeemed) == 12_000
    # Another member is not affected; an order the channel refuses gives its cap room back.
    other = shop.member(points=10**9)
    shop.fake.member_modes[other] = FAIL
    refused = shop.place(ops.session, other, body=shop.body(qty=10))
    assert refused.status == 201 and refused.body["status"] == "failed", refused.body
    assert int(MemberRedemption.get(shop.member_ids[other], shop.period_id, consistent_read=True).redeemed) == 0
    shop.fake.member_modes[other] = NORMAL
    assert shop.place(ops.session, other, body=shop.body(qty=10)).body["status"] == "paid"
    assert_error_code(shop.place(ops.session, other), "member_cap_exceeded")
    assert_error_code(shop.place(ops.session, member, body=shop.body(qty=11)), "member_cap_exceeded")


def assert_error_code(attempt, code: str) -> None:
    assert (attempt.status, attempt.code) == (409, code), attempt.body


# --- remote release goes through the channel's cancel --------------------------------------------

def test_an_order_is_released_only_after_the_channel_acknowledged_its_cancel(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5000)
    shop.fake.deduct_mode, shop.fake.cancel_mode = TIMEOUT_BEFORE, DOWN
    stuck = shop.place(ops.session, member)
    # The channel has no deduction (query: not_found) but does not acknowledge the cancel: the order waits.
    assert stuck.status == 201 and stuck.body["status"] == "awaiting_deduction", stuck.body
    assert shop.fake.calls["points/query not_found"] == 1 and shop.fake.calls["points/cancel down"] >= 1
    assert shop.quota()["reserved"] == 1200
    shop.fake.deduct_mode, shop.fake.cancel_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-orders/resolve")) == {
        "paid": 0, "failed": 1, "awaiting_deduction": 0}
    assert stuck.order_id in shop.fake.cancelled
    quota = shop.quota()
    assert (quota["reserved"], quota["spent"], quota["remaining"]) == (0, 0, quota["limit"])
    # A deduct for the cancelled order arriving late (a resend, a replay) is refused by the channel.
    late = channel_api.call(channels.get(shop.code), "points/deduct",
                         {"order_id": stuck.order_id, "member_id": member, "points": 1200})
    assert (late["_status"], late["result"]) == (409, "cancelled")
    assert shop.fake.balance(member) == 5000 and not shop.fake.deducted(stuck.order_id)


# --- wallets fold their dead lots ------------------------------------------------------------

def test_a_long_lived_wallet_keeps_only_live_lots(system, ops):
    """Grant, spend it all, 25 times, then a grant that expires: the item keeps only live lots (before: one
    lot per grant forever, toward DynamoDB's 400 KB item limit), and the totals still add up."""
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    for _ in range(25):
        ok(shop.grant(member, 1200), 201)
        assert shop.place(ops.session, member).status == 201
    ok(shop.grant(member, 700, expires_at=int(time.time()) + 2, grant_id="short"), 201)
    assert set(Wallet.get(shop.member_ids[member], consistent_read=True).lots.as_dict()) == {"short"}
    time.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 1.1)
    ok(shop.grant(member, 500, grant_id="last"), 201)
    stored = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert stored.lots.as_dict() == {"last": {"left": 500, "expires_at": shop.ends_at}}
    assert (int(stored.balance), int(stored.granted), int(stored.spent), int(stored.expired)) == (
        500, 25 * 1200 + 700 + 500, 25 * 1200, 700)
    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["spent"], wallet["expired"]) == (500, 30_000, 700), wallet


# --- the remote sweep: every channel on its own, suspended ones included ------------------------------

def test_the_sweep_goes_on_past_a_failing_channel_and_covers_suspended_ones(system, ops, monkeypatch):
    shops = [make_shop(system, ops, "remote") for _ in range(3)]
    broken, suspended, healthy = shops
    orders = {}
    for shop in shops:
        member = shop.member(points=5000)
        shop.fake.query_mode, shop.fake.deduct_mode = DOWN, TIMEOUT_AFTER
        orders[shop.code] = shop.place(ops.session, member)
        assert orders[shop.code].body["status"] == "awaiting_deduction"
        shop.fake.query_mode, shop.fake.deduct_mode = NORMAL, NORMAL
    ok(ops.post(f"/ops/channels/{suspended.code}/suspend"))
    monkeypatch.setattr(checkout, "DEDUCT_LEASE_SECONDS", 0)  # the grace period is tested in test_remote_refunds
    real = channel_api.call

    def failing(channel, api, payload, *args, **kwargs):
        if channel.code == broken.code:
            raise RuntimeError("the channel's response could not be parsed")
        return real(channel, api, payload, *args, **kwargs)

    monkeypatch.setattr(channel_api, "call", failing)
    event = json.loads((EVENTS / "resolve_remote_orders.json").read_text())
    result = system.app.resolve_remote_orders(event, LambdaContext("resolve_remote_orders", 256))
    assert result[broken.code] == {"error": "RuntimeError"}
    for shop in (suspended, healthy):
        assert result[shop.code] == {"paid": 1, "failed": 0, "awaiting_deduction": 0}, (shop.code, result)
        assert shop.quota()["spent"] == 1200
    assert Order.get(orders[broken.code].order_id).status == "awaiting_deduction"


# --- sandbox orders are marked ----------------------------------------------------------------

def test_orders_of_a_sandbox_channel_are_marked(system, ops):
    sandbox, live = make_shop(system, ops, "hosted", sandbox=True), make_shop(system, ops, "hosted")
    for shop, expected in ((sandbox, True), (live, False)):
        member = shop.member()
        ok(shop.grant(member, 1200), 201)
        placed = shop.place(ops.session, member)
        assert placed.status == 201 and placed.body["sandbox"] is expected, placed.body
        listed = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders", headers=shop.auth(member), timeout=30))
        assert [o["sandbox"] for o in listed["orders"]] == [expected]
        assert Order.get(placed.order_id).sandbox is expected
