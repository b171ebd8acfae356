"""The order_fulfilment state machine, run for real: moto's Step Functions executes the deployed definition and
its Lambda tasks reach the app's own handlers (``tools.engines.LambdaInvoke``). Orders are placed over HTTP; the
tests read the execution's history and the tables, never a mock of Step Functions. Durations come from the
local-only override (seconds), so a whole order's life takes a few seconds."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
import requests

from chalicelib.channels.models import Channel
from chalicelib.core import config
from chalicelib.orders import fulfilment, parcels
from chalicelib.orders.models import Order, Parcel
from checkout_helpers import make_shop, uid
from helpers import wait_for
from infra.state_machines import ORDER_FULFILMENT
from tools.stack import ACCOUNT, LAMBDA_PREFIX, state_machine_arn

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


# --- failed executions are restarted (issue 16, item 5) -------------------------------------------------

FAST = MACHINE + "-fastretry"


@pytest.fixture(scope="module")
def fast_machine(sfn: Any) -> str:
    """The deployed definition with one quick retry per task instead of six over two minutes: a task that keeps
    failing fails its execution within seconds, as the deployed one does after its retries."""
    from infra.state_machines import FULFILMENT_FUNCTIONS, order_fulfilment, substituted
    from tools.stack import lambda_arn

    def quick(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ([{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1}] if k == "Retry"
                        else quick(v)) for k, v in value.items()}
        return value
    definition = quick(substituted(order_fulfilment(), {f: lambda_arn(f) for f in FULFILMENT_FUNCTIONS}))
    sfn.create_state_machine(name=FAST.rsplit(":", 1)[-1], definition=json.dumps(definition),
                             roleArn=f"arn:aws:iam::{ACCOUNT}:role/channelmall-local-fastretry")
    return FAST


def fast_arn(name: str) -> str:
    return FAST.replace(":stateMachine:", ":execution:") + f":{name}"


def runs_of(sfn: Any, order_id: str) -> dict[str, str]:
    """Every execution of the order on the fast machine: name → status."""
    return {e["name"]: e["status"] for e in sfn.list_executions(stateMachineArn=FAST, maxResults=1000)["executions"]
            if e["name"].split("-r")[0] == order_id}


def wait_run(sfn: Any, name: str, status: str, timeout: float = 30) -> dict:
    return wait_for(lambda: sfn.describe_execution(executionArn=fast_arn(name)), lambda d: d["status"] == status,
                    timeout=timeout)


@pytest.fixture
def on_fast_machine(fast_machine: str, sfn: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Orders placed next start on the fast machine; every run still going afterwards is stopped."""
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", fast_machine)
    order_ids: list[str] = []
    yield order_ids
    for order_id in order_ids:
        for name, status in runs_of(sfn, order_id).items():
            if status == "RUNNING":
                sfn.stop_execution(executionArn=fast_arn(name))


def resolver_sweep(system) -> dict:
    """The 5-minute resolver schedule, as EventBridge calls it."""
    from chalice.local import LambdaContext

    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "resolve_remote_orders.json").read_text())
    return system.app.resolve_remote_orders(event, LambdaContext("resolve_remote_orders", 256))


def test_a_failed_split_is_restarted_by_the_sweep_and_heals(system, sfn, shop, seconds, on_fast_machine,
                                                            monkeypatch) -> None:
    """Split fails through its retries (a throttled table, a bad deploy): the execution is FAILED. The sweep
    restarts it as ``{order}-r1`` at once, then, while the fault lasts, waits out a backoff before ``-r2``;
    once healed, the restart splits the order: parcels, off the unsplit list, the member sees them over HTTP."""
    seconds(LONG, LONG)
    member = shop.member()
    assert shop.grant(member, 5000).status_code == 201

    def throttled(order_id: str) -> list:
        raise RuntimeError("ProvisionedThroughputExceededException (forced)")
    monkeypatch.setattr(parcels, "split", throttled)
    attempt = shop.place(requests.Session(), member)
    assert attempt.status == 201 and attempt.body["status"] == "paid", attempt.body
    order_id = attempt.order_id
    on_fast_machine.append(order_id)
    wait_run(sfn, order_id, "FAILED")
    assert Order.get(order_id).unsplit == shop.code and parcels_of(order_id) == []

    resolver_sweep(system)  # still broken: restarted at once, and fails again
    wait_run(sfn, f"{order_id}-r1", "FAILED")
    resolver_sweep(system)  # the next restart waits out its backoff
    assert runs_of(sfn, order_id) == {order_id: "FAILED", f"{order_id}-r1": "FAILED"}

    monkeypatch.undo()  # healed (a fix deployed); the test's own machine again, and no backoff left to wait
    monkeypatch.setattr(config, "FULFILMENT_STATE_MACHINE_ARN", FAST)
    monkeypatch.setenv("FULFILMENT_SECONDS_OVERRIDE", f"{LONG},{LONG}")
    monkeypatch.setattr(fulfilment, "RESTART_BACKOFF_SECONDS", 0)
    started_at = time.time()
    resolver_sweep(system)
    events = wait_for(lambda: sfn.get_execution_history(executionArn=fast_arn(f"{order_id}-r2"))["events"],
                      lambda ev: "AwaitShipment" in states_entered(ev))
    restarted = json.loads(events[0]["executionStartedEventDetails"]["input"])
    first = sfn.describe_execution(executionArn=fast_arn(order_id))
    deadline = first["startDate"].timestamp() + LONG  # the order's own deadline, not a fresh one
    assert restarted["order_id"] == order_id
    assert deadline - time.time() - 2 <= restarted["shipping_seconds"] <= deadline - started_at + 1
    assert restarted["receipt_seconds"] == LONG
    assert Order.get(order_id).unsplit is None
    view = requests.get(f"{shop.base_url}/api/{shop.code}/orders/{order_id}", headers=shop.auth(member), timeout=30)
    assert view.status_code == 200, view.text
    assert [(p["parcel_id"], p["state"]) for p in view.json()["parcels"]] == [(f"{order_id}-1", "awaiting_shipment")]

    resolver_sweep(system)  # the latest failed run was restarted already: nothing more starts
    assert runs_of(sfn, order_id) == {order_id: "FAILED", f"{order_id}-r1": "FAILED", f"{order_id}-r2": "RUNNING"}


def test_a_deadline_that_stays_busy_fails_and_the_restart_cancels_and_completes(system, sfn, shop, seconds,
                                                                                on_fast_machine, monkeypatch) -> None:
    """Deadline meets a parcel too contended to cancel (``Busy``) through its retries: the execution fails
    before Complete. The sweep restarts it with the deadline already passed: the parcel is cancelled, the points
    come back and Complete runs."""
    seconds(1, 1)
    member = shop.member()
    assert shop.grant(member, 5000).status_code == 201
    from chalicelib.core.errors import Busy

    real_transition = parcels.transition

    def contended(parcel, action, *args, **kwargs):
        if action == "cancel":
            raise Busy("busy", "too many concurrent changes to this parcel; retry")
        return real_transition(parcel, action, *args, **kwargs)
    monkeypatch.setattr(parcels, "transition", contended)
    attempt = shop.place(requests.Session(), member)
    assert attempt.status == 201, attempt.body
    order_id = attempt.order_id
    on_fast_machine.append(order_id)
    balance = shop.wallet(member)["balance"]
    failed = wait_run(sfn, order_id, "FAILED")
    assert "Busy" in failed.get("error", "") + failed.get("cause", "")
    assert [p.state for p in parcels_of(order_id)] == ["awaiting_shipment"]

    monkeypatch.setattr(parcels, "transition", real_transition)  # the contention is over
    resolver_sweep(system)
    done = wait_run(sfn, f"{order_id}-r1", "SUCCEEDED")
    assert json.loads(done["input"])["shipping_seconds"] == 0
    assert states_entered(sfn.get_execution_history(executionArn=fast_arn(f"{order_id}-r1"))["events"]) == [
        "Split", "AwaitShipment", "Deadline", "AwaitReceipt", "Complete"]
    assert json.loads(done["output"])["cancelled"] == {"parcel_ids": [f"{order_id}-1"]}
    assert [p.state for p in parcels_of(order_id)] == ["cancelled"]
    assert shop.wallet(member)["balance"] == balance + int(Order.get(order_id).points)


def test_restart_rules() -> None:
    """Names, backoff and the restart's waits, as pure rules."""
    assert fulfilment.run_name("O1A", 0) == "O1A" and fulfilment.run_name("O1A", 3) == "O1A-r3"
    assert fulfilment.parse_run("O1A") == ("O1A", 0) and fulfilment.parse_run("O1A-r12") == ("O1A", 12)
    backoff = fulfilment.RESTART_BACKOFF_SECONDS
    assert fulfilment.restart_due(0, 1000.0, 1000.0)  # the first restart: at once
    assert not fulfilment.restart_due(1, 1000.0, 1000.0 + backoff - 1) and fulfilment.restart_due(1, 1000.0, 1000.0 + backoff)
    assert not fulfilment.restart_due(3, 0.0, 4 * backoff - 1) and fulfilment.restart_due(3, 0.0, 4 * backoff)
    assert fulfilment.restart_due(30, 0.0, fulfilment.RESTART_BACKOFF_MAX_SECONDS)  # at most a day apart
    assert not fulfilment.restart_due(0, 0.0, fulfilment.RESTART_WINDOW_SECONDS + 1)  # then left to ops
    failed = {"order_id": "O1A", "shipping_seconds": 100, "receipt_seconds": 50}
    assert fulfilment.restart_input(failed, 1000.0, 1030.0) == {"order_id": "O1A", "shipping_seconds": 70,
                                                                "receipt_seconds": 50}
    assert fulfilment.restart_input(failed, 1000.0, 1120.0) == {"order_id": "O1A", "shipping_seconds": 0,
                                                                "receipt_seconds": 30}
    assert fulfilment.restart_input(failed, 1000.0, 9999.0) == {"order_id": "O1A", "shipping_seconds": 0,
                                                                "receipt_seconds": 0}
