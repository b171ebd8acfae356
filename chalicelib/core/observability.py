"""Powertools instances shared by every function: structured logs, EMF metrics, X-Ray traces."""
from __future__ import annotations

import functools
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.tracer import Tracer

SERVICE = "channel-mall"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="ChannelMall", service=SERVICE)


def tracer() -> Any:
    """The X-Ray tracer where tracing is on (a deployed stage with ``xray``), else None.

    Building a Powertools ``Tracer`` imports the X-Ray SDK (about 110 ms of every cold start) even
    when tracing is disabled, so it is built only where it will trace: Powertools' own rule
    (inside Lambda, not chalice local or SAM, ``POWERTOOLS_TRACE_DISABLED`` unset or false).
    """
    if Tracer._is_tracer_disabled():
        return None
    return Tracer(service=SERVICE)


_METRICS_LOCK = threading.RLock()


def _serialised(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        with _METRICS_LOCK:
            return method(*args, **kwargs)
    return call


# A Lambda process serves one request at a time, but the local stack (chalice local) serves requests on
# threads that share this one metrics buffer: a flush checks it is non-empty, then serialises it, and
# another request's flush emptying it in between fails the first request with a bare 500. One lock.
for _name in ("add_metric", "add_dimension", "add_metadata", "serialize_metric_set", "flush_metrics",
              "clear_metrics"):
    setattr(metrics.provider, _name, _serialised(getattr(metrics.provider, _name)))


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
