"""The order_fulfilment state machine, run for real: moto's Step Functions executes the deployed definition and
its Lambda tasks reach the app's own handlers (``tools.engines.LambdaInvoke``). Orders are placed over HTTP; the
tests read the execution's history and the tables, never a mock of Step Functions. Durations come from the
local-only override (seconds), so a whole order's life takes a few seconds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
import requests

from chalicelib.core import config
from chalicelib.orders import fulfilment, parcels
from chalicelib.core.models import Channel, Order, Parcel
from checkout_helpers import make_shop, uid
from helpers import wait_for
from infra.state_machines import ORDER_FULFILMENT
from tools.stack import LAMBDA_PREFIX, state_machine_arn

MACHINE = state_machine_arn(ORDER_FULFILMENT)
LONG = 600  # seconds: a wait the test never reaches the end of


@pytest.fixture(scope="module")
def sfn() -> Any:
    return boto3.client("stepfunctions")


@pytest.fixture
def seconds(monkeypatch: pytest.MonkeyPatch):
    """Set the shipping deadline and receipt window (seconds) for the orders placed next."""
    def set_(shipping: int, receipt: int) -> None:
        monkeypatch.setenv("FULFILMENT_SECONDS_OVERRIDE", f"{shipping},{receipt}")
    return set_


@pytest.fixture
def started(sfn: Any) -> Iterator[list[str]]:
    """Order ids whose executions the test started; any still running is stopped afterwards."""
    order_ids: list[str] = []
    yield order_ids
    for order_id in order_ids:
        if sfn.describe_execution(executionArn=execution_arn(order_id))["status"] == "RUNNING":
            sfn.stop_execution(executionArn=execution_arn(order_id))


@pytest.fixture(scope="module")
def shop(system, ops):
    return make_shop(system, ops, "hosted")


def execution_arn(order_id: str) -> str:
    return MACHINE.replace(":stateMachine:", ":execution:") + f":{order_id}"


def history(sfn: Any, order_id: str) -> list[dict]:
    return sfn.get_execution_history(executionArn=execution_arn(order_id), maxResults=1000)["events"]


def states_entered(events: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def task_outputs(events: list[dict]) -> list[dict]:
    return [json.loads(e["lambdaFunctionSucceededEventDetails"]["output"]) for e in events
            if e["type"] == "LambdaFunctionSucceeded"]


def wait_status(sfn: Any, order_id: str, status: str, timeout: float = 30) -> dict:
    return wait_for(lambda: sfn.describe_execution(executionArn=execution_arn(order_id)),
                    lambda d: d["status"] == status, timeout=timeout)


def wait_entered(sfn: Any, order_id: str, state: str, timeout: float = 30) -> list[dict]:
    return wait_for(lambda: history(sfn, order_id), lambda ev: state in states_entered(ev), timeout=timeout)


def parcels_of(order_id: str) -> list[Parcel]:
    return sorted(Parcel.order_index.query(order_id), key=lambda p: p.parcel_id)


def paid_order(shop, started: list[str], key: str | None = None) -> tuple[str, str]:
    """A hosted member's paid order over HTTP; returns (external member id, order id)."""
    member = shop.member()
    assert shop.grant(member, 5000).status_code == 201
    attempt = shop.place(requests.Session(), member, key=key)
    assert attempt.status == 201, attempt.body
    started.append(attempt.order_id)
    return member, attempt.order_id


def test_paid_order_execution_splits_into_parcels(sfn, shop, seconds, started) -> None:
    seconds(LONG, LONG)
    _, order_id = paid_order(shop, started)
    events = wait_entered(sfn, order_id, "AwaitShipment")
    assert states_entered(events) == ["Split", "AwaitShipment"]
    started_input = json.loads(events[0]["executionStartedEventDetails"]["input"])
    assert started_input == {"order_id": order_id, "shipping_seconds": LONG, "receipt_seconds": LONG}
    [parcel] = parcels_of(order_id)
    assert task_outputs(events) == [{"parcel_ids": [parcel.parcel_id]}]
    assert (parcel.parcel_id, parcel.state, parcel.supplier_id) == (f"{order_id}-1", "awaiting_shipment",
                                                                   Order.get(order_id).lines[0]["supplier_id"])


def test_second_start_of_an_order_changes_nothing(system, sfn, shop, seconds, started) -> None:
    seconds(LONG, LONG)
    key = uid("key-")
    member, order_id = paid_order(shop, started, key)
    wait_entered(sfn, order_id, "AwaitShipment")
    before = [p.attribute_values for p in parcels_of(order_id)]
    order, channel = Order.get(order_id), Channel.get(shop.code)
    # Step Functions itself refuses a second execution of the order; start() takes that as started.
    assert fulfilment.start(order, channel) is True
    seconds(1, 1)  # a different input is refused by name all the same
    assert fulfilment.start(order, channel) is True
    # the member's replay of the same checkout goes through the same start
    replay = shop.place(requests.Session(), member, key=key)
    assert (replay.status, replay.order_id) == (200, order_id)
    executions = sfn.list_executions(stateMachineArn=MACHINE)["executions"]
    assert [e["name"] for e in executions].count(order_id) == 1
    # a re-run of the split task (a Step Functions retry after a lost answer) writes nothing new
    lambda_client = boto3.client("lambda", endpoint_url=system.moto.endpoint)
    rerun = lambda_client.invoke(FunctionName=f"{LAMBDA_PREFIX}fulfil_split",
                                 Payload=json.dumps({"order_id": order_id}).encode())
    assert "FunctionError" not in rerun
    assert json.loads(rerun["Payload"].read()) == {"parcel_ids": [f"{order_id}-1"]}
    assert [p.attribute_values for p in parcels_of(order_id)] == before
    assert states_entered(history(sfn, order_id)) == ["Split", "AwaitShipment"]


def test_unshipped_parcel_is_cancelled_at_the_deadline(sfn, shop, seconds, started) -> None:
    seconds(1, 1)
    member, order_id = paid_order(shop, started)
    balance_after_order = shop.wallet(member)["balance"]
    done = wait_status(sfn, order_id, "SUCCEEDED")
    events = history(sfn, order_id)
    assert states_entered(events) == ["Split", "AwaitShipment", "Deadline", "AwaitReceipt", "Complete"]
    parcel_id = f"{order_id}-1"
    assert task_outputs(events) == [{"parcel_ids": [parcel_id]}, {"parcel_ids": [parcel_id]}, {"parcel_ids": []}]
    assert json.loads(done["output"])["cancelled"] == {"parcel_ids": [parcel_id]}
    [parcel] = parcels_of(order_id)
    assert parcel.state == "cancelled"
    assert shop.wallet(member)["balance"] == balance_after_order + int(Order.get(order_id).points)


def test_shipped_parcel_completes_after_the_receipt_window(sfn, shop, seconds, started) -> None:
    seconds(3, 1)
    _, order_id = paid_order(shop, started)
    wait_entered(sfn, order_id, "AwaitShipment")
    [parcel] = parcels_of(order_id)
    parcels.ship(parcel.supplier_id, parcel.parcel_id, "SF Express", "SF1234567890")  # the supplier's ship
    done = wait_status(sfn, order_id, "SUCCEEDED")
    assert states_entered(history(sfn, order_id)) == ["Split", "AwaitShipment", "Deadline", "AwaitReceipt",
                                                      "Complete"]
    output = json.loads(done["output"])
    assert (output["cancelled"], output["completed"]) == ({"parcel_ids": []}, {"parcel_ids": [parcel.parcel_id]})
    [parcel] = parcels_of(order_id)
    assert (parcel.state, parcel.carrier, parcel.tracking_no) == ("completed", "SF Express", "SF1234567890")
    assert parcel.completed_at


def test_function_error_is_a_lambda_function_error(system) -> None:
    """What Retry and Catch see: a task that raises answers as Lambda does (FunctionError, errorType)."""
    lambda_client = boto3.client("lambda", endpoint_url=system.moto.endpoint)
    failed = lambda_client.invoke(FunctionName=f"{LAMBDA_PREFIX}fulfil_split",
                                  Payload=json.dumps({"no_order_id": True}).encode())
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "KeyError"
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=f"{LAMBDA_PREFIX}no_such_function", Payload=b"{}")


def test_a_failed_start_leaves_the_order_paid_and_its_replay_starts_it(sfn, shop, seconds, started,
                                                                        monkeypatch) -> None:
    seconds(LONG, LONG)
    member = shop.member()
    assert shop.grant(member, 5000).status_code == 201
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", MACHINE + "-missing")
    first = shop.place(requests.Session(), member, key="fulfil-replay-1")
    assert first.status == 201 and first.body["status"] == "paid", first.body
    started.append(first.order_id)
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=MACHINE)["executions"]]
    assert first.order_id not in names and parcels_of(first.order_id) == []
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", MACHINE)
    replay = shop.place(requests.Session(), member, key="fulfil-replay-1")
    assert (replay.status, replay.order_id) == (200, first.order_id)
    wait_entered(sfn, first.order_id, "AwaitShipment")
    assert [p.parcel_id for p in parcels_of(first.order_id)] == [f"{first.order_id}-1"]


def test_remote_order_starts_once_the_channel_confirmed(system, ops, sfn, seconds, started) -> None:
    seconds(LONG, LONG)
    remote = make_shop(system, ops, "remote")
    member = remote.member(points=5000)
    attempt = remote.place(requests.Session(), member)
    assert attempt.status == 201 and attempt.body["status"] == "paid", attempt.body
    started.append(attempt.order_id)
    wait_entered(sfn, attempt.order_id, "AwaitShipment")
    assert [p.state for p in parcels_of(attempt.order_id)] == ["awaiting_shipment"]
    refused = remote.member(points=10)  # the channel answers "insufficient": the order fails, nothing starts
    attempt = remote.place(requests.Session(), refused)
    assert attempt.body["status"] == "failed", attempt.body
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=MACHINE)["executions"]]
    assert attempt.order_id not in names and parcels_of(attempt.order_id) == []


def test_the_resolver_sweep_starts_a_paid_order_whose_start_failed(system, sfn, shop, seconds, started,
                                                                    monkeypatch) -> None:
    """No replay comes: the order is on the unsplit index from the commit that paid it, and the 5-minute sweep
    (the scheduled handler, as EventBridge calls it) starts it once it is older than a minute."""
    from chalice.local import LambdaContext

    seconds(LONG, LONG)
    member = shop.member()
    assert shop.grant(member, 5000).status_code == 201
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", MACHINE + "-missing")
    attempt = shop.place(requests.Session(), member)
    assert attempt.status == 201 and attempt.body["status"] == "paid", attempt.body
    started.append(attempt.order_id)
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", MACHINE)
    assert Order.get(attempt.order_id).unsplit == shop.code

    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "resolve_remote_orders.json").read_text())

    def sweep() -> dict:
        return system.app.resolve_remote_orders(event, LambdaContext("resolve_remote_orders", 256))

    sweep()  # younger than a minute: its start may just be on its way, the sweep leaves it
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=MACHINE)["executions"]]
    assert attempt.order_id not in names and Order.get(attempt.order_id).unsplit == shop.code
    monkeypatch.setattr(fulfilment, "UNSTARTED_AFTER_SECONDS", 0)
    sweep()
    wait_entered(sfn, attempt.order_id, "AwaitShipment")
    order = Order.get(attempt.order_id)
    assert (order.status, order.unsplit) == ("paid", None)  # the split took it off the index
    assert [p.parcel_id for p in parcels_of(attempt.order_id)] == [f"{attempt.order_id}-1"]
    assert shop.code not in fulfilment.sweep_unstarted()  # nothing left to start in this channel
