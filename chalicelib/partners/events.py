"""Events for channels (an outbox): written in the transaction of the change that causes them.

Because the event is one more item in the same ``TransactWriteItems`` as the
state change, no event is ever lost (the change committed) or invented (it
did not). Delivery to the channel's webhook happens afterwards, at least
once; ``event_id`` is stable per event so the channel dedupes retries.
"""
from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.core.clock import now_iso
from chalicelib.core.tx import LabelledTransaction
from chalicelib.partners.models import OutboxEvent

KINDS = ("order.paid", "parcel.shipped", "order.partially_shipped", "order.shipped", "order.completed",
         "parcel.refunded", "order.cancelled", "parcel.cancelled", "order.partially_refunded", "order.refunded")


def event_id(kind: str, subject: str) -> str:
    """One event per (kind, subject): a retried transition can never record the same event twice."""
    return f"evt_{kind}_{subject}"


def record(tx: LabelledTransaction, channel_code: str, kind: str, subject: str, data: dict[str, Any],
           sandbox: bool = False, now: float | None = None) -> str:
    """Add the event to ``tx`` (refused if it already exists, so a replayed change records nothing new)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind}")
    eid = event_id(kind, subject)
    at = now_iso()
    envelope = {"id": eid, "type": kind, "created_at": at, "channel": channel_code, "data": data}
    if sandbox:  # a sandbox channel's events reach its integrator too, marked as test data
        envelope["sandbox"] = True
    body = json.dumps(envelope,
                      separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    due = int(time.time() if now is None else now)
    tx.put(f"event:{kind}", OutboxEvent(eid, channel_code=channel_code, kind=kind, payload=body, pending=channel_code,
                                        due_at=due, sandbox=sandbox, created_at=at),
           condition=OutboxEvent.event_id.does_not_exist())
    return eid
