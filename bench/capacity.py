"""The flash-sale capacity model: `.venv/bin/python -m bench.capacity [--rate 10000 --units 2000]`.

Runs a flash-sale burst on the local system (Dynoxide + moto + the app over HTTP: ``--attempts`` checkouts by
``--members`` members on an allotment of ``--allotment``), with every DynamoDB request of the app going through a
counting proxy (``tests/dynamo_proxy.py``): reads and writes per partition key (items sharing a hash key share a
partition; each quota shard and each sale shard is its own), every Step Functions ``StartExecution`` and every
HTTP request (one API Lambda invocation each). From the measured figures per attempt and per paid order it projects, for a target
rate (default **10,000 checkout attempts/s on one sale of 2,000 units**):

* the hottest partition key's RCU/s and WCU/s against DynamoDB's per-partition limits (3,000 RCU/s, 1,000 WCU/s);
  writes are projected at the selling peak (every attempt pays until the units are gone), reads at the target;
  items read through the checkout cache (``core.cache``) at most once per instance per bound;
* Step Functions Standard ``StartExecution``/s and state transitions/s (the order_fulfilment definition's
  happy path) against the account's default quotas;
* Lambda concurrency from the measured latency (Little's law) against the default regional concurrency;
* the cost per 1,000 paid orders (Lambda GB-s at the configured memory, requests, DynamoDB request units, Step
  Functions transitions, API Gateway requests) at the prices below.

It exits 1 when any figure passes its limit at the target, so CI can run it at a small size.

Limits and prices (us-east-1; AWS's public quota and pricing pages as of November 2024, after DynamoDB's
on-demand price cut of 2024-11-01 — not re-checked from this machine, which reaches no web page):
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This process only: no EMF metric lines or INFO logs from the app on stdout (Powertools reads both settings from
# the environment at import); a fulfilment execution would wait an hour for shipment.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("FULFILMENT_SECONDS_OVERRIDE", "3600,3600")

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

REGION = "us-east-1"
PRICES_AS_OF = "2024-11"
LIMITS = {
    "partition_rcu_per_s": 3_000,  # DynamoDB: one partition serves 3,000 read units/s
    "partition_wcu_per_s": 1_000,  # ... and 1,000 write units/s
    "sfn_start_execution_per_s": 300,  # Step Functions Standard StartExecution refill rate (bucket 1,300), us-east-1
    "sfn_state_transitions_per_s": 5_000,  # Standard state transitions refill rate (bucket 5,000), us-east-1
    "lambda_concurrency": 1_000,  # default concurrent executions per account and region
}
PRICES = {  # USD, us-east-1
    "lambda_gb_second": 0.0000166667,  # x86
    "lambda_request": 0.20 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_read_unit": 0.125 / 1e6,  # on-demand read request unit
    "sfn_state_transition": 0.025 / 1_000,  # Standard workflows
    "api_gateway_request": 3.50 / 1e6,  # REST API, first 333 M/month
}
TRANSACTIONAL_WRITE, PLAIN_WRITE, STRONG_READ, EVENTUAL_READ = 2.0, 1.0, 1.0, 0.5  # units per item up to 1 KB/4 KB
KB = 1024


@dataclass
class Figures:
    attempts: int = 0
    paid: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # in the burst (queued on this machine's 2 cores)
    sequential: list[float] = field(default_factory=list)  # one attempt at a time, each paid: an instance's time
    outcomes: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)  # partition key → read units
    writes: Counter = field(default_factory=Counter)  # partition key → write units
    writers: Counter = field(default_factory=Counter)  # partition key → write requests that touched it
    shards: dict[str, int] = field(default_factory=dict)  # sharded table → the burst's shard count
    sfn_starts: int = 0
    http_requests: int = 0
    cpu_seconds: float = 0.0


def _keys_of_tables() -> dict[str, tuple[str, str | None]]:
    from chalicelib.tables import ALL_MODELS

    out = {}
    for model in ALL_MODELS:
        hash_attr, range_attr = model._hash_key_attribute(), model._range_key_attribute()
        out[model.Meta.table_name] = (hash_attr.attr_name, range_attr.attr_name if range_attr else None)
    return out


def _value(attribute: dict) -> str:
    return str(next(iter(attribute.values())))


def partition(table: str, item_or_key: dict, keys: dict[str, tuple[str, str | None]]) -> str:
    """``table:hash``: the partition key an item lives under (its short table name and hash key value)."""
    hash_name = keys[table][0]
    return f"{table.split('-', 2)[-1]}:{_value(item_or_key[hash_name])}"


def count_request(operation: str, body: dict, figures: Figures, keys: dict[str, tuple[str, str | None]],
                  lock: threading.Lock) -> None:
    """Read and write units of one DynamoDB request, by partition key (items of up to 1 KB written, 4 KB read)."""
    reads: Counter = Counter()
    writes: Counter = Counter()
    if operation == "GetItem":
        reads[partition(body["TableName"], body["Key"], keys)] += STRONG_READ if body.get("ConsistentRead") \
            else EVENTUAL_READ
    elif operation == "BatchGetItem":
        for table, request in body["RequestItems"].items():
            unit = STRONG_READ if request.get("ConsistentRead") else EVENTUAL_READ
            for key in request["Keys"]:
                reads[partition(table, key, keys)] += unit
    elif operation == "Query":
        values = body.get("ExpressionAttributeValues") or {}
        first = _value(next(iter(values.values()))) if values else "?"
        reads[f"{body['TableName'].split('-', 2)[-1]}:{first}"] += STRONG_READ if body.get("ConsistentRead") \
            else EVENTUAL_READ
    elif operation == "TransactWriteItems":
        for item in body["TransactItems"]:
            (kind, action), = item.items()
            target = action.get("Item") if kind == "Put" else action["Key"]
            size = max(1, math.ceil(len(json.dumps(action.get("Item", {}))) / KB)) if kind == "Put" else 1
            writes[partition(action["TableName"], target, keys)] += TRANSACTIONAL_WRITE * size
    elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
        target = body.get("Item") if operation == "PutItem" else body["Key"]
        writes[partition(body["TableName"], target, keys)] += PLAIN_WRITE
    with lock:
        figures.reads.update(reads)
        figures.writes.update(writes)
        figures.writers.update(writes.keys())


def measure(system: Any, attempts: int, members: int, allotment: int, shards: int, workers: int,
            sequential: int = 10, cache_seconds: float = 1.0, quota_shards: int = 1) -> Figures:
    """One flash-sale burst on ``system`` (already started, app in this process), everything counted, with the
    checkout cache at ``cache_seconds`` as deployed (this one process is one instance); the sale has ``shards``
    shards, the channel's quota period ``quota_shards``."""
    import pytest
    import requests

    from checkout_helpers import PASSWORD, burst, make_shop
    from conftest import Api
    from dynamo_proxy import DynamoProxy, route_through
    from chalicelib.core import cache
    from chalicelib.orders import fulfilment

    figures = Figures(shards={"sale-shards": min(shards, allotment), "quota-shards": quota_shards})
    keys = _keys_of_tables()
    # As on AWS, the fulfilment executor is not the app's process: moto records each execution started and runs
    # none of its tasks here (their invocations and transitions are the definition's, ``happy_path_transitions``).
    def executing(on: bool) -> None:
        requests.post(f"{system.moto.endpoint}/moto-api/config",
                      json={"stepfunctions": {"execute_state_machine": on}}, timeout=10).raise_for_status()
    lock = threading.Lock()
    ops = Api(system.base_url, {"Authorization": f"Bearer {system.ops_token}"})
    shop = make_shop(system, ops, "hosted", stock=allotment * 2, cap=10**9, quota=10**9, api_timeout=10.0,
                     shards=quota_shards)
    people = shop.members(members)
    for m in people:
        assert shop.grant(m, 10**6).status_code == 201
    now = int(time.time())
    for sale_id, units in (("cap", allotment), ("seq", sequential)):
        sale = ops.post(f"/ops/channels/{shop.code}/sales", json={
            "sale_id": sale_id, "goods_id": shop.goods_id, "sku_id": shop.sku_id, "price_points": 1_000,
            "allotment": units, "starts_at": now - 1, "ends_at": now + 3600, "member_limit": 99,
            "shards": min(shards, units)})
        assert sale.status_code == 201, sale.text
    # An instance's time per attempt: paid attempts one at a time (nothing queued), before the burst.
    session = requests.Session()
    for _ in range(sequential):
        one = shop.place(session, people[0], body={"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id,
                                                              "qty": 1, "sale_id": "seq"}], "password": PASSWORD})
        assert one.status == 201, one.body
        figures.sequential.append(one.done - one.sent)

    class Counting(DynamoProxy):
        def _handle(self, handler) -> None:  # count, then forward as the proxy does
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length)
            operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2]
            if counting.is_set():
                count_request(operation, json.loads(body or b"{}"), figures, keys, lock)
            status, headers, answer = self._forward(handler, body)
            self._answer(handler, status, headers, answer)

    counting = threading.Event()
    proxy = Counting(system.dynamodb.endpoint).start()
    patch = pytest.MonkeyPatch()
    patch.setattr(cache, "BOUND", cache_seconds)
    executing(False)
    started = Counter()
    client = fulfilment._sfn()
    client.meta.events.register("after-call.sfn.StartExecution",
                                lambda **_: started.update(["start"]) if counting.is_set() else None)
    try:
        route_through(proxy, patch, plain=True)
        body = {"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id, "qty": 1, "sale_id": "cap"}],
                "password": PASSWORD}
        tasks = [lambda s, m=people[i % len(people)]: shop.place(s, m, body=body, retries_on_busy=0)
                 for i in range(attempts)]
        counting.set()
        cpu, began = time.process_time(), time.perf_counter()
        results = burst(system.base_url, tasks, workers=workers)
        figures.seconds = time.perf_counter() - began
        figures.cpu_seconds = time.process_time() - cpu
        counting.clear()
    finally:
        executing(True)
        patch.undo()
        client.meta.events.unregister("after-call.sfn.StartExecution")
        proxy.stop()
    figures.attempts = len(results)
    figures.http_requests = len(results)
    figures.latencies = [r.done - r.sent for r in results]
    figures.outcomes = Counter(f"{r.status} {r.code or ''}".strip() for r in results)
    figures.paid = figures.outcomes.get("201", 0)
    figures.sfn_starts = started["start"]
    return figures


def happy_path_transitions() -> int:
    """State transitions of one order_fulfilment execution that runs to its end (each state entered)."""
    from infra.state_machines import order_fulfilment

    definition = order_fulfilment()
    state, entered = definition["StartAt"], 0
    while state:
        entered += 1
        state = definition["States"][state].get("Next")
    return entered


def fulfilment_invocations() -> int:
    """Lambda invocations of one paid order's fulfilment: its Task states."""
    from infra.state_machines import order_fulfilment

    return sum(1 for s in order_fulfilment()["States"].values() if s["Type"] == "Task")


CACHED_TABLES = ("channels", "pool", "goods", "stock", "partner-breakers")  # read through ``core.cache``
# Shards read and written by many attempts by design (a random shard each, or every shard): projected per table and
# shard count (``hottest_shard``), not from how many requests each shard happened to take in a small burst.
SHARDED_TABLES = ("quota-shards", "sale-shards")


def hottest_shard(units_per_s: float, shards: int, unit: float = 1.0) -> float:
    """The hottest of ``shards`` sharing ``units_per_s`` by a uniform random choice per request of ``unit`` units:
    the even share plus three standard deviations of its (Poisson) count of requests; a little over where every
    request reads every shard (the quota's)."""
    even = units_per_s / max(shards, 1)
    return even + 3 * math.sqrt(even * unit)


# Read again by every instance once per bound after a sell-out (``offers``' sold-out state), besides the selling
# phase's one random shard per attempt measured.
REREAD_TABLES = CACHED_TABLES + ("sale-shards",)


def model(figures: Figures, rate: int, units: int, memory_mb: int, cache_seconds: float) -> tuple[list[dict], dict]:
    """The projected figures at ``rate`` attempts/s on a sale of ``units``, each with its limit."""
    per_attempt_latency = statistics.mean(figures.sequential)
    concurrency = rate * per_attempt_latency
    paid_share = figures.paid / figures.attempts
    # Writes at the selling peak: every attempt pays until the units are gone, so the first second sells
    # min(rate, units) orders; reads at the target rate.
    peak_orders = min(rate, units)
    rows = []

    def cached(key: str) -> bool:
        return key.split(":", 1)[0] in REREAD_TABLES and cache_seconds > 0

    def table(key: str) -> str:
        return key.split(":", 1)[0]

    def by_shard(per_key: dict[str, float], writes: bool) -> dict[str, float]:
        """``per_key`` with each sharded table's keys replaced by its hottest shard at the target."""
        out = {k: v for k, v in per_key.items() if table(k) not in SHARDED_TABLES}
        for name in SHARDED_TABLES:
            total = sum(v for k, v in per_key.items() if table(k) == name)
            if total:
                n = figures.shards.get(name) or sum(1 for k in per_key if table(k) == name)
                requests = sum(v for k, v in figures.writers.items() if table(k) == name)
                unit = sum(v for k, v in figures.writes.items() if table(k) == name) / requests if writes else 1.0
                out[f"{name}:(hottest of {n})"] = hottest_shard(total, n, unit)
        return out

    # This process is one instance: what it read per attempt, plus each instance's re-reads once per bound.
    read_rate = {k: v + (concurrency / cache_seconds if cached(k) else 0) for k, v in
                 by_shard({k: v / figures.attempts * rate for k, v in figures.reads.items()}, False).items()}
    # A key written by only a few requests belongs to one order or member (written a few times in its life);
    # the shared ones take their share of every paid order's writes, each shard its share of its table's.
    shared = {k: v for k, v in figures.writes.items()
              if figures.writers[k] > max(3, figures.paid // 20) or table(k) in SHARDED_TABLES}
    write_rate = by_shard({k: v / max(figures.paid, 1) * peak_orders for k, v in shared.items()}, True)
    def hottest(rates: dict[str, float], count: int) -> list[tuple[str, float]]:
        """The ``count`` hottest keys, and every sharded table's hottest shard (always shown)."""
        top = sorted(rates.items(), key=lambda kv: -kv[1])[:count]
        return top + [(k, v) for k, v in rates.items() if table(k) in SHARDED_TABLES and (k, v) not in top]

    for key, value in hottest(read_rate, 4):
        rows.append({"figure": f"read key {key} RCU/s" + (" (cached)" if cached(key) else ""), "value": value,
                     "limit": LIMITS["partition_rcu_per_s"]})
    for key, value in hottest(write_rate, 3) or [("(none shared)", 0.0)]:
        rows.append({"figure": f"write key {key} WCU/s (selling peak)", "value": value,
                     "limit": LIMITS["partition_wcu_per_s"]})
    # Starts from the request path (measured; a sale's orders start none) plus the buffer's paced drain
    # (``sales.starts``: every sale order, at most START_RATE a second).
    from chalicelib.sales import starts as sale_starts

    starts_per_order = figures.sfn_starts / max(figures.paid, 1)
    start_rate = peak_orders * starts_per_order + min(peak_orders, sale_starts.START_RATE)
    rows.append({"figure": "Step Functions StartExecution/s (request path + the sale buffer's drain)",
                 "value": start_rate, "limit": LIMITS["sfn_start_execution_per_s"]})
    transitions = happy_path_transitions()
    # At the peak each started execution makes its first transitions (Split, then into the shipping Wait); the
    # rest come hours later, spread out.
    rows.append({"figure": "Step Functions state transitions/s (each start: Split and the Wait it enters)",
                 "value": start_rate * 2, "limit": LIMITS["sfn_state_transitions_per_s"]})
    rows.append({"figure": "Lambda concurrency (API, rate x mean latency)", "value": concurrency,
                 "limit": LIMITS["lambda_concurrency"]})
    # Cost per 1,000 paid orders: the attempts it takes (measured share), each an API invocation and its reads and
    # writes; each paid order's fulfilment tasks and transitions.
    attempts_per_1000 = 1000 / paid_share if paid_share else float("inf")
    read_units = sum(figures.reads.values()) / figures.attempts * attempts_per_1000
    write_units = sum(figures.writes.values()) / figures.attempts * attempts_per_1000
    invocations = attempts_per_1000 + 1000 * fulfilment_invocations()
    gb_seconds = attempts_per_1000 * per_attempt_latency * memory_mb / 1024
    cost = {
        "lambda_compute": gb_seconds * PRICES["lambda_gb_second"],
        "lambda_requests": invocations * PRICES["lambda_request"],
        "dynamodb_reads": read_units * PRICES["dynamodb_read_unit"],
        "dynamodb_writes": write_units * PRICES["dynamodb_write_unit"],
        "step_functions": 1000 * transitions * PRICES["sfn_state_transition"],
        "api_gateway": attempts_per_1000 * PRICES["api_gateway_request"],
    }
    cost["total"] = sum(cost.values())
    return rows, {"attempts_per_1000_orders": attempts_per_1000, "usd": cost, "transitions_per_order": transitions,
                  "lambda_invocations_per_order": invocations / 1000, "mean_latency_s": per_attempt_latency}


def report(figures: Figures, rows: list[dict], cost: dict, rate: int, units: int) -> str:
    lines = [f"burst: {figures.attempts} attempts, {figures.paid} paid in {figures.seconds:.2f} s; outcomes "
             f"{dict(figures.outcomes)}; mean latency in the burst {statistics.mean(figures.latencies) * 1000:.0f} ms, "
             f"alone {cost['mean_latency_s'] * 1000:.0f} ms; process CPU "
             f"{figures.cpu_seconds / figures.attempts * 1000:.1f} ms/attempt",
             f"per attempt: {sum(figures.reads.values()) / figures.attempts:.2f} RCU, "
             f"{sum(figures.writes.values()) / figures.attempts:.2f} WCU; SFN starts on the request path per "
             f"paid order {figures.sfn_starts / max(figures.paid, 1):.2f} (sale orders wait in the buffer)",
             "hottest keys (units in the burst): reads " + ", ".join(f"{k} {v:g}" for k, v in
                                                               figures.reads.most_common(4))
             + "; writes " + ", ".join(f"{k} {v:g}" for k, v in figures.writes.most_common(4)),
             f"target: {rate:,} attempts/s on one sale of {units:,} units ({REGION}, limits and prices as of "
             f"{PRICES_AS_OF})"]
    for row in rows:
        mark = "OVER" if row["value"] > row["limit"] else "ok"
        lines.append(f"  {mark:4} {row['figure']}: {row['value']:,.0f} (limit {row['limit']:,})")
    usd = cost["usd"]
    lines.append(f"cost per 1,000 paid orders: ${usd['total']:.4f} (" + ", ".join(
        f"{k} ${v:.4f}" for k, v in usd.items() if k != "total") + f"); {cost['attempts_per_1000_orders']:,.0f} "
        f"attempts, {cost['lambda_invocations_per_order']:.2f} Lambda invocations and "
        f"{cost['transitions_per_order']} state transitions per order")
    return "\n".join(lines)


def over(rows: list[dict]) -> list[str]:
    return [row["figure"] for row in rows if row["value"] > row["limit"]]


def main(argv: list[str] | None = None) -> int:
    from chalicelib.sales import rules

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=2_000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--allotment", type=int, default=200)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=10, help="paid attempts one at a time: the latency")
    parser.add_argument("--rate", type=int, default=10_000, help="target checkout attempts/s on one sale")
    parser.add_argument("--units", type=int, default=2_000, help="the target sale's units")
    parser.add_argument("--quota-shards", type=int, default=None,
                        help="the channel's quota period shards (default: as many as the sale's, from the rate)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the API function's memory (.chalice)")
    parser.add_argument("--cache-seconds", type=float, default=1.0, help="CHECKOUT_CACHE_SECONDS deployed")
    parser.add_argument("--ten-x", action="store_true", help="also print the figures at 10x the target")
    args = parser.parse_args(argv)
    from chalice.local import ChaliceRequestHandler

    from tools.stack import LocalSystem

    ChaliceRequestHandler.log_message = lambda self, format, *a: None
    system = LocalSystem().start()
    try:
        shards = rules.shards_for(args.rate)
        figures = measure(system, args.attempts, args.members, args.allotment, shards, args.workers,
                          args.sequential, args.cache_seconds, args.quota_shards or shards)
    finally:
        system.stop()
    rows, cost = model(figures, args.rate, args.units, args.memory_mb, args.cache_seconds)
    print(report(figures, rows, cost, args.rate, args.units))
    if args.ten_x:  # the same measurement at ten times the target: what breaks first
        more, _ = model(figures, args.rate * 10, args.units * 10, args.memory_mb, args.cache_seconds)
        print(f"at 10x ({args.rate * 10:,} attempts/s, {args.units * 10:,} units):")
        for row in sorted(more, key=lambda r: -r["value"] / r["limit"]):
            print(f"  {'OVER' if row['value'] > row['limit'] else 'ok':4} {row['figure']}: {row['value']:,.0f} "
                  f"(limit {row['limit']:,}, {row['value'] / row['limit']:.1f}x)")
    failed = over(rows)
    if failed:
        print("OVER THE LIMIT at the target: " + "; ".join(failed))
    return 1 if failed else 0


__doc__ += "\n".join(f"  {name}: {value:,}" for name, value in LIMITS.items()) + "\n" + "\n".join(
    f"  price {name}: ${value}" for name, value in PRICES.items())

if __name__ == "__main__":
    sys.exit(main())
