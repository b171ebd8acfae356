"""Parcels over HTTP on the local stack: split per supplier, ship, receipt, cancel (stock, points and quota
back), the derived order state and its events, who may see what, and racing ship/cancel on one parcel.

The split is called in the test process (the app runs in-process on the same tables), as the workflow's
``fulfil_split`` task does."""
from __future__ import annotations

import base64
import json
import time
from collections import Counter

import pytest
import requests

from checkout_helpers import PRICE, SETTLEMENT, Shop, assert_error, burst, make_shop, ok, uid
from helpers import supplier_client, wait_for
from chalicelib.checkout.models import Wallet
from chalicelib.core import audit
from chalicelib.orders import orders, parcels
from chalicelib.orders.models import Order, Parcel
from chalicelib.orders import refunds
from chalicelib.partners import events
from chalicelib.partners.models import OutboxEvent
from chalicelib.supply.models import Stock

ADDRESS = {"name": "Han Meimei", "phone": "+86 139 0000 0000", "lines": ["1 Tea Street", "Hangzhou"]}
PRICE_B = 3000


class CartShop:
    """A hosted cart channel selling goods of two suppliers (A: the shop's own goods, B: a second one)."""

    def __init__(self, system, ops, points_mode: str = "hosted", sandbox: bool = False,
                 period_seconds: int = 3600) -> None:
        self.shop: Shop = make_shop(system, ops, points_mode, sandbox=sandbox, period_seconds=period_seconds)
        ok(ops.patch(f"/ops/channels/{self.shop.code}", json={"cart_enabled": True}))
        created = ok(ops.post("/ops/suppliers", json={
            "name": f"Supplier {uid()}", "contact_name": "Wei", "phone": "+86 138 0000 0001",
            "licence_no": uid("LIC-"),
            "bank_account": {"bank": "ICBC", "account_name": "Wei", "account_no": "6222 0000 1111 3333"}}), 201)
        self.key_b = created["api_key"]
        self.supplier_b = created["supplier"]["supplier_id"]
        goods = ok(requests.post(f"{system.base_url}/supplier/goods", headers={"X-Api-Key": self.key_b}, json={
            "ref": uid("ref-"), "title": "Silk scarf", "category": "fashion",
            "skus": [{"sku_id": "B1", "spec": "blue", "settlement_price": 2500, "stock": 1000}]}, timeout=30), 201)
        self.goods_b = goods["goods_id"]
        ok(ops.post(f"/ops/goods/{self.goods_b}/approve", json={"base_prices": {"B1": PRICE_B}}))
        ok(ops.put(f"/ops/channels/{self.shop.code}/pool/{self.goods_b}", json={"prices": {}}))
        self.sup_a = supplier_client(system, self.shop.supplier_key)
        self.sup_b = supplier_client(system, self.key_b)

    def order(self, address: dict | None = ADDRESS, points: int = 100_000) -> tuple[str, str]:
        """A member with points and its paid two-supplier order (2 of A's goods, 1 of B's); (member, order id)."""
        shop = self.shop
        member = shop.member()
        if shop.points_mode == "hosted":
            assert shop.grant(member, points).status_code == 201
        body = {"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id, "qty": 2},
                          {"goods_id": self.goods_b, "sku_id": "B1", "qty": 1}], "password": "246810"}
        if address is not None:
            body["address"] = address
        attempt = shop.place(requests.Session(), member, body=body)
        assert attempt.status == 201, attempt.body
        return member, attempt.order_id

    def member_order(self, member: str, order_id: str) -> dict:
        return ok(requests.get(f"{self.shop.base_url}/api/{self.shop.code}/orders/{order_id}",
                               headers=self.shop.auth(member), timeout=30))

    def member_post(self, member: str, path: str) -> requests.Response:
        return requests.post(f"{self.shop.base_url}/api/{self.shop.code}{path}", headers=self.shop.auth(member),
                             timeout=30)


@pytest.fixture(scope="module")
def cart(system, ops) -> CartShop:
    return CartShop(system, ops)


def _event(kind: str, subject: str) -> OutboxEvent | None:
    try:
        return OutboxEvent.get(events.event_id(kind, subject), consistent_read=True)
    except OutboxEvent.DoesNotExist:
        return None


def _stock(goods_id: str, sku_id: str) -> int:
    return int(Stock.get(goods_id, sku_id, consistent_read=True).stock)


def _ship(sup, parcel_id: str, tracking: str | None = None) -> requests.Response:
    return sup.post(f"/supplier/parcels/{parcel_id}/ship",
                    json={"carrier": "SF Express", "tracking_no": tracking or uid("SF")})


def test_split_writes_one_parcel_per_supplier_once(cart: CartShop) -> None:
    member, order_id = cart.order()
    before = cart.member_order(member, order_id)
    assert before["address"] == ADDRESS
    first = parcels.split(order_id)
    assert [p.parcel_id for p in first] == [f"{order_id}-1", f"{order_id}-2"]
    by_supplier = {p.supplier_id: p for p in first}
    points = sorted(int(p.points) for p in first)
    assert points == sorted([2 * PRICE, PRICE_B])  # 100 points per yuan: each line's points as charged
    assert sum(int(p.amount) for p in first) == 2 * PRICE + PRICE_B
    b = by_supplier[cart.supplier_b]
    [line] = [l.as_dict() if hasattr(l, "as_dict") else dict(l) for l in b.lines]
    assert line == {"goods_id": cart.goods_b, "sku_id": "B1", "qty": 1, "price": PRICE_B, "settlement_price": 2500,
                    "points": PRICE_B, "title": "Silk scarf", "spec": "blue"}
    assert all(p.state == "awaiting_shipment" for p in first)

    paid = _event("order.paid", order_id)
    assert paid is not None
    again = parcels.split(order_id)  # a re-run writes nothing new and answers the same parcels
    assert [(p.parcel_id, p.updated_at) for p in again] == [(p.parcel_id, p.updated_at) for p in first]
    assert _event("order.paid", order_id).created_at == paid.created_at
    payload = json.loads(paid.payload)
    assert [p["name"] for p in payload["data"]["parcels"]] == ["Parcel 1 of 2", "Parcel 2 of 2"]
    assert "settlement_price" not in json.dumps(payload) and "supplier" not in json.dumps(payload)

    view = cart.member_order(member, order_id)
    assert view["state"] == "paid" and view["status"] == "paid"
    assert [(p["name"], p["state"]) for p in view["parcels"]] == [("Parcel 1 of 2", "awaiting_shipment"),
                                                                  ("Parcel 2 of 2", "awaiting_shipment")]
    assert "settlement_price" not in json.dumps(view["parcels"])


def test_the_workflow_splits_a_paid_cart_order(cart: CartShop) -> None:
    """Checkout starts the order's execution; its Split task writes the parcels (no split call here)."""
    member, order_id = cart.order()
    view = wait_for(lambda: cart.member_order(member, order_id), lambda v: len(v["parcels"]) == 2, timeout=30)
    assert view["state"] == "paid" and view["address"] == ADDRESS
    assert "address" not in orders.view(Order.get(order_id))  # what the channel's server reads: no ship-to
    assert _event("order.paid", order_id) is not None


def test_order_view_before_split_shows_checkout_status(cart: CartShop) -> None:
    _, order_id = cart.order(address=None)  # the workflow may split it at once: the view is judged unsplit
    view = orders.member_view(Order.get(order_id), parcels=[])
    assert (view["state"], view["status"], view["parcels"], view["address"]) == ("paid", "paid", [], None)


def test_ship_receipt_states_events_and_audit(cart: CartShop) -> None:
    member, order_id = cart.order()
    p1, p2 = parcels.split(order_id)
    sups = {cart.supplier_b: cart.sup_b}
    own_b = p1 if p1.supplier_id == cart.supplier_b else p2
    own_a = p2 if own_b is p1 else p1
    sups[own_a.supplier_id] = cart.sup_a

    # another supplier's parcel is not there for it
    assert_error(cart.sup_b.get(f"/supplier/parcels/{own_a.parcel_id}"), 404, "parcel_not_found")
    assert_error(_ship(cart.sup_b, own_a.parcel_id), 404, "parcel_not_found")
    assert_error(cart.member_post(member, f"/parcels/{own_a.parcel_id}/receipt"), 409, "parcel_not_shipped")

    detail = ok(cart.sup_a.get(f"/supplier/parcels/{own_a.parcel_id}"))
    assert detail["ship_to"] == ADDRESS and detail["state"] == "awaiting_shipment"
    assert detail["lines"][0]["settlement_price"] == SETTLEMENT

    shipped = ok(_ship(cart.sup_a, own_a.parcel_id, "SF0001"))
    assert (shipped["state"], shipped["carrier"], shipped["tracking_no"]) == ("shipped", "SF Express", "SF0001")
    assert_error(_ship(cart.sup_a, own_a.parcel_id), 409, "parcel_already_shipped")
    assert cart.member_order(member, order_id)["state"] == "partially_shipped"
    event = json.loads(_event("parcel.shipped", own_a.parcel_id).payload)["data"]
    assert (event["tracking_no"], event["order_state"]) == ("SF0001", "partially_shipped")
    assert _event("order.partially_shipped", order_id) is not None
    assert _event("order.shipped", order_id) is None

    ok(_ship(cart.sup_b, own_b.parcel_id))
    view = cart.member_order(member, order_id)
    assert view["state"] == "shipped"
    assert {p["tracking_no"] for p in view["parcels"]} >= {"SF0001"}
    assert _event("order.shipped", order_id) is not None

    done = ok(cart.member_post(member, f"/parcels/{own_a.parcel_id}/receipt"))
    assert done["state"] == "shipped"  # one parcel completed, the other still on its way
    assert_error(cart.member_post(member, f"/parcels/{own_a.parcel_id}/receipt"), 409, "parcel_already_completed")
    assert parcels.complete_shipped(order_id) == [own_b.parcel_id]  # the receipt window's end: the rest
    assert parcels.complete_shipped(order_id) == []
    assert cart.member_order(member, order_id)["state"] == "completed"
    assert _event("order.completed", order_id) is not None

    trail = audit.history(f"parcel#{own_a.parcel_id}")
    assert [(r["actor"], r["action"], r["old"], r["new"]) for r in trail] == [
        (f"supplier:{own_a.supplier_id}", "ship", "awaiting_shipment", "shipped"),
        (f"member:{cart.shop.member_ids[member]}", "complete", "shipped", "completed")]


def _ledger(wallet: Wallet) -> None:
    assert int(wallet.granted) - int(wallet.spent) + int(wallet.refunded or 0) - int(wallet.expired) == int(
        wallet.balance)


def test_member_cancels_an_unshipped_parcel_and_gets_everything_back(cart: CartShop) -> None:
    shop = cart.shop
    member, order_id = cart.order()
    member_id = shop.member_ids[member]
    parcel_a, parcel_b = sorted(parcels.split(order_id), key=lambda p: p.supplier_id != cart.supplier_b)
    stock_b, quota = _stock(cart.goods_b, "B1"), shop.quota_item()
    wallet = Wallet.get(member_id, consistent_read=True)

    view = ok(cart.member_post(member, f"/parcels/{parcel_a.parcel_id}/cancel"))
    assert view["state"] == "paid"  # the other parcel still awaits shipment
    cancelled = next(p for p in view["parcels"] if p["parcel_id"] == parcel_a.parcel_id)
    assert cancelled["state"] == "cancelled" and cancelled["can_cancel"] is False
    assert cancelled["returned"]["points"] == PRICE_B and cancelled["returned"]["quota"] == "returned"
    assert cancelled["returned"]["expires_at"] == shop.ends_at and cancelled["returned"]["points_expired"] is False

    assert _stock(cart.goods_b, "B1") == stock_b + 1
    after = shop.quota_item()
    assert (after.spent, after.remaining) == (quota.spent - PRICE_B, quota.remaining + PRICE_B)
    shop.assert_shards_balanced()
    back = Wallet.get(member_id, consistent_read=True)
    assert int(back.balance) == int(wallet.balance) + PRICE_B and int(back.refunded or 0) == PRICE_B
    assert back.lots.as_dict()[f"refund:{parcel_a.parcel_id}"] == {"left": PRICE_B, "expires_at": shop.ends_at}
    _ledger(back)
    assert shop.wallet(member)["balance"] == int(back.balance)  # spendable again

    assert_error(cart.member_post(member, f"/parcels/{parcel_a.parcel_id}/cancel"), 409, "parcel_already_cancelled")
    ok(_ship(cart.sup_a, parcel_b.parcel_id))
    assert_error(cart.member_post(member, f"/parcels/{parcel_b.parcel_id}/cancel"), 409, "parcel_already_shipped")
    assert_error(_ship(cart.sup_b, parcel_a.parcel_id), 409, "parcel_already_cancelled")
    assert cart.member_order(member, order_id)["state"] == "shipped"  # the live parcel is all on its way
    assert _event("order.shipped", order_id) is not None

    # another member cannot touch the parcel
    other = shop.member()
    assert_error(cart.member_post(other, f"/parcels/{parcel_b.parcel_id}/receipt"), 404, "parcel_not_found")


def test_a_cancel_after_the_period_ended_is_settled_and_its_points_expire_at_once(system, ops) -> None:
    """The documented rule: the refund lot expires with the order's period; once that has ended the points
    still come back (``refunded``) and expire at once, and the closed period's quota is left for settlement."""
    late = CartShop(system, ops, period_seconds=8)
    member, order_id = late.order()
    parcel = parcels.split(order_id)[0]
    quota = late.shop.quota_item()
    time.sleep(max(0.0, late.shop.ends_at - time.time()) + 1)
    view = ok(late.member_post(member, f"/parcels/{parcel.parcel_id}/cancel"))
    returned = next(p for p in view["parcels"] if p["parcel_id"] == parcel.parcel_id)["returned"]
    assert (returned["points"], returned["quota"]) == (int(parcel.points), "settlement")
    assert (returned["expires_at"], returned["points_expired"]) == (late.shop.ends_at, True)
    after = late.shop.quota_item()
    assert (after.spent, after.remaining) == (quota.spent, quota.remaining)  # the closed period is untouched
    wallet = Wallet.get(late.shop.member_ids[member], consistent_read=True)
    assert int(wallet.refunded) == int(parcel.points)
    _ledger(wallet)
    assert late.shop.wallet(member)["balance"] == 0  # every lot of the period, the refund's too, has expired
    swept = Wallet.get(late.shop.member_ids[member], consistent_read=True)
    assert int(swept.expired) == int(swept.granted) - int(swept.spent) + int(swept.refunded)
    _ledger(swept)


def test_cancelling_every_parcel_cancels_the_order(cart: CartShop) -> None:
    member, order_id = cart.order()
    for parcel in parcels.split(order_id):
        ok(cart.member_post(member, f"/parcels/{parcel.parcel_id}/cancel"))
    assert cart.member_order(member, order_id)["state"] == "cancelled"
    assert _event("order.cancelled", order_id) is not None
    _ledger(Wallet.get(cart.shop.member_ids[member], consistent_read=True))


def test_shipping_deadline_cancels_only_the_unshipped(cart: CartShop) -> None:
    member, order_id = cart.order()
    parcel_a, parcel_b = sorted(parcels.split(order_id), key=lambda p: p.supplier_id == cart.supplier_b)
    ok(_ship(cart.sup_a, parcel_a.parcel_id))
    stock_b = _stock(cart.goods_b, "B1")
    assert refunds.expire_unshipped(order_id) == [parcel_b.parcel_id]
    assert refunds.expire_unshipped(order_id) == []  # a re-run changes nothing
    assert _stock(cart.goods_b, "B1") == stock_b + 1
    assert cart.member_order(member, order_id)["state"] == "shipped"
    assert audit.history(f"parcel#{parcel_b.parcel_id}")[-1]["actor"] == "system:shipping_deadline"


def test_supplier_lists_own_parcels_paged_and_filtered(cart: CartShop) -> None:
    ids = []
    for _ in range(3):
        _, order_id = cart.order()
        ids.append(next(p.parcel_id for p in parcels.split(order_id) if p.supplier_id == cart.supplier_b))
    ok(_ship(cart.sup_b, ids[0]))
    seen, cursor = [], None
    while True:
        page = ok(cart.sup_b.get("/supplier/parcels", params={"limit": 2, **({"cursor": cursor} if cursor else {})}))
        assert len(page["items"]) <= 2
        seen += [p["parcel_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
    assert all(Parcel.get(pid).supplier_id == cart.supplier_b for pid in seen)
    assert all("ship_to" not in p for p in page["items"])

    shipped = ok(cart.sup_b.get("/supplier/parcels", params={"state": "shipped", "limit": 100}))["items"]
    assert ids[0] in {p["parcel_id"] for p in shipped} and all(p["state"] == "shipped" for p in shipped)
    today = Parcel.get(ids[0]).created_at[:10]
    dated = ok(cart.sup_b.get("/supplier/parcels", params={"since": today, "until": today, "limit": 100}))["items"]
    assert set(ids) <= {p["parcel_id"] for p in dated}
    assert ok(cart.sup_b.get("/supplier/parcels", params={"until": "2000-01-01"}))["items"] == []

    assert_error(cart.sup_b.get("/supplier/parcels", params={"state": "lost"}), 422, "validation_error")
    assert_error(cart.sup_b.get("/supplier/parcels", params={"since": "yesterday"}), 422, "validation_error")
    assert_error(cart.sup_b.get("/supplier/parcels", params={"limit": "0"}), 422, "validation_error")
    assert_error(cart.sup_b.get("/supplier/parcels", params={"cursor": "not-a-cursor"}), 400, "invalid_cursor")
    # a cursor naming another supplier's index position is refused, not followed
    forged = {"parcel_id": {"S": ids[0]}, "supplier_id": {"S": "someone-else"}, "created_at": {"S": "2026"}}
    token = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
    assert_error(cart.sup_b.get("/supplier/parcels", params={"cursor": token}), 400, "invalid_cursor")
    theirs = ok(cart.sup_a.get("/supplier/parcels", params={"limit": 100}))["items"]
    assert not set(ids) & {p["parcel_id"] for p in theirs}


def test_sandbox_parcels_never_reach_a_supplier(system, ops) -> None:
    sandbox = CartShop(system, ops, sandbox=True)
    member, order_id = sandbox.order()
    split = parcels.split(order_id)
    assert len(split) == 2 and all(p.sandbox for p in split)
    assert _event("order.paid", order_id).sandbox is True
    for parcel in split:
        sup = sandbox.sup_b if parcel.supplier_id == sandbox.supplier_b else sandbox.sup_a
        assert_error(sup.get(f"/supplier/parcels/{parcel.parcel_id}"), 404, "parcel_not_found")
        assert_error(_ship(sup, parcel.parcel_id), 404, "parcel_not_found")
    assert ok(sandbox.sup_b.get("/supplier/parcels"))["items"] == []
    assert [p["state"] for p in sandbox.member_order(member, order_id)["parcels"]] == ["awaiting_shipment"] * 2


@pytest.mark.parametrize("address,field", [
    ({"name": "", "phone": "+86 139 0000 0000", "lines": ["x"]}, "name"),
    ({"name": "Han", "phone": "call me", "lines": ["x"]}, "phone"),
    ({"name": "Han", "phone": "+86 139 0000 0000", "lines": []}, "lines"),
    ({"name": "Han", "phone": "+86 139 0000 0000", "lines": ["x" * 121]}, "lines"),
    ({"name": "Han", "phone": "+86 139 0000 0000", "lines": ["a"] * 5}, "lines"),
    ({"name": "Han", "phone": "+86 139 0000 0000", "lines": ["x"], "email": "a@b.c"}, "email"),
])
def test_address_is_validated(cart: CartShop, address: dict, field: str) -> None:
    shop = cart.shop
    member = shop.member()
    response = requests.post(f"{shop.base_url}/api/{shop.code}/orders", json={**shop.body(), "address": address},
                             headers={**shop.auth(member), "Idempotency-Key": uid("key-")}, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error.get("field", ""), error


def test_remote_mode_cancel_gives_the_points_back_through_the_channel(system, ops) -> None:
    remote = CartShop(system, ops, points_mode="remote")
    member = remote.shop.member(points=100_000)
    remote.shop.fake.member(member, "246810", 100_000)
    body = {"lines": [{"goods_id": remote.shop.goods_id, "sku_id": remote.shop.sku_id, "qty": 1}],
            "password": "246810", "address": ADDRESS}
    attempt = remote.shop.place(requests.Session(), member, body=body)
    assert attempt.status == 201 and attempt.body["status"] == "paid", attempt.body
    [parcel] = parcels.split(attempt.order_id)
    stock = _stock(remote.shop.goods_id, remote.shop.sku_id)
    assert remote.shop.fake.balance(member) == 100_000 - 1200
    assert remote.member_post(member, f"/parcels/{parcel.parcel_id}/cancel").status_code == 200
    assert Parcel.get(parcel.parcel_id, consistent_read=True).state == "cancelled"
    assert _stock(remote.shop.goods_id, remote.shop.sku_id) == stock + 1
    assert remote.shop.fake.balance(member) == 100_000 and remote.shop.fake.refunded_total() == 1200


def test_racing_ship_and_cancel_on_one_parcel_one_wins(cart: CartShop) -> None:
    shop = cart.shop
    member, order_id = cart.order()
    parcel = next(p for p in parcels.split(order_id) if p.supplier_id == cart.supplier_b)
    stock, wallet = _stock(cart.goods_b, "B1"), Wallet.get(shop.member_ids[member], consistent_read=True)
    base = shop.base_url

    def ship(i: int):
        return lambda s: s.post(f"{base}/supplier/parcels/{parcel.parcel_id}/ship", timeout=60,
                                headers={"X-Api-Key": cart.key_b},
                                json={"carrier": "SF Express", "tracking_no": f"SF{i:06d}"})

    def cancel(s):
        return s.post(f"{base}/api/{shop.code}/parcels/{parcel.parcel_id}/cancel", headers=shop.auth(member),
                      timeout=60)

    tasks = [ship(i) if i % 2 else cancel for i in range(200)]
    responses = burst(base, tasks, workers=100)
    outcomes = Counter((r.status_code, r.json().get("error", {}).get("code")) for r in responses)
    wins = [r for r in responses if r.status_code == 200]
    assert len(wins) == 1, outcomes
    final = Parcel.get(parcel.parcel_id, consistent_read=True)
    loser_code = "parcel_already_shipped" if final.state == "shipped" else "parcel_already_cancelled"
    assert outcomes == Counter({(200, None): 1, (409, loser_code): 199}), outcomes
    assert len([r for r in audit.history(f"parcel#{parcel.parcel_id}")]) == 1
    back = Wallet.get(shop.member_ids[member], consistent_read=True)
    if final.state == "cancelled":  # given back exactly once
        assert _stock(cart.goods_b, "B1") == stock + 1
        assert int(back.balance) == int(wallet.balance) + PRICE_B
    else:
        assert _stock(cart.goods_b, "B1") == stock and int(back.balance) == int(wallet.balance)
        assert final.tracking_no == wins[0].json()["tracking_no"]
    _ledger(back)


# --- issue 16 #13: a channel hears of each parcel cancelled and of refunds at the order level -----------------

def _hooked(cart: CartShop, ops):
    """A receiver set as the cart channel's webhook, knowing the channel's (rotated-in) webhook secret."""
    from test_webhooks import Receiver

    receiver = Receiver().start()
    code = cart.shop.code
    ok(ops.patch(f"/ops/channels/{code}", json={"webhook_url": receiver.url + "/hooks"}))
    receiver.secrets = [ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={"overlap_seconds": 0}))[
        "webhook_secret"]]
    return receiver


def _heard(receiver, code: str, kind: str, subject: str) -> dict:
    """The event as the channel's webhook received it (verified), after the delivery rounds the sweep runs."""
    from chalicelib.partners import webhooks

    event_id = events.event_id(kind, subject)
    for _ in range(5):
        if event_id in receiver.processed:
            break
        webhooks.deliver_due(code)
    assert event_id in receiver.processed, (kind, subject, sorted(receiver.processed))
    return receiver.processed[event_id]["data"]


def test_cancelling_one_parcel_of_two_and_the_deadline_tell_the_channel(system, ops) -> None:
    cart = CartShop(system, ops)
    receiver = _hooked(cart, ops)
    try:
        member, order_id = cart.order()
        first, second = parcels.split(order_id)
        ok(cart.member_post(member, f"/parcels/{first.parcel_id}/cancel"))
        heard = _heard(receiver, cart.shop.code, "parcel.cancelled", first.parcel_id)
        assert (heard["parcel_id"], heard["state"], heard["order_state"]) == (first.parcel_id, "cancelled", "paid")
        assert (heard["points_returned"], heard["cancelled_by"]) == (int(first.points), "member")
        assert refunds.expire_unshipped(order_id) == [second.parcel_id]  # the shipping deadline
        heard = _heard(receiver, cart.shop.code, "parcel.cancelled", second.parcel_id)
        assert (heard["order_state"], heard["points_returned"], heard["cancelled_by"]) == (
            "cancelled", int(second.points), "shipping_deadline")
        assert _heard(receiver, cart.shop.code, "order.cancelled", order_id)["state"] == "cancelled"
        assert receiver.unverified == []
    finally:
        receiver.stop()


def test_refunds_tell_the_channel_when_the_order_becomes_partially_refunded_then_refunded(system, ops) -> None:
    cart = CartShop(system, ops)
    receiver = _hooked(cart, ops)
    try:
        member, order_id = cart.order()
        first, second = sorted(parcels.split(order_id), key=lambda p: p.supplier_id == cart.supplier_b)
        ok(_ship(cart.sup_a, first.parcel_id))
        ok(_ship(cart.sup_b, second.parcel_id))
        ok(ops.post(f"/ops/parcels/{first.parcel_id}/refund", json={"reason": "lost"}))
        heard = _heard(receiver, cart.shop.code, "order.partially_refunded", order_id)
        assert heard["state"] == "partially_refunded"
        assert {p["parcel_id"]: p["state"] for p in heard["parcels"]} == {first.parcel_id: "refunded",
                                                                         second.parcel_id: "shipped"}
        assert _heard(receiver, cart.shop.code, "parcel.refunded", first.parcel_id)["points_returned"] == int(
            first.points)
        ok(ops.post(f"/ops/parcels/{second.parcel_id}/refund", json={"reason": "lost"}))
        assert _heard(receiver, cart.shop.code, "order.refunded", order_id)["state"] == "refunded"
    finally:
        receiver.stop()
