"""The whole system on this machine: engines, tables, bucket, and the Chalice app over HTTP.

The local runner (``tools/run_local.py``) and the test suite both start it,
so what the tests exercise is what a person tries.
"""
from __future__ import annotations

import json
import secrets
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from chalice import Chalice
from chalice.config import Config

from infra.state_machines import (
    FULFILMENT_FUNCTIONS, ORDER_FULFILMENT, SETTLEMENT, SETTLEMENT_FUNCTIONS, order_fulfilment, settlement, substituted,
)
from infra.state_machines import REFUND_RETRY, REFUND_RETRY_FUNCTIONS, refund_retry
from tools.engines import ROOT, Dynoxide, MotoServer, aws_environment, apply_environment, free_port
from tools.local_server import local_server


def s3_object_created_event(bucket: str, key: str) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object (the shape AWS documents)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key},
                   "reason": "PostObject"},
    }


# The local stack's account, and the names its Lambda functions and state machines have in it (as deployed:
# ``<app>-<stage>-<function>``), so a state machine's Task reaches the app's own handler (``LambdaInvoke``).
ACCOUNT = "123456789012"
LAMBDA_PREFIX = "channel-mall-local-"


def lambda_arn(function: str) -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{LAMBDA_PREFIX}{function}"


def state_machine_arn(name: str) -> str:
    return f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:channelmall-local-{name}"


def create_state_machines() -> None:
    """The deployed definitions on moto's Step Functions, their Tasks pointing at the local functions."""
    import boto3

    sfn = boto3.client("stepfunctions")
    for name, definition, functions in ((ORDER_FULFILMENT, order_fulfilment(), FULFILMENT_FUNCTIONS),
                                        (SETTLEMENT, settlement(), SETTLEMENT_FUNCTIONS),
                                        (REFUND_RETRY, refund_retry(), REFUND_RETRY_FUNCTIONS)):
        sfn.create_state_machine(name=state_machine_arn(name).rsplit(":", 1)[-1],
                                 definition=json.dumps(substituted(definition, {f: lambda_arn(f) for f in functions})),
                                 roleArn=f"arn:aws:iam::{ACCOUNT}:role/channelmall-local-{name}")


UNIT_SECONDS = {"MINUTES": 60, "HOURS": 3600, "DAYS": 86400}


class LocalScheduler:
    """What EventBridge does in AWS for the app's ``@app.schedule`` handlers (``chalice local`` runs none):
    each one called on its rate, times ``scale`` (tests shorten it), with a scheduled event, in one background
    thread. A handler that raises is recorded and called again next time, like a failed scheduled Lambda."""

    def __init__(self, app: Chalice, scale: float = 1.0) -> None:
        from chalice.app import ScheduledEventConfig

        self.every = {s.name: s.schedule_expression.value * UNIT_SECONDS[s.schedule_expression.unit] * scale
                      for s in app.event_sources if isinstance(s, ScheduledEventConfig)}
        self.handlers = {name: app.handler_map[name] for name in self.every}
        self.runs: dict[str, list[Any]] = {name: [] for name in self.every}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="local-scheduler")

    def start(self) -> "LocalScheduler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        import time

        due = {name: time.monotonic() + every for name, every in self.every.items()}
        while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for name in [n for n, at in due.items() if at <= time.monotonic()]:
                self.runs[name].append(self._run(name))
                due[name] = time.monotonic() + self.every[name]

    def _run(self, name: str) -> Any:
        from chalice.local import LambdaContext

        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "123456789012", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "region": "us-east-1", "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{name}"],
                 "detail": {}}
        try:
            return self.handlers[name](event, LambdaContext(name, 256))
        except Exception as exc:  # noqa: BLE001 - a failed scheduled Lambda: recorded, run again next time
            return {"error": repr(exc)}


class LocalStreams:
    """What Lambda's event source mappings do in AWS for the app's ``@app.on_dynamodb_record`` handlers: read the
    table's stream (every shard, from its trim horizon) and call the handler with each batch in the event Lambda
    sends, from one background thread every ``every`` seconds once started (``make run``; as the scheduler, tests
    leave it off, so no burst shares its process with it). A handler that raises gets the same batch again next
    time (Lambda retries a batch until it succeeds); ``drain`` runs the handlers until the streams have nothing
    more, synchronously, for tests that read what a handler derives. The table is the one the handler's
    stream ARN names (the app names the local table; the deployment template puts in the real stream)."""

    def __init__(self, app: Chalice) -> None:
        import boto3
        from botocore.config import Config as BotoConfig
        from chalice.app import DynamoDBEventConfig

        from chalicelib.core import config

        self.sources = [s for s in app.event_sources if isinstance(s, DynamoDBEventConfig)]
        self.handlers = {s.name: app.handler_map[s.name] for s in self.sources}
        # Dynoxide's shard ids are shorter than botocore's model allows: no client-side validation.
        kwargs = {"endpoint_url": config.DYNAMODB_ENDPOINT, "region_name": config.REGION}
        self._streams = boto3.client("dynamodbstreams", config=BotoConfig(parameter_validation=False), **kwargs)
        self._tables = boto3.client("dynamodb", **kwargs)
        self._iterators: dict[tuple[str, str], str | None] = {}  # (handler, shard) → next iterator (None: closed)
        self.delivered: list[dict[str, Any]] = []  # every event a handler took, in order
        self.failures: list[dict[str, Any]] = []  # handlers that raised: {"handler", "error"}
        self._every = 0.5
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="local-streams")

    def start(self, every: float = 0.5) -> "LocalStreams":
        self._every = every
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=60)

    def drain(self, passes: int = 1000) -> int:
        """Deliver everything the streams hold now (and what handling it writes to them); records delivered."""
        total = 0
        for _ in range(passes):
            delivered = self._pass()
            total += delivered
            if not delivered:
                return total
        raise RuntimeError("the streams did not drain")

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._pass()
            except Exception as exc:  # noqa: BLE001 - the engine stopping under us, at shutdown
                self.failures.append({"handler": None, "error": repr(exc)})

    def _pass(self) -> int:
        delivered = 0
        with self._lock:
            for source in self.sources:
                table = source.stream_arn.split(":table/", 1)[1].split("/stream", 1)[0]
                arn = self._tables.describe_table(TableName=table)["Table"]["LatestStreamArn"]
                for shard in self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                    delivered += self._shard(source, arn, shard["ShardId"])
        return delivered

    def _shard(self, source: Any, arn: str, shard_id: str) -> int:
        key = (source.name, shard_id)
        if key not in self._iterators:
            self._iterators[key] = self._streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        iterator = self._iterators[key]
        if iterator is None:
            return 0
        answer = self._streams.get_records(ShardIterator=iterator, Limit=source.batch_size)
        records = answer.get("Records", [])
        if records:
            event = {"Records": [lambda_record(r, arn) for r in records]}
            from chalice.local import LambdaContext

            try:
                self.handlers[source.name](event, LambdaContext(source.name, 256))
            except Exception as exc:  # noqa: BLE001 - a failed batch: Lambda retries it, so the iterator stays
                self.failures.append({"handler": source.name, "error": repr(exc)})
                return 0
            self.delivered.append(event)
        self._iterators[key] = answer.get("NextShardIterator")
        return len(records)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it: the creation time in epoch seconds, and the stream's ARN."""
    body = dict(record["dynamodb"])
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        body["ApproximateCreationDateTime"] = created.timestamp()
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": body, "eventSourceARN": stream_arn}


class LocalSystem:
    """Dynoxide + moto (S3 with EventBridge delivery) + ``chalice local`` and the function URL door on free ports.

    ``processes``: serve the app from that many worker processes (``tools.app_server``, ``threads`` each), as
    Lambda serves a burst from many instances; 0 serves it from a thread of this process, where a test may
    patch the app it calls. Either way the app is imported here too: the door, the schedules, the state
    machines' tasks and S3's events run in this process."""

    def __init__(self, port: int | None = None, ops_token: str | None = None, door_port: int | None = None,
                 processes: int = 0, threads: int = 32) -> None:
        self.port = port or free_port()
        self.processes, self.threads = processes, threads
        self._workers: list = []
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.door_port = free_port() if door_port is None else door_port
        self.door_url = f"http://127.0.0.1:{self.door_port}"  # the function URL door (``tools.door``)
        self._door = None
        self.ops_token = ops_token or f"local-ops-{secrets.token_hex(12)}"
        self.dynamodb = Dynoxide()
        self.moto = MotoServer(on_object_created=self.deliver_object_created, find_lambda=self.find_lambda)
        self._server = None
        self.app = None
        self.scheduler: LocalScheduler | None = None
        self.streams: LocalStreams | None = None
        self.deliveries: list[dict] = []
        outbox_dir = ROOT / ".local"
        outbox_dir.mkdir(exist_ok=True)
        self.sms_outbox = str(outbox_dir / f"sms-outbox-{self.port}.jsonl")

    def start(self) -> "LocalSystem":
        self.dynamodb.start()
        self.moto.start()
        env = aws_environment(self.dynamodb, self.moto)
        env.update({"LOCAL_OPS_TOKEN": self.ops_token, "SESSION_KEY": secrets.token_hex(32),  # one for every worker "PUBLIC_BASE_URL": self.base_url,
                    "UPLOAD_BUCKET": "channelmall-local-uploads", "SMS_OUTBOX": self.sms_outbox,
                    "FULFILMENT_STATE_MACHINE_ARN": state_machine_arn(ORDER_FULFILMENT),
                    "SETTLEMENT_STATE_MACHINE_ARN": state_machine_arn(SETTLEMENT),
                    "REFUND_RETRY_STATE_MACHINE_ARN": state_machine_arn(REFUND_RETRY)})
        apply_environment(env)
        import boto3

        import app as app_module
        from chalicelib.core import config
        from chalicelib.tables import create_tables

        create_tables()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=config.UPLOAD_BUCKET)
        s3.put_bucket_cors(Bucket=config.UPLOAD_BUCKET, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["POST"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 300}]})
        create_state_machines()
        self.app = app_module
        if self.processes:
            self.start_workers(self.port, self.processes, self.threads)
        else:
            self._server = local_server(app_module.app, Config.create(chalice_stage="local", app_name="channel-mall"),
                                        "127.0.0.1", self.port)
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        from tools.door import LocalDoor

        self._door = LocalDoor(app_module.channel_door, self.door_port).start()
        self.streams = LocalStreams(app_module.app)  # drained on demand; ``start_streams`` polls as AWS does
        return self

    def start_workers(self, port: int | None = None, processes: int = 2, threads: int = 32) -> str:
        """Serve the app (also) from ``processes`` worker processes on ``port``; returns their base URL."""
        from tools.app_server import WorkerPool

        port = port or free_port()
        self._workers.append(WorkerPool(port, processes, threads, {}).start())
        return f"http://127.0.0.1:{port}"

    def start_scheduler(self, scale: float = 1.0) -> LocalScheduler:
        """Run the app's scheduled sweeps (webhooks each minute, remote orders and refunds every 5) as AWS would."""
        self.scheduler = LocalScheduler(self.app.app, scale).start()
        return self.scheduler

    def start_streams(self, every: float = 0.5) -> LocalStreams:
        """Run the app's stream consumers (the orders stream's figures) in the background, as Lambda's event
        source mappings do in AWS; without it, ``streams.drain()`` runs them when a test asks."""
        self.streams.start(every)
        return self.streams

    def find_lambda(self, name: str) -> Callable | None:
        """The app's handler a deployed Lambda name stands for (``channel-mall-local-<function>``), if any."""
        if self.app is None or not name.startswith(LAMBDA_PREFIX):
            return None
        return self.app.app.handler_map.get(name.removeprefix(LAMBDA_PREFIX))

    def deliver_object_created(self, bucket: str, key: str) -> None:
        """What EventBridge does in AWS: invoke the Lambda whose rule's key prefix matches (``upload_created`` for
        ``uploads/``, ``ledger_uploaded`` for ``ledgers/``) with the S3 event; a key no rule matches reaches none."""
        from chalice.app import CloudWatchEventConfig
        from chalice.local import LambdaContext

        event = s3_object_created_event(bucket, key)
        for source in self.app.app.event_sources:
            if not isinstance(source, CloudWatchEventConfig):
                continue
            prefixes = [p["prefix"] for p in source.event_pattern.get("detail", {}).get("object", {}).get("key", [])]
            if not any(key.startswith(prefix) for prefix in prefixes):
                continue
            try:
                result = self.app.app.handler_map[source.name](event, LambdaContext(source.name, 256))
            except Exception as exc:  # a failed Lambda: AWS would retry; here it is recorded for the tests
                result = {"error": repr(exc)}
            self.deliveries.append({"key": key, "result": result})

    def stop(self) -> None:
        if self.scheduler:
            self.scheduler.stop()
        if self.streams:
            self.streams.stop()
        if self._server:
            self._server.shutdown()
        for workers in self._workers:
            workers.stop()
        if self._door:
            self._door.stop()
        self.moto.stop()
        self.dynamodb.stop()
