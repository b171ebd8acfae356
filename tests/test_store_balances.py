"""Balances a member can trust (issue 15, item 4).

Hosted: the points page's figures add up — received − spent + returned − expired = available — over a member
with every kind of movement (grants, a spend, a cancel's and a refund's points back, a lot that expired).
Remote: the store shows the channel's own balance (``points/balance``), asked again after every payment,
cancel and refund, and otherwise at most ``remote_balance.MAX_AGE`` seconds old; when the channel cannot
answer, the last figure with its time, marked stale."""
from __future__ import annotations

import time

import requests

from checkout_helpers import Shop, make_shop, ok, uid
from chalicelib.checkout import remote_balance
from chalicelib.checkout.points import totals
from chalicelib.members.models import Member
from chalicelib.orders import parcels
from fake_wallet_channel import DOWN, NORMAL
from helpers import wait_for


def adds_up(w: dict) -> bool:
    return w["granted"] - w["spent"] + w["returned"] - w["expired"] == w["balance"]


# --- the rules ------------------------------------------------------------------------------------------------

def test_totals_add_up_and_count_an_unfolded_expired_lot_as_expired():
    now = 1_000_000.0
    lots = {"g1": {"left": 300, "expires_at": now + 60}, "g2": {"left": 200, "expires_at": now - 1},
            "refund:P1": {"left": 100, "expires_at": now + 60}, "g3": {"left": 0, "expires_at": now + 60}}
    # Stored: granted 1500, spent 1000, refunded 100, expired 0 (g2 not folded yet): balance 600 = sum of lefts.
    t = totals(1500, 1000, 100, 0, lots, now)
    assert t == {"received": 1500, "spent": 1000, "returned": 100, "expired": 200, "available": 400}
    assert t["received"] - t["spent"] + t["returned"] - t["expired"] == t["available"]
    folded = totals(1500, 1000, 100, 200, {k: v for k, v in lots.items() if k != "g2"}, now)
    assert folded == t  # folding by a sweep changes nothing the member sees


def test_the_remote_balance_is_asked_when_missing_old_or_wanted_fresh():
    now = 1_000_000.0
    assert remote_balance.must_ask(None, now, fresh=False)
    assert not remote_balance.must_ask(now - remote_balance.MAX_AGE + 0.5, now, fresh=False)
    assert remote_balance.must_ask(now - remote_balance.MAX_AGE, now, fresh=False)
    assert remote_balance.must_ask(now - 0.1, now, fresh=True)
    assert remote_balance.MAX_AGE <= 5  # "no longer than a few seconds"


# --- hosted: every kind of movement --------------------------------------------------------------------------

def _order(shop: Shop, member: str, qty: int) -> str:
    placed = shop.place(requests.Session(), member, body=shop.body(qty=qty))
    assert placed.status == 201 and placed.body["status"] == "paid", placed.body
    return placed.order_id


def _ship(shop: Shop, parcel_id: str) -> None:
    ok(requests.post(f"{shop.base_url}/supplier/parcels/{parcel_id}/ship", timeout=30,
                     headers={"X-Api-Key": shop.supplier_key}, json={"carrier": "SF", "tracking_no": uid("SF")}))


def _cancel(shop: Shop, member: str, parcel_id: str) -> None:
    ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/cancel", json={},
                     headers=shop.auth(member), timeout=30))


def _refund(shop: Shop, member: str, parcel_id: str) -> None:
    """The member asks, the supplier approves: the points come back."""
    asked = ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/refund-requests",
                             json={"reason": "arrived broken"}, headers=shop.auth(member), timeout=30), 201)
    ok(requests.post(f"{shop.base_url}/supplier/refunds/{asked['refund_id']}/approve", json={},
                     headers={"X-Api-Key": shop.supplier_key}, timeout=30))


def test_hosted_points_page_adds_up_over_every_kind_of_movement(system, ops):
    shop = make_shop(system, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    short_lived = int(time.time()) + 2
    ok(shop.grant(member, 700, expires_at=short_lived), 201)
    w = shop.wallet(member)
    assert (w["granted"], w["spent"], w["returned"], w["expired"], w["balance"]) == (10_700, 0, 0, 0, 10_700), w

    # A spend of 3 units (3,600) takes the short-lived lot first (soonest expiry), then 2,900 of the long one.
    (cancelled,) = parcels.split(_order(shop, member, 3))
    w = shop.wallet(member)
    assert (w["spent"], w["balance"]) == (3_600, 7_100) and adds_up(w), w

    # A cancel gives the 3,600 back as a lot of its own.
    _cancel(shop, member, cancelled.parcel_id)
    w = shop.wallet(member)
    assert (w["returned"], w["balance"]) == (3_600, 10_700) and adds_up(w), w

    # A second order, shipped, then refunded: 1,200 out and back.
    (refunded,) = parcels.split(_order(shop, member, 1))
    _ship(shop, refunded.parcel_id)
    w = shop.wallet(member)
    assert (w["spent"], w["balance"]) == (4_800, 9_500) and adds_up(w), w
    _refund(shop, member, refunded.parcel_id)
    w = shop.wallet(member)
    assert (w["returned"], w["balance"]) == (4_800, 10_700) and adds_up(w), w

    # The short-lived lot was spent, so its expiry costs nothing; a new one left unspent expires whole.
    ok(shop.grant(member, 500, expires_at=int(time.time()) + 2), 201)
    assert shop.wallet(member)["balance"] == 11_200
    w = wait_for(lambda: shop.wallet(member), lambda x: x["expired"] > 0, timeout=30)  # the lot's own expiry
    assert (w["granted"], w["spent"], w["returned"], w["expired"], w["balance"]) == (
        11_200, 4_800, 4_800, 500, 10_700), w
    assert adds_up(w)


# --- remote: the channel's own figure --------------------------------------------------------------------------

def _wallet(shop: Shop, member: str, fresh: bool = False) -> dict:
    return ok(requests.get(f"{shop.base_url}/api/{shop.code}/wallet", params={"fresh": "1"} if fresh else None,
                           headers=shop.auth(member), timeout=30))


def _asked(shop: Shop) -> int:
    with shop.fake._lock:
        return shop.fake.calls["points/balance"]


def test_remote_balance_is_the_channels_after_payment_cancel_and_refund(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=10_000)
    w = _wallet(shop, member)
    assert (w["points_mode"], w["balance"], w["stale"]) == ("remote", 10_000, False), w

    (cancelled,) = parcels.split(_order(shop, member, 3))
    assert _wallet(shop, member, fresh=True)["balance"] == shop.fake.balance(member) == 6_400
    _cancel(shop, member, cancelled.parcel_id)
    assert _wallet(shop, member, fresh=True)["balance"] == shop.fake.balance(member) == 10_000

    (refunded,) = parcels.split(_order(shop, member, 1))
    assert _wallet(shop, member, fresh=True)["balance"] == shop.fake.balance(member) == 8_800
    _ship(shop, refunded.parcel_id)
    _refund(shop, member, refunded.parcel_id)
    assert _wallet(shop, member, fresh=True)["balance"] == shop.fake.balance(member) == 10_000


def test_remote_balance_is_cached_at_most_max_age(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5_000)
    assert _wallet(shop, member)["balance"] == 5_000
    asked = _asked(shop)
    with shop.fake._lock:  # the member spends at the channel's own app: we are not told
        shop.fake.wallets[member] = 4_000
    cached = _wallet(shop, member)
    assert (cached["balance"], _asked(shop)) == (5_000, asked), cached  # within MAX_AGE: the cache answers

    # The cached answer turns MAX_AGE old (moved back in time rather than waited for): asked again.
    item = Member.get(shop.member_ids[member])
    item.update([Member.remote_points_at.set(float(item.remote_points_at) - remote_balance.MAX_AGE)])
    again = _wallet(shop, member)
    assert (again["balance"], _asked(shop)) == (4_000, asked + 1), again
    assert time.time() - again["as_of"] < remote_balance.MAX_AGE


def test_remote_balance_without_an_answer_is_the_last_known_marked_stale(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5_000)
    first = _wallet(shop, member)
    shop.fake.balance_mode = DOWN
    stale = _wallet(shop, member, fresh=True)
    assert (stale["balance"], stale["stale"], stale["as_of"]) == (5_000, True, first["as_of"]), stale
    shop.fake.balance_mode = NORMAL
    assert _wallet(shop, member, fresh=True)["stale"] is False


def test_an_older_answer_never_overwrites_a_newer_one(system, ops):
    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5_000)
    _wallet(shop, member)
    item = Member.get(shop.member_ids[member])
    newer = float(item.remote_points_at)
    remote_balance._keep(item, 1, newer - 1)  # an answer asked before the stored one lands late
    item = Member.get(shop.member_ids[member], consistent_read=True)
    assert (int(item.remote_points), float(item.remote_points_at)) == (5_000, newer)


def test_fresh_asks_are_bounded_per_member_and_minute(system, ops):
    """A page asking ``fresh`` in a loop cannot turn the channel's wallet into a load test: past
    ``FRESH_PER_MINUTE`` asks in a minute the cached answer (at most ``MAX_AGE`` old) is given."""
    from chalicelib.channels import channels

    shop = make_shop(system, ops, "remote")
    member = shop.member(points=5_000)
    channel = channels.get(shop.code)
    item = Member.get(shop.member_ids[member])
    minute = (int(time.time()) // 60 + 1) * 60 + 1.0  # one fixed minute, whatever the clock does meanwhile
    asked = _asked(shop)
    answers = [remote_balance.current(channel, item, fresh=True, now=minute + i / 100)
               for i in range(remote_balance.FRESH_PER_MINUTE + 5)]
    assert _asked(shop) - asked == remote_balance.FRESH_PER_MINUTE
    assert all(a["balance"] == 5_000 for a in answers)
