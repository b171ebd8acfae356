"""Remote mode: a refund is the channel's ``points/refund`` (idempotent by our refund id), resolved like the
deduct — a lost answer is settled by ``points/refund/query``, an unknown one is asked about again by the
sweep. And the late deduct: a deduct the channel applies after we gave up on it. Against the fake channel in
every mode, the channel's wallet and our books agree."""
from __future__ import annotations

import time

import pytest
import requests

from checkout_helpers import Shop, assert_error, make_shop, ok, uid
from chalicelib.channels import channels
from chalicelib.checkout import checkout
from chalicelib.checkout.models import MemberRedemption, Wallet
from chalicelib.core.clock import business_day
from chalicelib.orders import parcels, refunds
from chalicelib.orders.models import Parcel
from chalicelib.settlement import books
from chalicelib.settlement import invariants as invariant_audit
from helpers import wait_for
from fake_wallet_channel import DOWN, FAIL, LATE, NORMAL, TIMEOUT_AFTER, TIMEOUT_BEFORE

START = 10_000


@pytest.fixture
def sweep_only(monkeypatch):
    """A refund left in doubt is not retried by its own fast workflow (``refunds.retry_soon``): these tests drive
    the sweep's path step by step, with nothing racing it; the fast retries are tested on their own."""
    monkeypatch.setattr(refunds, "retry_soon", lambda refund: None)


def remote_shop(system, ops) -> tuple[Shop, str]:
    shop = make_shop(system, ops, "remote")
    return shop, shop.member(points=START)


def shipped(shop: Shop, member: str, qty: int = 2) -> str:
    placed = shop.place(requests.Session(), member, body=shop.body(qty=qty))
    assert placed.status == 201 and placed.body["status"] == "paid", placed.body
    (parcel,) = parcels.split(placed.order_id)
    ok(requests.post(f"{shop.base_url}/supplier/parcels/{parcel.parcel_id}/ship", timeout=30,
                     headers={"X-Api-Key": shop.supplier_key}, json={"carrier": "SF", "tracking_no": uid("SF")}))
    return parcel.parcel_id


def assert_books(shop: Shop, member: str, refunded: int, spent: int) -> None:
    """The channel's wallet and our quota say the same: ``spent`` taken for paid orders, ``refunded`` back."""
    assert shop.fake.refunded_total() == refunded
    assert shop.fake.balance(member) == START - shop.fake.deducted_total() + refunded
    quota = shop.quota()
    assert quota["spent"] == spent == shop.fake.deducted_total() - refunded, quota
    assert quota["reserved"] == 0
    shop.assert_shards_balanced()


def test_refund_success_gives_the_points_back_at_the_channel(system, ops):
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost in transit"}))
    assert done["state"] == "refunded" and done["points"] == 2400
    assert shop.fake.refunds[done["refund_id"]] == {"order_id": Parcel.get(parcel_id).order_id, "points": 2400}
    assert shop.fake.balance(member) == START and Parcel.get(parcel_id).state == "refunded"
    assert_books(shop, member, refunded=2400, spent=0)
    assert shop.stock() == 100_000 - 2


def test_refund_the_channel_refuses_moves_nothing(system, ops):
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    shop.fake.refund_mode = FAIL
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert done["state"] == "rejected" and done["decided_by"] == "channel" and "closed" in done["reject_reason"]
    assert Parcel.get(parcel_id).state == "shipped" and not ok(ops.get(f"/ops/channels/{shop.code}/pending-refunds"))[
        "refunds"]
    assert_books(shop, member, refunded=0, spent=2400)
    shop.fake.refund_mode = NORMAL  # ops may try again once the channel is ready: the same refund id
    assert ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))["state"] == "refunded"
    assert_books(shop, member, refunded=2400, spent=0)


def test_refund_applied_but_its_answer_lost_is_found_by_the_query(system, ops):
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    shop.fake.refund_mode = TIMEOUT_AFTER
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert done["state"] == "refunded"
    assert shop.fake.calls["points/refund/query refunded"] == 1
    assert_books(shop, member, refunded=2400, spent=0)


@pytest.mark.usefixtures("sweep_only")
def test_refund_never_applied_waits_and_the_sweep_sends_it_again_once(system, ops):
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    shop.fake.refund_mode = TIMEOUT_BEFORE
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert done["state"] == "awaiting_channel" and shop.fake.calls["points/refund/query not_found"] == 1
    assert Parcel.get(parcel_id).state == "shipped"
    assert_books(shop, member, refunded=0, spent=2400)  # nothing moved on either side yet
    waiting = ok(ops.get(f"/ops/channels/{shop.code}/pending-refunds"))["refunds"]
    assert [r["refund_id"] for r in waiting] == [done["refund_id"]]

    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, DOWN  # no answer: still waiting
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["awaiting_channel"] == 1
    shop.fake.refund_query_mode = NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve")) == {
        "refunded": 1, "rejected": 0, "awaiting_channel": 0, "approved": 0}
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["refunded"] == 0  # nothing twice
    assert Parcel.get(parcel_id).state == "refunded"
    assert_books(shop, member, refunded=2400, spent=0)


@pytest.mark.usefixtures("sweep_only")
def test_the_sweep_leaves_refunds_within_their_grace_period_to_their_request(system, ops):
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    shop.fake.refund_mode, shop.fake.refund_query_mode = DOWN, DOWN
    assert ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))["state"] == "awaiting_channel"
    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, NORMAL
    assert refunds.sweep()[shop.code]["refunded"] == 0  # touched a moment ago
    assert refunds.get(refunds.refund_id_for(parcel_id)).state == "awaiting_channel"
    assert refunds.resolve_pending(channels.get(shop.code))["refunded"] == 1
    assert_books(shop, member, refunded=2400, spent=0)


def test_a_late_deduct_after_the_cancel_is_refused_and_the_books_agree(system, ops):
    """The deduct's answer is lost and the channel's query finds nothing; we cancel and release. The deduct
    the channel then applies late is refused (the order is cancelled): the member keeps every point."""
    shop, member = remote_shop(system, ops)
    shop.fake.deduct_mode = LATE
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201 and placed.body["status"] == "failed", placed.body
    deadline = time.time() + 10
    while shop.fake.calls["points/deduct cancelled"] < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert shop.fake.calls["points/deduct cancelled"] == 1 and placed.order_id in shop.fake.cancelled
    assert shop.fake.balance(member) == START and not shop.fake.deducted(placed.order_id)
    quota = shop.quota()
    assert (quota["spent"], quota["reserved"], quota["remaining"]) == (0, 0, quota["limit"])
    assert shop.stock() == 100_000


def test_a_late_deduct_before_the_cancel_is_acknowledged_pays_the_order(system, ops):
    """The cancel is not acknowledged (channel down), so the order waits; the late deduct lands meanwhile and
    the sweep's query then finds it: the order is paid, and the books agree."""
    shop, member = remote_shop(system, ops)
    shop.fake.deduct_mode, shop.fake.cancel_mode = LATE, DOWN
    placed = shop.place(requests.Session(), member)
    assert placed.body["status"] == "awaiting_deduction", placed.body
    deadline = time.time() + 10
    while not shop.fake.deducted(placed.order_id) and time.time() < deadline:
        time.sleep(0.1)
    shop.fake.cancel_mode = NORMAL
    channel = channels.get(shop.code)
    assert checkout.resolve_pending(channel, checkout.DEDUCT_LEASE_SECONDS)[checkout.AWAITING] == 0  # in its grace
    assert checkout.pending(shop.code) and not checkout.pending(shop.code, checkout.DEDUCT_LEASE_SECONDS)
    assert checkout.resolve_pending(channel) == {"paid": 1, "failed": 0, "awaiting_deduction": 0}
    assert shop.fake.balance(member) == START - 1200
    assert shop.quota()["spent"] == 1200 == shop.fake.deducted_total()


@pytest.mark.usefixtures("sweep_only")
def test_a_remote_parcel_cancelled_before_shipment_gets_its_points_back_from_the_channel(system, ops):
    """Cancelling an unshipped parcel in remote mode: the channel refunds first (in doubt: the parcel waits
    and the sweep finishes it), then stock, quota and the parcel move; the books agree."""
    shop, member = remote_shop(system, ops)
    orders = []
    for _ in range(2):
        placed = shop.place(requests.Session(), member)
        orders.append(parcels.split(placed.order_id)[0].parcel_id)
    cancel = lambda pid: requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{pid}/cancel",  # noqa: E731
                                       headers=shop.auth(member), timeout=60)
    ok(cancel(orders[0]))
    assert Parcel.get(orders[0]).state == "cancelled" and shop.stock() == 100_000 - 1
    assert_books(shop, member, refunded=1200, spent=1200)

    shop.fake.refund_mode = TIMEOUT_BEFORE
    ok(cancel(orders[1]), 202)
    assert Parcel.get(orders[1]).state == "cancelling"  # in doubt: out of shipment, nothing given back yet
    assert refunds.get(refunds.refund_id_for(orders[1])).state == "awaiting_channel"
    shop.fake.refund_mode = NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["refunded"] == 1
    assert Parcel.get(orders[1]).state == "cancelled" and shop.stock() == 100_000
    assert_books(shop, member, refunded=2400, spent=0)


def test_a_remote_refund_gives_the_member_cap_room_back_in_its_open_period(system, ops):
    """The per-member cap counts points redeemed in the period; a refunded parcel's are no longer redeemed."""
    shop = make_shop(system, ops, "remote", cap=2 * 2400)
    member = shop.member(points=START)
    parcel_id = shipped(shop, member)
    shipped(shop, member)
    refused = shop.place(requests.Session(), member)
    assert (refused.status, refused.code) == (409, "member_cap_exceeded")
    ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert int(MemberRedemption.get(shop.member_ids[member], shop.period_id, consistent_read=True).redeemed) == 2400
    assert shop.place(requests.Session(), member, body=shop.body(qty=2)).body["status"] == "paid"
    assert_books(shop, member, refunded=2400, spent=2 * 2400)


# --- issue 16 #2: a pending cancel holds the parcel out of shipment ---------------------------------------

def _supplier(shop: Shop, method: str, path: str, **body) -> requests.Response:
    return requests.request(method, f"{shop.base_url}/supplier/parcels/{path}", json=body or None, timeout=30,
                            headers={"X-Api-Key": shop.supplier_key})


def _books_of(parcel: Parcel) -> dict[str, list[str]]:
    """The parcel's settlement entries today, by event: payable and refunded (the supplier's), returned."""
    today = business_day(time.time())
    return {event: [e.entry for e in books.read(event, party, [today]) if e.parcel_id == parcel.parcel_id]
            for event, party in ((books.PAYABLE, f"supplier.{parcel.supplier_id}"),
                                 (books.REFUNDED, f"supplier.{parcel.supplier_id}"),
                                 (books.RETURNED, f"channel.{parcel.channel_code}"))}


def _assert_cancelled_not_shipped(shop: Shop, member: str, parcel_id: str) -> None:
    parcel = Parcel.get(parcel_id, consistent_read=True)
    assert (parcel.state, parcel.carrier, parcel.tracking_no) == ("cancelled", None, None)
    assert shop.fake.balance(member) == START and shop.stock() == 100_000
    entries = _books_of(parcel)  # never both payable and a clawback for one parcel because of a cancel
    assert (len(entries[books.PAYABLE]), len(entries[books.REFUNDED]), len(entries[books.RETURNED])) == (0, 0, 1)
    assert_books(shop, member, refunded=2400, spent=0)
    assert_no_drift(shop)


def assert_no_drift(shop: Shop) -> None:
    """The invariant audit (quota shards, wallets, orders recomputed from the items) finds nothing."""
    assert invariant_audit.run([shop.code], pause=0.2)["drifts"] == 0


@pytest.mark.usefixtures("sweep_only")
def test_a_pending_remote_cancel_cannot_be_shipped(system, ops):
    """The channel's refund API is down: the member's cancel waits on it. The parcel leaves shippable state in
    the write that starts the cancel, so the supplier's ship is a 409 and the cancel ends as a cancel (no
    shipment, no payable, no clawback) once the channel answers."""
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    shop.fake.refund_mode, shop.fake.refund_query_mode = DOWN, DOWN
    answer = requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                           headers=shop.auth(member), timeout=60)
    assert answer.status_code in (200, 202), answer.text
    assert ok(_supplier(shop, "GET", parcel.parcel_id))["state"] == "cancelling"
    assert_error(_supplier(shop, "POST", f"{parcel.parcel_id}/ship", carrier="SF", tracking_no=uid("SF")),
                 409, "parcel_cancelling")
    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["refunded"] == 1
    _assert_cancelled_not_shipped(shop, member, parcel.parcel_id)
    assert_error(_supplier(shop, "POST", f"{parcel.parcel_id}/ship", carrier="SF", tracking_no=uid("SF")),
                 409, "parcel_already_cancelled")


@pytest.mark.usefixtures("sweep_only")
def test_a_pending_deadline_cancel_refuses_a_late_shipment(system, ops):
    """The shipping deadline's cancel in remote mode, the channel down: a late shipment is refused (409)."""
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    shop.fake.refund_mode, shop.fake.refund_query_mode = DOWN, DOWN
    assert refunds.expire_unshipped(placed.order_id) == [parcel.parcel_id]  # what the Deadline task runs
    assert Parcel.get(parcel.parcel_id, consistent_read=True).state == "cancelling"
    assert_error(_supplier(shop, "POST", f"{parcel.parcel_id}/ship", carrier="SF", tracking_no=uid("SF")),
                 409, "parcel_cancelling")
    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["refunded"] == 1
    _assert_cancelled_not_shipped(shop, member, parcel.parcel_id)


def test_a_cancel_the_channel_refuses_puts_the_parcel_back_to_shipment(system, ops):
    """The channel refuses to give the points back: nothing moved, the parcel is shippable again, the member
    is told (409 ``refund_rejected``) and may ask again once the channel is ready."""
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    shop.fake.refund_mode = FAIL
    cancel = lambda: requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",  # noqa: E731
                                   headers=shop.auth(member), timeout=60)
    assert_error(cancel(), 409, "refund_rejected")
    assert Parcel.get(parcel.parcel_id, consistent_read=True).state == "awaiting_shipment"
    assert_books(shop, member, refunded=0, spent=2400)
    shop.fake.refund_mode = NORMAL
    ok(cancel())
    _assert_cancelled_not_shipped(shop, member, parcel.parcel_id)


# --- issue 16 #3: every step of an order's life uses the points mode it recorded --------------------------

def test_a_refund_follows_the_orders_points_mode_after_the_channel_switched_to_hosted(system, ops):
    """remote → hosted: the points were taken by the channel, so the channel gives them back (not our wallet)."""
    shop, member = remote_shop(system, ops)
    parcel_id = shipped(shop, member)
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"points_mode": "hosted"}))
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert (done["state"], done["points_mode"]) == ("refunded", "remote")
    assert shop.fake.calls["points/refund refunded"] == 1 and shop.fake.balance(member) == START
    assert shop.wallet(member)["balance"] == 0  # no hosted credit for points the channel took
    assert_books(shop, member, refunded=2400, spent=0)
    assert_no_drift(shop)


def test_a_refund_follows_the_orders_points_mode_after_the_channel_switched_to_remote(system, ops):
    """hosted → remote: the points came from our wallet, so they go back to it; the channel is not asked."""
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, 6000), 201)
    parcel_id = shipped(shop, member)
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"points_mode": "remote"}))
    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
    assert (done["state"], done["points_mode"]) == ("refunded", "hosted")
    assert not [c for c in shop.fake.calls if c.startswith("points/refund")]
    assert int(Wallet.get(shop.member_ids[member], consistent_read=True).balance) == 6000
    assert shop.quota()["spent"] == 0
    assert_no_drift(shop)


def test_an_order_awaiting_its_deduction_is_still_resolved_after_the_channel_switched_to_hosted(
        system, ops, monkeypatch):
    """The deduction's answer is unknown when ops switch the channel to hosted: the remote-order sweep still
    asks the channel about it (the order recorded remote) and releases what it held."""
    shop, member = remote_shop(system, ops)
    shop.fake.deduct_mode, shop.fake.query_mode = TIMEOUT_BEFORE, DOWN
    placed = shop.place(requests.Session(), member)
    assert placed.body["status"] == "awaiting_deduction", placed.body
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"points_mode": "hosted"}))
    shop.fake.deduct_mode, shop.fake.query_mode = NORMAL, NORMAL
    monkeypatch.setattr(checkout, "DEDUCT_LEASE_SECONDS", 0)  # the sweep's grace is not what is tested here
    assert checkout.sweep_remote()[shop.code] == {"paid": 0, "failed": 1, "awaiting_deduction": 0}
    quota = shop.quota()
    assert (quota["spent"], quota["reserved"]) == (0, 0) and shop.stock() == 100_000


# --- issue 16 #12: a cancel still waiting for the channel says so; a refund in doubt is retried in seconds ------

@pytest.mark.usefixtures("sweep_only")
def test_a_cancel_waiting_for_the_channel_answers_202_cancelling_and_cannot_be_repeated(system, ops):
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    shop.fake.refund_mode, shop.fake.refund_query_mode = DOWN, DOWN
    cancel = lambda: requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",  # noqa: E731
                                   headers=shop.auth(member), timeout=60)
    pending = cancel()
    assert pending.status_code == 202, pending.text
    [seen] = pending.json()["parcels"]
    assert (seen["state"], seen["can_cancel"], seen["returned"]) == ("cancelling", False, None)
    asked = sum(shop.fake.calls.values())
    assert_error(cancel(), 409, "parcel_cancelling")
    assert sum(shop.fake.calls.values()) == asked  # the second cancel asked the channel nothing
    order = ok(requests.get(f"{shop.base_url}/api/{shop.code}/orders/{placed.order_id}", headers=shop.auth(member),
                            timeout=30))
    assert [p["state"] for p in order["parcels"]] == ["cancelling"]
    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, NORMAL
    assert ok(ops.post(f"/ops/channels/{shop.code}/pending-refunds/resolve"))["refunded"] == 1
    assert_error(cancel(), 409, "parcel_already_cancelled")


def test_a_cancel_the_channel_confirms_at_once_answers_200_cancelled(system, ops):
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member)
    (parcel,) = parcels.split(placed.order_id)
    done = requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                         headers=shop.auth(member), timeout=60)
    assert done.status_code == 200 and [p["state"] for p in done.json()["parcels"]] == ["cancelled"]


def _retries(refund_id: str) -> list[dict]:
    """The refund's ``refund_retry`` executions on the local Step Functions."""
    import boto3

    from chalicelib.core import config

    sfn = boto3.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=config.REFUND_RETRY_STATE_MACHINE_ARN)["executions"]
    return [e for e in listed if e["name"].startswith(f"{refund_id}-")]


def test_a_timed_out_cancel_refund_is_retried_within_seconds_not_at_the_sweep(system, ops):
    """The channel's ``points/refund`` times out (and it has no record of it): the member gets 202 cancelling.
    The channel is back a moment later: the refund is sent again within seconds by the refund's own retry
    workflow (waits of 2, 4, 8… s), not 5 minutes later by the sweep (which never runs in this test)."""
    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    shop.fake.refund_mode = TIMEOUT_BEFORE
    pending = requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                            headers=shop.auth(member), timeout=60)
    assert pending.status_code == 202, pending.text
    shop.fake.refund_mode = NORMAL
    started = time.monotonic()
    refund_id = refunds.refund_id_for(parcel.parcel_id)
    wait_for(lambda: Parcel.get(parcel.parcel_id, consistent_read=True).state, lambda s: s == "cancelled",
             timeout=sum(refunds.RETRY_WAITS) + 30)
    assert time.monotonic() - started < sum(refunds.RETRY_WAITS) < refunds.SWEEP_GRACE_SECONDS + 300
    assert refunds.get(refund_id).state == "refunded" and shop.fake.refunds[refund_id]["points"] == 2400
    _assert_cancelled_not_shipped(shop, member, parcel.parcel_id)
    [execution] = _retries(refund_id)
    wait_for(lambda: _retries(refund_id)[0]["status"], lambda s: s != "RUNNING", timeout=30)
    assert _retries(refund_id)[0]["status"] == "SUCCEEDED"


@pytest.mark.usefixtures("sweep_only")
def test_a_refund_the_channel_never_answers_stops_fast_retries_and_waits_for_the_sweep(system, ops):
    """The fast retries are few (``RETRY_WAITS``): a channel down for longer leaves the refund to the sweep.
    The workflow's task is called here step by step (its own execution is not started, so nothing races)."""
    from chalicelib.orders.models import Refund

    shop, member = remote_shop(system, ops)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    (parcel,) = parcels.split(placed.order_id)
    refund_id = refunds.refund_id_for(parcel.parcel_id)
    shop.fake.refund_mode, shop.fake.refund_query_mode = DOWN, DOWN
    steps = [refunds.retry_step({"refund_id": refund_id, "attempt": n}) for n in range(len(refunds.RETRY_WAITS))]
    assert [s["state"] for s in steps] == [None] * len(steps) and all(s["done"] for s in steps)  # no such refund
    assert requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel",
                         headers=shop.auth(member), timeout=60).status_code == 202
    steps = [refunds.retry_step({"refund_id": refund_id, "attempt": n}) for n in range(len(refunds.RETRY_WAITS))]
    assert [s["wait_seconds"] for s in steps] == [*refunds.RETRY_WAITS[1:], refunds.RETRY_WAITS[-1]]
    assert [s["done"] for s in steps] == [False] * (len(steps) - 1) + [True]
    assert {s["state"] for s in steps} == {"awaiting_channel"}
    assert int(Refund.get(refund_id, consistent_read=True).resolve_attempts) >= len(steps)
    shop.fake.refund_mode, shop.fake.refund_query_mode = NORMAL, NORMAL
    assert refunds.resolve_pending(channels.get(shop.code))["refunded"] == 1
    _assert_cancelled_not_shipped(shop, member, parcel.parcel_id)
