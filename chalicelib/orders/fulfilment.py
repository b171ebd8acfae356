"""A paid order's life on Step Functions: start its ``order_fulfilment`` execution; the Lambda task bodies.

The definition (``infra/state_machines.py``) only sequences and waits; what each step does is here and in
``parcels``. Every task is idempotent (a Step Functions retry, or a re-run, changes nothing twice), and the
execution is named after the order id, so Step Functions itself refuses a second start of one order.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from functools import cache
from typing import Any

from chalicelib.channels import channels
from chalicelib.core import config
from chalicelib.core.models import Channel, Order
from chalicelib.core.observability import count, logger
from chalicelib.orders import parcels
from chalicelib.partners import metering

HOUR, DAY = 3600, 86400
UNSTARTED_AFTER_SECONDS = 60  # a younger unsplit order's execution may simply not have split it yet


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
    Every paid order passes here (hosted at its commit, remote once confirmed, and the sweeps), so it is metered
    here too, once (``metering.order_paid``)."""
    metering.order_paid(order)
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
    cutoff = datetime.fromtimestamp(time.time() - UNSTARTED_AFTER_SECONDS, timezone.utc).isoformat(
        timespec="milliseconds")
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


# --- the Lambda tasks: thin, each calls one idempotent service ------------------------------

def split(event: dict) -> dict:
    """``Split``: the order's parcels, one per supplier (a re-run writes nothing new)."""
    return {"parcel_ids": [p.parcel_id for p in parcels.split(event["order_id"])]}


def deadline(event: dict) -> dict:
    """``Deadline``: cancel and refund every parcel still awaiting shipment."""
    return {"parcel_ids": parcels.expire_unshipped(event["order_id"])}


def complete(event: dict) -> dict:
    """``Complete``: complete every parcel shipped and not yet completed or refunded."""
    return {"parcel_ids": parcels.complete_shipped(event["order_id"])}
