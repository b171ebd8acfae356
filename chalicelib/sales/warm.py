"""Warm capacity for a flash sale's start: provisioned concurrency on the published ``live`` alias of the API
and door functions, raised by Application Auto Scaling scheduled actions a few minutes before the sale starts
and dropped after it ends. Written when ops schedule (or re-time) the sale, so thousands of members pressing
the button at the start find initialised instances instead of cold starts.

The scheduling call goes through one adapter for the one partner system (Application Auto Scaling):
``AwsScaling`` in a deployed stage, ``RecordedScaling`` on the local stack (it keeps the calls, for the tests
and ``make run``'s log). Sizing is pure (``concurrency_for``)."""
from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Protocol

from chalicelib.core import config
from chalicelib.core.observability import count, logger

ALIAS = "live"
LEAD_SECONDS = 300  # warm this long before the start: provisioned instances take a few minutes to initialise
TAIL_SECONDS = 300  # and keep them this long after the end (late cancels, the order pages)
# Seconds of function time one checkout attempt holds an instance (``bench.capacity`` measures it; its report
# prints the figure to put here), and the headroom over the expected rate.
ATTEMPT_SECONDS = 0.12
HEADROOM = 1.25
MAX_CONCURRENCY = 3_000  # the scalable targets' MaxCapacity (infra/template.py) and a regional default's order


def concurrency_for(expected_rate: int, attempt_seconds: float = ATTEMPT_SECONDS) -> int:
    """Instances busy at ``expected_rate`` attempts/s (Little's law) with headroom, at most ``MAX_CONCURRENCY``."""
    return min(MAX_CONCURRENCY, max(1, math.ceil(expected_rate * attempt_seconds * HEADROOM)))


@dataclass(frozen=True)
class Action:
    """One scheduled action: at ``at`` (Unix seconds), hold at least ``min_capacity`` instances of ``target``."""

    name: str
    target: str  # Application Auto Scaling resource id: function:{name}:{alias}
    at: int
    min_capacity: int
    max_capacity: int


def actions_for(code: str, sale_id: str, starts_at: int, ends_at: int, concurrency: int,
                targets: list[str]) -> list[Action]:
    """Up before the start, down after the end, on every target (names stable per sale: a re-time replaces them)."""
    out = []
    for target in targets:
        fn = target.split(":")[1]
        base = f"sale-{code}-{sale_id}-{fn}"[:230]
        out.append(Action(f"{base}-up", target, starts_at - LEAD_SECONDS, concurrency, MAX_CONCURRENCY))
        out.append(Action(f"{base}-down", target, ends_at + TAIL_SECONDS, 0, MAX_CONCURRENCY))
    return out


class Scaling(Protocol):
    def put(self, action: Action) -> None: ...


class AwsScaling:
    """Application Auto Scaling's ``PutScheduledAction`` on the Lambda alias's provisioned concurrency."""

    def __init__(self) -> None:
        import boto3

        self._client = boto3.client("application-autoscaling", region_name=config.REGION)

    def put(self, action: Action) -> None:
        at = datetime.fromtimestamp(action.at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        self._client.put_scheduled_action(
            ServiceNamespace="lambda", ScheduledActionName=action.name, ResourceId=action.target,
            ScalableDimension="lambda:function:ProvisionedConcurrency", Schedule=f"at({at})", Timezone="UTC",
            ScalableTargetAction={"MinCapacity": action.min_capacity, "MaxCapacity": action.max_capacity})


class RecordedScaling:
    """The local stack's stand-in: the actions as they would be put, latest per name (as the service keeps them)."""

    def __init__(self) -> None:
        self.actions: dict[str, Action] = {}
        self._lock = threading.Lock()

    def put(self, action: Action) -> None:
        with self._lock:
            self.actions[action.name] = action
        logger.info("scheduled action recorded", extra={"action": asdict(action)})


_ADAPTER: Scaling | None = None


def adapter() -> Scaling:
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = RecordedScaling() if config.IS_LOCAL else AwsScaling()
    return _ADAPTER


def targets() -> list[str]:
    """The API function (this one, in AWS) and the door, on their published alias."""
    names = [os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "channel-mall-local-api_handler",
             os.environ.get("CHANNEL_DOOR_FUNCTION") or "channel-mall-local-channel_door"]
    return [f"function:{name}:{ALIAS}" for name in names]


def schedule(code: str, sale_id: str, starts_at: int, ends_at: int, expected_rate: int) -> dict:
    """Put the sale's actions; answers what the sale records (``Sale.warm``). A failure leaves the sale scheduled
    and says so (``SaleWarmFailed``, alarmed): the sale sells cold rather than not at all."""
    concurrency = concurrency_for(expected_rate)
    planned = actions_for(code, sale_id, starts_at, ends_at, concurrency, targets())
    try:
        for action in planned:
            adapter().put(action)
    except Exception as error:  # noqa: BLE001 - any failure of the partner call is reported, never raised
        logger.exception("warm capacity not scheduled", extra={"sale_id": sale_id})
        count("SaleWarmFailed")
        return {"scheduled": False, "error": type(error).__name__, "concurrency": concurrency}
    return {"scheduled": True, "concurrency": concurrency, "expected_rate": expected_rate,
            "actions": [a.name for a in planned], "up_at": starts_at - LEAD_SECONDS, "down_at": ends_at + TAIL_SECONDS}
