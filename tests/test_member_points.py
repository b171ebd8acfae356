"""A hosted channel reads a member's points in the mall (signed ``GET /partner/{code}/members/{id}/points``,
contract v2): the balance and its totals, the live lots with expiry, and the movements, newest first — as its
own app would show them. Over HTTP against the local system."""
from __future__ import annotations

import time

import requests

from checkout_helpers import assert_error, make_shop, ok, uid
from chalicelib.channels.signing import encode
from chalicelib.orders import parcels
from tools.sign import signed_request


def points_of(shop, external_id: str, secret: str | None = None) -> requests.Response:
    url, headers = signed_request(shop.base_url, secret or shop.secret, "GET",
                                  f"/partner/{shop.code}/members/{encode(external_id)}/points")
    return requests.get(url, headers=headers, timeout=30)


def test_a_hosted_member_s_balance_lots_and_movements(system, ops):
    shop = make_shop(system, ops, "hosted")
    member = shop.member(uid("张-"))  # any member id entry takes: percent-encoded in the path, signed so
    soon, later = int(time.time()) + 600, shop.ends_at
    ok(shop.grant(member, 5_000, expires_at=later, grant_id="g-later"), 201)
    ok(shop.grant(member, 3_000, expires_at=soon, grant_id="g-soon"), 201)
    placed = shop.place(requests.Session(), member, body=shop.body(qty=2))
    assert placed.status == 201, placed.body
    spent = int(placed.body["points"])
    (parcel,) = parcels.split(placed.order_id)
    ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel", json={},
                     headers=shop.auth(member), timeout=30))

    seen = ok(points_of(shop, member))
    assert seen["member_id"] == member
    assert (seen["granted"], seen["spent"], seen["refunded"], seen["expired"]) == (8_000, spent, spent, 0)
    assert seen["balance"] == 8_000 == ok(requests.get(f"{shop.base_url}/api/{shop.code}/wallet",
                                                       headers=shop.auth(member), timeout=30))["balance"]
    assert sum(l["points"] for l in seen["lots"]) == seen["balance"]
    # checkout took from the lot expiring soonest first; the cancel gave the points back as a lot of their own
    left = {l["lot_id"]: l["points"] for l in seen["lots"]}
    expected = {"g-soon": 3_000 - min(spent, 3_000), "g-later": 5_000 - max(0, spent - 3_000),
                f"refund:{parcel.parcel_id}": spent}
    assert left == {k: v for k, v in expected.items() if v}, (left, spent)
    assert [l["expires_at"] for l in seen["lots"]] == sorted(l["expires_at"] for l in seen["lots"])
    kinds = [(m["kind"], m["points"]) for m in seen["movements"]]
    assert sorted(kinds) == sorted([("grant", 5_000), ("grant", 3_000), ("redeem", -spent), ("cancel", spent)])
    assert [m["at"] for m in seen["movements"]] == sorted((m["at"] for m in seen["movements"]), reverse=True)
    assert sum(p for _, p in kinds) == seen["balance"]
    grant = next(m for m in seen["movements"] if m.get("grant_id") == "g-soon")
    assert grant["expires_at"] == soon


def test_member_points_are_signed_the_channel_s_own_and_hosted_only(system, ops):
    shop, other, remote = (make_shop(system, ops, mode) for mode in ("hosted", "hosted", "remote"))
    member = shop.member()
    ok(shop.grant(member, 100), 201)
    assert_error(points_of(shop, member, secret="forged"), 401, "bad_signature")
    assert_error(points_of(other, member), 404, "member_not_found")  # another channel never sees it
    assert_error(points_of(shop, uid("nobody-")), 404, "member_not_found")
    remote_member = remote.member(points=500)
    assert_error(points_of(remote, remote_member), 409, "points_not_hosted")
