"""Hosted points: signed grants from the channel's server, the per-member cap, the channel quota,
idempotent grant ids, expiry — sequentially and under 500 concurrent grants."""
from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from checkout_helpers import Shop, assert_error, burst, burst_shop, ok, uid
from chalicelib.channels.signing import body_sha256, sign
from chalicelib.checkout.models import Grant, Wallet
from chalicelib.checkout.wallets import sweep


def wallet_item(shop: Shop, member: str) -> Wallet:
    return Wallet.get(shop.member_ids[member], consistent_read=True)


def test_grant_is_idempotent_by_grant_id(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    first = shop.grant(member, 3000, grant_id="g-1")
    body = ok(first, 201)
    assert (body["grant_id"], body["points"], body["created"]) == ("g-1", 3000, True)
    replay = shop.grant(member, 3000, grant_id="g-1")
    assert ok(replay, 200) == {**body, "created": False}
    assert_error(shop.grant(member, 3001, grant_id="g-1"), 409, "grant_id_reused")
    assert_error(shop.grant(shop.member(), 3000, grant_id="g-1"), 409, "grant_id_reused")
    assert_error(shop.grant(member, 3000, grant_id="g-1", expires_at=shop.ends_at - 1), 409, "grant_id_reused")
    assert shop.wallet(member)["balance"] == 3000
    assert shop.quota()["granted"] == 3000


def test_grant_validation(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    assert_error(shop.grant(member, 100, expires_at=shop.ends_at + 1), 422, "expiry_after_period_end")
    assert_error(shop.grant(member, 100, expires_at=int(time.time()) - 5), 422, "validation_error")
    assert_error(shop.grant(member, 0), 422, "validation_error")
    remote = burst_shop(pooled, ops, "remote")
    assert_error(remote.grant("anyone", 100), 409, "not_hosted_mode")
    assert shop.wallet(member)["granted"] == 0 and shop.quota()["granted"] == 0


def test_member_cap_refuses_and_never_trims(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted", cap=10_000)
    member = shop.member()
    ok(shop.grant(member, 6000), 201)
    assert_error(shop.grant(member, 5000), 409, "member_cap_exceeded")
    assert_error(shop.grant(shop.member(), 10_001), 409, "member_cap_exceeded")
    assert shop.wallet(member)["balance"] == 6000  # nothing trimmed in
    ok(shop.grant(member, 4000), 201)
    assert shop.wallet(member)["balance"] == 10_000
    assert shop.quota()["granted"] == 10_000
    # Spending makes room under the cap again.
    assert shop.place(ops.session, member).status == 201
    ok(shop.grant(member, 1200), 201)
    assert_error(shop.grant(member, 1), 409, "member_cap_exceeded")


@pytest.mark.parametrize("shards", [1, 4])
def test_grants_never_exceed_the_channel_quota(pooled, ops, shards):
    """With 4 shards of 5,000, the 15,000 grant takes three shards' grant room in one transaction."""
    shop = burst_shop(pooled, ops, "hosted", quota=20_000, shards=shards)
    a, b = shop.member(), shop.member()
    ok(shop.grant(a, 15_000), 201)
    assert_error(shop.grant(b, 6000), 409, "grant_quota_exhausted")
    ok(shop.grant(b, 5000), 201)
    assert_error(shop.grant(b, 1), 409, "grant_quota_exhausted")
    quota = shop.quota()
    assert (quota["granted"], quota["grant_room"]) == (20_000, 0)
    # Raising the quota gives grant room too.
    ok(ops.post(f"/ops/channels/{shop.code}/periods/{shop.period_id}/raise", json={"points": 1000}))
    ok(shop.grant(b, 1000), 201)  # with 4 shards the raise gave each 250: this grant spans all four
    assert shop.quota()["granted"] == 21_000
    assert [int(q.grant_room) for q in shop.assert_shards_balanced()] == [0] * shards


def test_partner_signature_is_checked(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    assert_error(shop.grant(member, 100, secret="not-the-secret"), 401, "bad_signature")
    payload = {"grant_id": uid("g-"), "member_id": member, "points": 100, "expires_at": shop.ends_at}
    body = json.dumps(payload).encode()
    grants, quota = f"/partner/{shop.code}/grants", f"/partner/{shop.code}/quota"  # contract v2 signs these
    params = {"timestamp": str(int(time.time()) - 400), "nonce": secrets.token_hex(12), "body_sha256": body_sha256(body)}
    r = requests.post(f"{pooled.base_url}{grants}", data=body, timeout=30, headers={
        "X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
        "X-Sign": sign(params, shop.secret, "POST", grants)})
    assert_error(r, 401, "timestamp_expired")
    params = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(12), "body_sha256": body_sha256(body)}
    headers = {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
               "X-Sign": sign(params, shop.secret, "POST", grants)}
    assert requests.post(f"{pooled.base_url}/partner/{shop.code}/grants", data=body, headers=headers,
                         timeout=30).status_code == 201
    replayed = requests.post(f"{pooled.base_url}/partner/{shop.code}/grants", data=body, headers=headers, timeout=30)
    assert_error(replayed, 401, "nonce_replayed")
    # A body changed after signing.
    tampered = body.replace(b'"points": 100', b'"points": 900')
    headers["X-Nonce"] = params["nonce"] = secrets.token_hex(12)
    headers["X-Sign"] = sign(params, shop.secret, "POST", grants)
    r = requests.post(f"{pooled.base_url}/partner/{shop.code}/grants", data=tampered, headers=headers, timeout=30)
    assert_error(r, 401, "bad_signature")
    assert shop.wallet(member)["granted"] == 100
    # The channel reads its quota with a signed GET (no body, so no body_sha256).
    params = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    r = requests.get(f"{pooled.base_url}{quota}", timeout=30, headers={
        "X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
        "X-Sign": sign(params, shop.secret, "GET", quota)})
    assert ok(r)["granted"] == 100
    # Version 2: a signature for one route (or an entry link's) never authorises another.
    params = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    r = requests.get(f"{pooled.base_url}{quota}", timeout=30, headers={
        "X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"], "X-Sign": sign(params, shop.secret)})
    assert_error(r, 401, "bad_signature")


def test_concurrent_grants_never_exceed_the_member_cap(pooled, ops):
    """200 grants of 100, 100 at a time, against a cap of 5,000: exactly 50."""
    shop = burst_shop(pooled, ops, "hosted", cap=5000)
    member = shop.member()
    results = burst(pooled.base_url, [lambda s: shop.grant(member, 100, session=s) for _ in range(200)], 100)
    counts = {}
    for r in results:
        key = (r.status_code, r.json().get("error", {}).get("code") if r.status_code >= 400 else None)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {(201, None): 50, (409, "member_cap_exceeded"): 150}, counts
    wallet = wallet_item(shop, member)
    assert (int(wallet.balance), int(wallet.granted), len(wallet.lots.as_dict())) == (5000, 5000, 50)
    assert shop.quota()["granted"] == 5000


@pytest.mark.parametrize("shards", [1, 3])
def test_concurrent_grants_never_exceed_the_quota(pooled, ops, shards):
    """200 grants of 100, 100 at a time, on a quota of 10,000. With 3 shards (3,334 + 3,333 + 3,333) no shard
    holds a whole number of 100-point grants: the last ones must take grant room from two shards at once, and
    still exactly 100 of 200 get through."""
    shop = burst_shop(pooled, ops, "hosted", quota=10_000, cap=100_000, shards=shards)
    members = shop.members(50)
    results = burst(pooled.base_url, [lambda s, m=members[i % 50]: shop.grant(m, 100, session=s)
                                      for i in range(200)], 100)
    counts = {}
    for r in results:
        key = (r.status_code, r.json().get("error", {}).get("code") if r.status_code >= 400 else None)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {(201, None): 100, (409, "grant_quota_exhausted"): 100}, counts
    quota = shop.quota()
    assert (quota["granted"], quota["grant_room"]) == (10_000, 0)
    assert sum(int(wallet_item(shop, m).granted) for m in members) == 10_000
    grants = [g for g in Grant.scan(Grant.grant_key.startswith(f"{shop.code}#"))]
    assert len(grants) == 100 and sum(int(g.points) for g in grants) == 10_000
    assert [int(q.grant_room) for q in shop.assert_shards_balanced()] == [0] * shards


@pytest.mark.parametrize("quota,shards", [(10_000_000, None), (700, 2)], ids=["plenty", "the-whole-quota"])
def test_concurrent_replays_of_one_grant_credit_once(pooled, ops, quota, shards):
    """Also when the grant takes the whole quota (two shards of 350): its replays answer it, not
    ``grant_quota_exhausted``."""
    shop = burst_shop(pooled, ops, "hosted", quota=quota, shards=shards)
    member = shop.member()
    results = burst(pooled.base_url, [lambda s: shop.grant(member, 700, grant_id="same", session=s)
                                      for _ in range(100)], 50)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 99 + [201], statuses
    assert shop.wallet(member)["balance"] == 700 and shop.quota()["granted"] == 700


def test_expired_points_cannot_be_spent(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    ok(shop.grant(member, 5000, expires_at=int(time.time()) + 2), 201)
    assert shop.wallet(member)["balance"] == 5000
    time.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 1.1)
    a = shop.place(ops.session, member)
    assert (a.status, a.code) == (409, "insufficient_points"), a.body
    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["granted"], wallet["spent"], wallet["expired"]) == (0, 5000, 0, 5000), wallet
    item = wallet_item(shop, member)
    assert int(item.balance) == 0 and int(item.granted) - int(item.spent) - int(item.expired) == 0
    assert sweep(shop.member_ids[member]) == 0  # already swept by the wallet view
    assert shop.quota()["spent"] == 0 and not shop.orders()


def test_spending_takes_the_soonest_expiring_points_first(pooled, ops):
    shop = burst_shop(pooled, ops, "hosted")
    member = shop.member()
    soon, late = int(time.time()) + 3, shop.ends_at
    ok(shop.grant(member, 1000, expires_at=soon, grant_id="soon"), 201)
    ok(shop.grant(member, 5000, expires_at=late, grant_id="late"), 201)
    wallet = shop.wallet(member)
    assert wallet["balance"] == 6000 and wallet["expiring_soon"][0] == {"points": 1000, "expires_at": soon}
    assert shop.place(ops.session, member).status == 201  # 1200: 1000 from "soon", 200 from "late"
    lots = wallet_item(shop, member).lots.as_dict()
    assert (int(lots["soon"]["left"]), int(lots["late"]["left"])) == (0, 4800)
    time.sleep(max(0.0, soon - time.time()) + 0.2)
    assert sweep(shop.member_ids[member]) == 0  # the expired lot was already empty: nothing lost
    wallet = shop.wallet(member)
    assert (wallet["balance"], wallet["spent"], wallet["expired"]) == (4800, 1200, 0), wallet
