"""Powertools instances shared by every function: structured logs, EMF metrics, X-Ray traces."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "channel-mall"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="ChannelMall", service=SERVICE)
tracer = Tracer(service=SERVICE)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
