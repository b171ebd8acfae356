"""An order's whole life after payment, end to end over HTTP on the local stack: a two-supplier cart checkout,
split by its real ``order_fulfilment`` execution on moto (no split call here), shipped by each supplier,
received by the member; and an order whose second parcel is never shipped. Asserted from the member's view,
the execution history (boto3 against moto) and the outbox (each expected event exactly once)."""
from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from chalicelib.checkout.models import Wallet
from chalicelib.orders.models import Parcel
from chalicelib.partners.models import OutboxEvent
from chalicelib.supply.models import Stock
from checkout_helpers import ok, uid
from helpers import wait_for
from infra.state_machines import ORDER_FULFILMENT
from test_cart import checkout, put
from test_parcels import CartShop
from tools.stack import state_machine_arn

MACHINE = state_machine_arn(ORDER_FULFILMENT)
ALL_STATES = ["Split", "AwaitShipment", "Deadline", "AwaitReceipt", "Complete"]


@pytest.fixture(scope="module")
def sfn() -> Any:
    return boto3.client("stepfunctions")


def history(sfn: Any, order_id: str) -> list[dict]:
    arn = MACHINE.replace(":stateMachine:", ":execution:") + f":{order_id}"
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def states_entered(events: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def succeeded(sfn: Any, order_id: str, timeout: float = 60) -> list[dict]:
    return wait_for(lambda: history(sfn, order_id),
                    lambda ev: any(e["type"] == "ExecutionSucceeded" for e in ev), timeout=timeout, interval=0.5)


def outbox(channel_code: str) -> list[tuple[str, str]]:
    """(kind, subject) of every event recorded for the channel (each test has a channel of its own)."""
    rows = OutboxEvent.scan(OutboxEvent.channel_code == channel_code, consistent_read=True)
    return sorted((row.kind, json.loads(row.payload)["data"].get("parcel_id") or json.loads(row.payload)["data"]
                   ["order_id"]) for row in rows)


def cart_order(cart: CartShop, seconds: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A member fills the cart with goods of both suppliers (2 of A's, 1 of B's) and checks it out."""
    monkeypatch.setenv("FULFILMENT_SECONDS_OVERRIDE", seconds)
    shop = cart.shop
    member = shop.member()
    ok(shop.grant(member, 100_000), 201)
    ok(put(shop, member, shop.goods_id, shop.sku_id, 2))
    view = ok(put(shop, member, cart.goods_b, "B1", 1))
    order = ok(checkout(shop, member, view), 201)
    assert order["status"] == "paid" and len(order["lines"]) == 2
    return member, order["order_id"]


def split_view(cart: CartShop, member: str, order_id: str) -> dict:
    return wait_for(lambda: cart.member_order(member, order_id), lambda v: len(v["parcels"]) == 2, timeout=30)


def ship(sup, parcel_id: str) -> dict:
    return ok(sup.post(f"/supplier/parcels/{parcel_id}/ship", json={"carrier": "SF Express", "tracking_no": uid("SF")}))


def test_two_supplier_cart_order_ships_in_parts_and_completes(system, ops, sfn, monkeypatch) -> None:
    cart = CartShop(system, ops)
    member, order_id = cart_order(cart, "10,1", monkeypatch)
    view = split_view(cart, member, order_id)
    assert view["state"] == "paid"
    by_supplier = {Parcel.get(p["parcel_id"]).supplier_id: p["parcel_id"] for p in view["parcels"]}
    first, second = f"{order_id}-1", f"{order_id}-2"
    assert sorted(by_supplier.values()) == [first, second]
    sups = {cart.supplier_b: cart.sup_b}
    sups.update({s: cart.sup_a for s in by_supplier if s != cart.supplier_b})
    supplier_of = {pid: sups[s] for s, pid in by_supplier.items()}

    ship(supplier_of[first], first)
    assert cart.member_order(member, order_id)["state"] == "partially_shipped"
    ship(supplier_of[second], second)
    assert cart.member_order(member, order_id)["state"] == "shipped"
    ok(cart.member_post(member, f"/parcels/{first}/receipt"))
    assert cart.member_order(member, order_id)["state"] == "shipped"
    ok(cart.member_post(member, f"/parcels/{second}/receipt"))
    final = cart.member_order(member, order_id)
    assert final["state"] == "completed" and [p["state"] for p in final["parcels"]] == ["completed"] * 2

    events = succeeded(sfn, order_id)
    assert states_entered(events) == ALL_STATES
    outputs = [json.loads(e["lambdaFunctionSucceededEventDetails"]["output"]) for e in events
               if e["type"] == "LambdaFunctionSucceeded"]
    assert outputs == [{"parcel_ids": [first, second]}, {"parcel_ids": []}, {"parcel_ids": []}]
    assert outbox(cart.shop.code) == sorted([
        ("order.paid", order_id), ("parcel.shipped", first), ("parcel.shipped", second),
        ("order.partially_shipped", order_id), ("order.shipped", order_id), ("order.completed", order_id)])


def test_an_unshipped_parcel_is_cancelled_and_given_back_the_shipped_one_completes(system, ops, sfn,
                                                                                  monkeypatch) -> None:
    cart = CartShop(system, ops)
    shop = cart.shop
    member, order_id = cart_order(cart, "6,2", monkeypatch)
    view = split_view(cart, member, order_id)
    parcel_b = next(p["parcel_id"] for p in view["parcels"] if Parcel.get(p["parcel_id"]).supplier_id == cart.supplier_b)
    parcel_a = next(p["parcel_id"] for p in view["parcels"] if p["parcel_id"] != parcel_b)
    points_a = int(Parcel.get(parcel_a).points)
    member_id = shop.member_ids[member]
    balance, quota = int(Wallet.get(member_id, consistent_read=True).balance), shop.quota_item()
    stock_a = int(Stock.get(shop.goods_id, shop.sku_id, consistent_read=True).stock)

    ship(cart.sup_b, parcel_b)  # A never ships
    assert cart.member_order(member, order_id)["state"] == "partially_shipped"
    after_deadline = wait_for(lambda: cart.member_order(member, order_id), lambda v: v["state"] != "partially_shipped",
                              timeout=30, interval=0.3)
    assert after_deadline["state"] == "shipped"  # the cancelled parcel aside, everything left is on its way
    states = {p["parcel_id"]: p["state"] for p in after_deadline["parcels"]}
    assert states == {parcel_a: "cancelled", parcel_b: "shipped"}
    assert int(Wallet.get(member_id, consistent_read=True).balance) == balance + points_a
    after = shop.quota_item()
    assert (after.spent, after.remaining) == (quota.spent - points_a, quota.remaining + points_a)
    assert int(Stock.get(shop.goods_id, shop.sku_id, consistent_read=True).stock) == stock_a + 2

    events = succeeded(sfn, order_id)
    assert states_entered(events) == ALL_STATES
    final = cart.member_order(member, order_id)
    assert final["state"] == "completed"
    assert {p["parcel_id"]: p["state"] for p in final["parcels"]} == {parcel_a: "cancelled", parcel_b: "completed"}
    assert outbox(shop.code) == sorted([
        ("order.paid", order_id), ("parcel.shipped", parcel_b), ("order.partially_shipped", order_id),
        ("parcel.cancelled", parcel_a), ("order.shipped", order_id), ("order.completed", order_id)])
