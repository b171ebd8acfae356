"""Step Functions definitions as Python objects: the deployed template and the local stack use the same one.

Task ``Resource`` values are ``${name}`` placeholders naming the Chalice function they call; the
template fills them with ``DefinitionSubstitutions`` (the functions' ARNs), the local stack with the
ARNs of the app's own functions on moto. JSONPath only (no JSONata, no ``Assign``): what Step
Functions and moto's local executions both run.
"""
from __future__ import annotations

from typing import Any

ORDER_FULFILMENT = "order_fulfilment"
# The Lambdas the fulfilment states call, in order; the state machine's role may invoke exactly these.
FULFILMENT_FUNCTIONS = ("fulfil_split", "fulfil_deadline", "fulfil_complete")

# A task's transient faults (a lost transaction race, a throttled table, a Lambda hiccup) are retried;
# each task is idempotent, so a retry after a fault that hid a success changes nothing. Retries
# exhausted fail the execution, which the ExecutionsFailed alarm reports.
_RETRY = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0,
           "MaxDelaySeconds": 60}]


def _task(function: str, result: str, then: str | None) -> dict[str, Any]:
    """Call one fulfilment Lambda with the order id; its answer is kept under ``$.{result}``."""
    state: dict[str, Any] = {
        "Type": "Task", "Resource": f"${{{function}}}", "Parameters": {"order_id.$": "$.order_id"},
        "ResultPath": f"$.{result}", "Retry": _RETRY,
    }
    if then is None:
        state["End"] = True
    else:
        state["Next"] = then
    return state


def order_fulfilment() -> dict[str, Any]:
    """One paid order: split into parcels, wait for shipment, cancel what is unshipped at the deadline,
    wait out the receipt window, complete what was shipped. Input: ``{order_id, shipping_seconds,
    receipt_seconds}`` (durations from the channel, so tests run the whole life in seconds)."""
    return {
        "Comment": "Channel Mall order fulfilment: split per supplier, shipping deadline, receipt window",
        "StartAt": "Split",
        "States": {
            "Split": _task("fulfil_split", "parcels", "AwaitShipment"),
            "AwaitShipment": {"Type": "Wait", "SecondsPath": "$.shipping_seconds", "Next": "Deadline"},
            "Deadline": _task("fulfil_deadline", "cancelled", "AwaitReceipt"),
            "AwaitReceipt": {"Type": "Wait", "SecondsPath": "$.receipt_seconds", "Next": "Complete"},
            "Complete": _task("fulfil_complete", "completed", None),
        },
    }


def substituted(definition: dict[str, Any], arns: dict[str, str]) -> dict[str, Any]:
    """The definition with each ``${name}`` Task resource replaced by ``arns[name]`` (what
    ``DefinitionSubstitutions`` does in CloudFormation), for the local stack."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            return arns[value[2:-1]]
        return value
    return walk(definition)


SETTLEMENT = "settlement"
# The Lambdas the settlement states call; the state machine's role may invoke exactly these.
SETTLEMENT_FUNCTIONS = ("settle_freeze", "settle_page", "settle_platform", "settle_close")
# Parties settled at once; each iteration is one Lambda writing a few statements.
SETTLEMENT_CONCURRENCY = 10


def _settlement_task(function: str, then: str | None, result: str) -> dict[str, Any]:
    """One settlement Lambda with the period id (and, in the Map, the page of parties); retried like the
    fulfilment tasks: each is idempotent and deterministic, so a retry writes the same bytes."""
    state: dict[str, Any] = {"Type": "Task", "Resource": f"${{{function}}}", "Retry": _RETRY,
                             "ResultPath": f"$.{result}"}
    if then is None:
        state["End"] = True
    else:
        state["Next"] = then
    return state


def settlement() -> dict[str, Any]:
    """One period (input ``{period_id}``): Freeze (the parties, in pages, to a JSON file in S3) → a Distributed
    Map over that file, one child execution per page of parties writing their statements → the platform's
    margin → Close (the period settled, with its totals). Distributed, so a period with thousands of
    suppliers is not bound by one execution's 25,000-event history; each item is a page of ids (moto runs
    an S3 ItemReader but not ItemBatcher)."""
    page = {"Type": "Task", "Resource": "${settle_page}", "Retry": _RETRY, "End": True}
    return {
        "Comment": "Channel Mall settlement of one period: statements both ways, exports, platform margin",
        "StartAt": "Freeze",
        "States": {
            "Freeze": _settlement_task("settle_freeze", "Statements", "frozen"),
            "Statements": {
                "Type": "Map",
                "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                               "Parameters": {"Bucket.$": "$.frozen.bucket", "Key.$": "$.frozen.pages_key"}},
                "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                                  "StartAt": "SettlePage", "States": {"SettlePage": page}},
                "MaxConcurrency": SETTLEMENT_CONCURRENCY,
                "ResultPath": None,
                "Next": "Platform",
            },
            "Platform": _settlement_task("settle_platform", "Close", "platform"),
            "Close": _settlement_task("settle_close", None, "settled"),
        },
    }


REFUND_RETRY = "refund_retry"
# The one Lambda the refund retry calls; its role may invoke exactly this.
REFUND_RETRY_FUNCTIONS = ("retry_refund",)


def refund_retry() -> dict[str, Any]:
    """One remote refund (or cancel) whose channel call failed or timed out: wait a few seconds, ask the channel
    again (``retry_refund``: query, and send again if it does not have the refund), and again after a longer
    wait while it stays in doubt. Input ``{refund_id, attempt: 0, wait_seconds}``; each answer carries the next
    ``attempt``, ``wait_seconds`` (the backoff, ``refunds.RETRY_WAITS``) and ``done`` (settled, or the fast
    retries used up: the 5-minute refund sweep is the backstop)."""
    return {
        "Comment": "Channel Mall: a remote refund in doubt retried within seconds, with backoff",
        "StartAt": "Backoff",
        "States": {
            "Backoff": {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "AskAgain"},
            "AskAgain": {"Type": "Task", "Resource": "${retry_refund}",
                         "Parameters": {"refund_id.$": "$.refund_id", "attempt.$": "$.attempt"},
                         "ResultPath": "$", "Retry": _RETRY, "Next": "Settled"},
            "Settled": {"Type": "Choice", "Choices": [{"Variable": "$.done", "BooleanEquals": True, "Next": "Done"}],
                        "Default": "Backoff"},
            "Done": {"Type": "Succeed"},
        },
    }
