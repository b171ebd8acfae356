"""Refunds of shipped parcels (hosted points), over HTTP: the member asks with a reason, the supplier or ops
decide, ops refund any parcel. Points and quota go back, the goods do not; one refund per parcel however
many ask at once."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import requests

from checkout_helpers import Shop, assert_error, burst, make_shop, ok, uid
from chalicelib.checkout.models import Wallet
from chalicelib.core.models import Audit
from chalicelib.orders import parcels, refunds
from chalicelib.orders.models import Parcel
from chalicelib.partners.models import OutboxEvent

STOCK = 100_000


def shipped(shop: Shop, member: str, qty: int = 2) -> str:
    """A paid order of ``qty`` units, split and its one parcel shipped by the supplier; the parcel id."""
    placed = shop.place(requests.Session(), member, body=shop.body(qty=qty))
    assert placed.status == 201 and placed.body["status"] == "paid", placed.body
    (parcel,) = parcels.split(placed.order_id)
    ok(requests.post(f"{shop.base_url}/supplier/parcels/{parcel.parcel_id}/ship", timeout=30,
                     headers={"X-Api-Key": shop.supplier_key}, json={"carrier": "SF", "tracking_no": uid("SF")}))
    return parcel.parcel_id


def ask(shop: Shop, member: str, parcel_id: str, reason: str = "arrived broken",
        session: requests.Session | None = None) -> requests.Response:
    return (session or requests).post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/refund-requests",
                                      headers=shop.auth(member), json={"reason": reason}, timeout=60)


def supplier(shop: Shop, path: str, session: requests.Session | None = None, **body) -> requests.Response:
    return (session or requests).post(f"{shop.base_url}/supplier/refunds/{path}", json=body or None, timeout=60,
                                      headers={"X-Api-Key": shop.supplier_key})


def hosted_shop(system, ops) -> tuple[Shop, str]:
    shop = make_shop(system, ops, "hosted", stock=STOCK)
    member = shop.member()
    ok(shop.grant(member, 6000), 201)
    return shop, member


def test_a_refund_asked_and_approved_gives_points_and_quota_back_not_goods(system, ops):
    shop, member = hosted_shop(system, ops)
    parcel_id = shipped(shop, member, qty=2)
    assert shop.wallet(member)["balance"] == 6000 - 2400 and shop.quota()["spent"] == 2400

    asked = ok(ask(shop, member, parcel_id), 201)
    assert (asked["state"], asked["reason"], asked["points"]) == ("requested", "arrived broken", 2400)
    assert [l["points"] for l in asked["lines"]] == [2400]
    assert_error(ask(shop, member, parcel_id), 409, "refund_requested")  # one request per parcel
    listed = ok(requests.get(f"{shop.base_url}/supplier/refunds?state=requested", timeout=30,
                             headers={"X-Api-Key": shop.supplier_key}))["refunds"]
    assert [r["refund_id"] for r in listed] == [asked["refund_id"]]

    done = ok(supplier(shop, f"{asked['refund_id']}/approve"))
    assert done["state"] == "refunded" and done["decided_by"].startswith("supplier:")
    wallet = shop.wallet(member)
    assert wallet["balance"] == 6000 and shop.stock() == STOCK - 2  # the goods stay with the member
    w = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert (int(w.granted), int(w.spent), int(w.refunded), int(w.balance)) == (6000, 2400, 2400, 6000)
    quota = shop.quota()
    assert (quota["spent"], quota["remaining"]) == (0, quota["limit"])
    shop.assert_shards_balanced()
    parcel = Parcel.get(parcel_id, consistent_read=True)
    assert parcel.state == "refunded" and parcel.returned["quota"] == "returned"
    assert ok(requests.get(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/refund", headers=shop.auth(member),
                           timeout=30))["state"] == "refunded"
    assert OutboxEvent.get(f"evt_parcel.refunded_{parcel_id}").channel_code == shop.code
    assert [a.action for a in Audit.query(f"parcel#{parcel_id}")][-1] == "refund"
    assert_error(supplier(shop, f"{asked['refund_id']}/approve"), 409, "refund_refunded")
    assert_error(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "again"}), 409, "parcel_already_refunded")


def test_a_rejection_carries_its_reason_and_ops_may_still_refund(system, ops):
    shop, member = hosted_shop(system, ops)
    parcel_id = shipped(shop, member, qty=1)
    refund_id = ok(ask(shop, member, parcel_id, "changed my mind"), 201)["refund_id"]
    assert_error(supplier(shop, f"{refund_id}/reject"), 422, "validation_error")  # a reason is required
    rejected = ok(supplier(shop, f"{refund_id}/reject", reason="used, not faulty"))
    assert (rejected["state"], rejected["reject_reason"]) == ("rejected", "used, not faulty")
    seen = ok(requests.get(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/refund", headers=shop.auth(member),
                           timeout=30))
    assert (seen["state"], seen["reject_reason"]) == ("rejected", "used, not faulty")
    assert shop.wallet(member)["balance"] == 6000 - 1200 and Parcel.get(parcel_id).state == "shipped"
    assert_error(supplier(shop, f"{refund_id}/approve"), 409, "refund_rejected")

    done = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "goodwill"}))
    assert done["state"] == "refunded" and done["reject_reason"] is None
    assert shop.wallet(member)["balance"] == 6000 and shop.quota()["spent"] == 0


def test_refunds_are_only_for_shipped_parcels_and_their_own_people(system, ops):
    shop, member = hosted_shop(system, ops)
    placed = shop.place(requests.Session(), member)
    (parcel,) = parcels.split(placed.order_id)
    assert_error(ask(shop, member, parcel.parcel_id), 409, "parcel_not_shipped")
    assert_error(ops.post(f"/ops/parcels/{parcel.parcel_id}/refund", json={"reason": "x"}), 409, "parcel_not_shipped")
    parcel_id = shipped(shop, member)
    stranger = shop.member()
    assert_error(ask(shop, stranger, parcel_id), 404, "parcel_not_found")
    refund_id = ok(ask(shop, member, parcel_id), 201)["refund_id"]
    other = make_shop(system, ops, "hosted")  # another supplier
    assert_error(supplier(other, f"{refund_id}/approve"), 404, "refund_not_found")
    assert_error(requests.get(f"{shop.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/refund",
                              headers=shop.auth(member), timeout=30), 404, "refund_not_found")
    assert refunds.get(refund_id).state == "requested"


def test_two_hundred_concurrent_refunds_of_one_parcel_make_one_refund(system, ops):
    """Member requests, supplier approvals and ops refunds of one parcel, all at once: exactly one refund."""
    shop, member = hosted_shop(system, ops)
    parcel_id = shipped(shop, member, qty=3)
    refund_id = refunds.refund_id_for(parcel_id)
    headers = {"Authorization": ops.session.headers["Authorization"]}
    tasks = []
    for i in range(210):
        kind = i % 3
        if kind == 0:
            tasks.append(lambda s: ask(shop, member, parcel_id, session=s))
        elif kind == 1:
            tasks.append(lambda s: supplier(shop, f"{refund_id}/approve", session=s))
        else:
            tasks.append(lambda s: s.post(f"{shop.base_url}/ops/parcels/{parcel_id}/refund", headers=headers,
                                          json={"reason": "ops"}, timeout=60))
    answers = burst(system.base_url, tasks, 64)
    outcomes = {(r.status_code, (r.json().get("error") or {}).get("code") if r.status_code >= 300 else None)
                for r in answers}
    assert all(r.status_code < 500 for r in answers), [r.text for r in answers if r.status_code >= 500][:3]
    assert outcomes <= {(201, None), (200, None), (409, "refund_requested"), (409, "refund_approved"),
                        (409, "refund_refunded"), (404, "refund_not_found"), (409, "parcel_already_refunded")}, outcomes
    # The parcel's points came back once: the wallet, the quota and the events all say so.
    assert refunds.get(refund_id).state == "refunded"
    w = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert (int(w.refunded), int(w.balance)) == (3600, 6000)
    assert shop.quota()["spent"] == 0 and shop.stock() == STOCK - 3
    shop.assert_shards_balanced()
    assert sum(a.action == "refund" for a in Audit.query(f"parcel#{parcel_id}")) == 1
    assert OutboxEvent.get(f"evt_parcel.refunded_{parcel_id}")


def test_a_refund_after_the_period_closed_is_recorded_for_settlement(system, ops):
    """The order's period has ended: the points still come back to the member (as a lot that expired with
    the period), the closed period's quota is left as it was and the parcel records ``settlement``."""
    shop = make_shop(system, ops, "hosted", stock=STOCK, period_seconds=6)
    member = shop.member()
    ok(shop.grant(member, 2400), 201)
    parcel_id = shipped(shop, member, qty=1)
    before = shop.quota_item()
    time.sleep(max(0.0, shop.ends_at - time.time()) + 1)
    assert ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "late"}))["state"] == "refunded"
    returned = Parcel.get(parcel_id, consistent_read=True).returned
    assert (int(returned["points"]), returned["quota"], int(returned["expires_at"])) == (1200, "settlement",
                                                                                         shop.ends_at)
    after = shop.quota_item()
    assert (after.spent, after.remaining) == (before.spent, before.remaining) == (1200, before.limit - 1200)
    assert shop.wallet(member)["balance"] == 0  # swept: the refund lot expired with its period
    w = Wallet.get(shop.member_ids[member], consistent_read=True)
    assert int(w.granted) - int(w.spent) + int(w.refunded) - int(w.expired) == int(w.balance) == 0
    assert (int(w.refunded), int(w.expired)) == (1200, 1200 + 1200)  # the unspent grant and the refund


# --- issue 16 #9: who decides a refund follows who bears it; refunds after completion close -------------------

def test_a_refund_the_platform_bears_is_decided_by_ops_not_the_supplier(system, ops):
    """A supplier whose refunds the platform bears could approve a refund a member and it made up (a faked
    delivery) and have the platform pay: such refunds are ops' to decide."""
    shop, member = hosted_shop(system, ops)
    parcel_id = shipped(shop, member, qty=1)
    supplier_id = Parcel.get(parcel_id).supplier_id
    ok(ops.put(f"/ops/suppliers/{supplier_id}/refunds-borne-by", json={"borne_by": "platform"}))
    refund_id = ok(ask(shop, member, parcel_id), 201)["refund_id"]
    assert_error(supplier(shop, f"{refund_id}/approve"), 403, "refund_decided_by_ops")
    assert_error(supplier(shop, f"{refund_id}/reject", reason="no"), 403, "refund_decided_by_ops")
    assert refunds.get(refund_id).state == "requested" and shop.wallet(member)["balance"] == 6000 - 1200
    done = ok(ops.post(f"/ops/refunds/{refund_id}/approve"))
    assert done["state"] == "refunded" and shop.wallet(member)["balance"] == 6000

    ok(ops.put(f"/ops/suppliers/{supplier_id}/refunds-borne-by", json={"borne_by": "supplier"}))
    other = shipped(shop, member, qty=1)  # the supplier bears it again: its own to decide
    assert ok(supplier(shop, f"{ok(ask(shop, member, other), 201)['refund_id']}/approve"))["state"] == "refunded"


def test_a_refund_request_after_the_channels_window_from_completion_is_refused(system, ops):
    shop, member = hosted_shop(system, ops)
    assert ok(ops.get(f"/ops/channels/{shop.code}"))["refund_window_days"] == 15  # the default
    assert_error(ops.patch(f"/ops/channels/{shop.code}", json={"refund_window_days": 366}), 422, "validation_error")
    late, in_time = shipped(shop, member, qty=1), shipped(shop, member, qty=1)
    for parcel_id in (late, in_time):
        ok(requests.post(f"{shop.base_url}/api/{shop.code}/parcels/{parcel_id}/receipt", headers=shop.auth(member),
                         timeout=30))
    completed = Parcel.get(late, consistent_read=True).completed_at
    Parcel(late).update(actions=[Parcel.completed_at.set(  # completed long ago: the window has passed
        datetime.fromtimestamp(time.time() - 8 * 86400, timezone.utc).isoformat(timespec="milliseconds"))])
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"refund_window_days": 7}))
    assert_error(ask(shop, member, late), 409, "refund_window_closed")
    assert refunds.of_parcel(late) is None
    assert ok(ask(shop, member, in_time), 201)["state"] == "requested"  # completed just now: within the window
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"refund_window_days": 0}))  # no refunds after completion
    Parcel(late).update(actions=[Parcel.completed_at.set(completed)])
    assert_error(ask(shop, member, late), 409, "refund_window_closed")
