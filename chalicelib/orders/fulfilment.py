"""A paid order's life on Step Functions: start its ``order_fulfilment`` execution; the Lambda task bodies.

The definition (``infra/state_machines.py``) only sequences and waits; what each step does is here and in
``parcels``. Every task is idempotent (a Step Functions retry, or a re-run, changes nothing twice), and the
execution is named after the order id, so Step Functions itself refuses a second start of one order.

An execution that fails (a task kept failing through its retries: throttling, a bad deploy) or times out is
restarted by the resolver's sweep (``restart_failed``): Step Functions' ``RedriveExecution`` is not offered by
every engine this runs on, so a restart is a new execution named ``{order_id}-r{n}`` (``run_name``), which
keeps the order's deadlines (``restart_input``) and is again refused a second start by its name.
"""
from __future__ import annotations

import json
import re
import time
from functools import cache
from typing import Any, Iterator

from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.core import config
from chalicelib.core.clock import now_iso
from chalicelib.core.observability import count, logger
from chalicelib.orders import parcels
from chalicelib.orders.models import Order
from chalicelib.orders import refunds

HOUR, DAY = 3600, 86400
UNSTARTED_AFTER_SECONDS = 60  # a younger unsplit order's execution may simply not have split it yet
# Restarts of a failed execution: the first at the next sweep, each later one after twice the wait of the one
# before (a fault that outlives a few restarts is waited out, not hammered), at most a day apart; a run that
# failed more than RESTART_WINDOW_SECONDS ago is left to ops (each failure and restart pages them meanwhile).
RESTART_BACKOFF_SECONDS = 300
RESTART_BACKOFF_MAX_SECONDS = DAY
RESTART_WINDOW_SECONDS = 14 * DAY
RESTARTED_STATUSES = ("FAILED", "TIMED_OUT")  # not ABORTED: an execution stopped on purpose stays stopped
_RUN = re.compile(r"^(?P<order>.+?)(?:-r(?P<run>[1-9][0-9]*))?$")


@cache
def _sfn() -> Any:
    """The Step Functions client, built on first use: boto3's import and client cost cold start elsewhere."""
    import boto3

    return boto3.client("stepfunctions", region_name=config.REGION)


def durations(channel: Channel) -> tuple[int, int]:
    """Seconds to wait for shipment and then for receipt: the channel's terms (or the local test override)."""
    return config.fulfilment_seconds_override() or (
        int(channel.shipping_deadline_hours) * HOUR, int(channel.receipt_days) * DAY)


def start(order: Order, channel: Channel) -> bool:
    """Start the order's execution; True once it runs (now or from an earlier start).

    Never raises: the member's order is paid whatever happens here. A start that fails is logged and
    counted (``FulfilmentStartFailed``, alarmed) and is tried again by the member's replay of the order.
    (The order is metered from the orders stream, ``partners.order_figures``, not here.)"""
    shipping, receipt = durations(channel)
    payload = {"order_id": order.order_id, "shipping_seconds": shipping, "receipt_seconds": receipt}
    try:
        _sfn().start_execution(stateMachineArn=config.FULFILMENT_STATE_MACHINE_ARN, name=order.order_id,
                               input=json.dumps(payload))
    except Exception as error:  # noqa: BLE001 - see above: a paid order must not fail on its fulfilment
        if getattr(error, "response", {}).get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return True
        logger.exception("fulfilment not started", extra={"order_id": order.order_id})
        count("FulfilmentStartFailed")
        return False
    count("FulfilmentStarted")
    return True


def start_unsplit(channel: Channel) -> int:
    """Start the execution of every paid order of the channel still unsplit ``UNSTARTED_AFTER_SECONDS`` after
    it was placed (its start failed, and no replay came); how many run now. One already running is refused by
    name, which ``start`` takes as started; its split then takes the order off the index."""
    cutoff = now_iso(time.time() - UNSTARTED_AFTER_SECONDS)
    started = sum(start(order, channel) for order in Order.unsplit_index.query(channel.code, Order.created_at <= cutoff))
    if started:
        logger.warning("fulfilment started by the sweep", extra={"channel": channel.code, "orders": started})
    return started


def sweep_unstarted() -> dict[str, int]:
    """The resolver's schedule: in every channel, start the paid orders whose execution never started; how
    many per channel (only channels with some). One channel that fails is logged and counted
    (``FulfilmentSweepFailed``); the others go on."""
    swept = channels.sweep_each(start_unsplit, lambda: count("FulfilmentSweepFailed"))
    return {code: started for code, started in swept.items() if isinstance(started, int) and started}


# --- restarts of failed executions (pure rules first) ---------------------------------------

def run_name(order_id: str, run: int) -> str:
    """The execution name of an order's ``run``: the order id itself for the first, ``{order_id}-r{run}`` after."""
    return order_id if run == 0 else f"{order_id}-r{run}"


def parse_run(name: str) -> tuple[str, int]:
    """``run_name`` read back: (order id, run). Order ids never hold ``-r`` (``checkout.order_id_for``)."""
    match = _RUN.match(name)
    assert match is not None  # the pattern matches every non-empty name
    return match["order"], int(match["run"] or 0)


def restart_due(run: int, stopped_at: float, now: float) -> bool:
    """Whether the failed ``run`` of an order is restarted now: at once after the first failure, then after
    ``RESTART_BACKOFF_SECONDS`` doubling per run (at most a day); never after ``RESTART_WINDOW_SECONDS``."""
    waited = now - stopped_at
    backoff = 0 if run == 0 else min(RESTART_BACKOFF_SECONDS * 2 ** (run - 1), RESTART_BACKOFF_MAX_SECONDS)
    return backoff <= waited <= RESTART_WINDOW_SECONDS


def restart_input(failed: dict, started_at: float, now: float) -> dict:
    """The input of a restart of a run started at ``started_at`` with input ``failed``: the same order, waiting
    only what is left until that run's shipping deadline and end of receipt window (zero once passed), so a
    restart never gives a supplier or a member more time than the order had."""
    deadline = started_at + int(failed["shipping_seconds"])
    end = deadline + int(failed["receipt_seconds"])
    return {"order_id": failed["order_id"], "shipping_seconds": max(0, int(deadline - now)),
            "receipt_seconds": max(0, int(end - max(now, deadline)))}


def _failed_runs() -> Iterator[dict]:
    """Every failed or timed-out execution of the machine, newest first per status (paged)."""
    for status in RESTARTED_STATUSES:
        token: dict = {}
        while True:
            page = _sfn().list_executions(stateMachineArn=config.FULFILMENT_STATE_MACHINE_ARN, statusFilter=status,
                                          maxResults=1000, **token)
            yield from page["executions"]
            if not page.get("nextToken"):
                break
            token = {"nextToken": page["nextToken"]}


def _exists(name: str) -> bool:
    arn = config.FULFILMENT_STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:", 1) + f":{name}"
    try:
        _sfn().describe_execution(executionArn=arn)
    except _sfn().exceptions.ExecutionDoesNotExist:
        return False
    return True


def restart_failed(now: float | None = None) -> dict[str, str]:
    """The resolver's schedule: restart each order whose latest execution failed or timed out (``restart_due``)
    as its next run; the new runs' names by order id. Counted (``FulfilmentRestarted``, alarmed) and logged.

    Only an order's latest failed run is looked at; its next run's name is taken by Step Functions once, so a
    run already restarted (running or done) is seen by that name and left, and a concurrent sweep's start of the
    same run is refused by name."""
    now = time.time() if now is None else now
    latest: dict[str, tuple[int, dict]] = {}
    for execution in _failed_runs():
        order_id, run = parse_run(execution["name"])
        if order_id not in latest or latest[order_id][0] < run:
            latest[order_id] = (run, execution)
    restarted: dict[str, str] = {}
    for order_id, (run, execution) in sorted(latest.items()):
        if not restart_due(run, execution["stopDate"].timestamp(), now):
            continue
        name = run_name(order_id, run + 1)
        if _exists(name):
            continue
        failed = _sfn().describe_execution(executionArn=execution["executionArn"])
        payload = restart_input(json.loads(failed["input"]), failed["startDate"].timestamp(), now)
        try:
            _sfn().start_execution(stateMachineArn=config.FULFILMENT_STATE_MACHINE_ARN, name=name,
                                   input=json.dumps(payload))
        except Exception as error:  # noqa: BLE001 - one order's restart must not stop the others'
            if getattr(error, "response", {}).get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                logger.exception("fulfilment not restarted", extra={"order_id": order_id, "run": run + 1})
                count("FulfilmentStartFailed")
            continue
        logger.warning("failed fulfilment restarted", extra={"order_id": order_id, "failed": execution["name"],
                                                             "status": execution["status"], "run": name})
        count("FulfilmentRestarted")
        restarted[order_id] = name
    return restarted


# --- the Lambda tasks: thin, each calls one idempotent service ------------------------------

def split(event: dict) -> dict:
    """``Split``: the order's parcels, one per supplier (a re-run writes nothing new)."""
    return {"parcel_ids": [p.parcel_id for p in parcels.split(event["order_id"])]}


def deadline(event: dict) -> dict:
    """``Deadline``: cancel and refund every parcel still awaiting shipment."""
    return {"parcel_ids": refunds.expire_unshipped(event["order_id"])}


def complete(event: dict) -> dict:
    """``Complete``: complete every parcel shipped and not yet completed or refunded."""
    return {"parcel_ids": parcels.complete_shipped(event["order_id"])}
