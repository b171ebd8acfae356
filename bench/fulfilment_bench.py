"""Order fulfilment on the local stack: `.venv/bin/python -m bench.fulfilment_bench [--orders 500]`.

Starts its own local system (Dynoxide, moto executing the real ``order_fulfilment`` definition,
the app over HTTP), one hosted channel with a fake back end for the payment password, and
``--orders`` members with points. Every order is placed over HTTP from ``--clients`` threads with a
1 s shipping deadline and a 1 s receipt window (the local seconds override), so each execution
runs its whole life: Split, Wait, Deadline (the unshipped parcel is cancelled and its points go
back), Wait, Complete. Reports

- **payment to parcels written**: per order, the parcel's ``created_at`` minus the order's (both
  stamped by the app just before their transactions): p50 / p95 / max;
- **executions completed per second**: orders / (last execution's stop - first one's start), and
  the same net of the two 1 s waits every execution sleeps.

Dynoxide, moto, the app and the clients share this machine and the app and moto one Python process,
so these are a floor for the code path, not a forecast for AWS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tools.stack import LocalSystem, state_machine_arn  # noqa: E402

WAIT_SECONDS = 1


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    system = LocalSystem().start()
    try:
        run(system, args.orders, args.clients)
    finally:
        system.stop()


def run(system: LocalSystem, orders: int, clients: int) -> None:
    import boto3

    from chalicelib.orders.models import Order, Parcel
    from checkout_helpers import make_shop, stop_fakes
    from conftest import Api
    from infra.state_machines import ORDER_FULFILMENT

    os.environ["FULFILMENT_SECONDS_OVERRIDE"] = f"{WAIT_SECONDS},{WAIT_SECONDS}"
    shop = make_shop(system, Api(system.base_url, {"Authorization": f"Bearer {system.ops_token}"}), "hosted")
    members = shop.members(orders)
    with ThreadPoolExecutor(clients) as pool:
        granted = list(pool.map(lambda m: shop.grant(m, 5000).status_code, members))
    assert set(granted) == {201}, granted
    sessions = [requests.Session() for _ in range(clients)]
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        attempts = list(pool.map(lambda im: shop.place(sessions[im[0] % clients], im[1]), enumerate(members)))
    placed = time.monotonic() - started
    order_ids = [a.order_id for a in attempts if a.status == 201]
    assert len(order_ids) == orders, [a.body for a in attempts if a.status != 201][:3]
    print(f"{orders} orders placed over HTTP in {placed:.1f} s ({orders / placed:.0f}/s, {clients} clients)")

    sfn = boto3.client("stepfunctions")
    machine = state_machine_arn(ORDER_FULFILMENT)
    deadline = time.monotonic() + 600
    while True:
        done = {e["name"]: e for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=machine, statusFilter="SUCCEEDED") for e in page["executions"]}
        mine = [done[o] for o in order_ids if o in done]
        if len(mine) == orders or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    failed = [e["name"] for s in ("FAILED", "ABORTED") for e in
              sfn.list_executions(stateMachineArn=machine, statusFilter=s)["executions"] if e["name"] in order_ids]
    print(f"executions succeeded: {len(mine)} of {orders}; failed or aborted: {len(failed)}")

    lags = []
    for order_id in order_ids:
        order = Order.get(order_id)
        [parcel] = Parcel.order_index.query(order_id)
        lags.append((datetime.fromisoformat(parcel.created_at) - datetime.fromisoformat(order.created_at))
                    .total_seconds() * 1000)
    print(f"payment to parcels written (ms): p50 {statistics.median(lags):.0f}  p95 {pct(lags, 95):.0f}  "
          f"max {max(lags):.0f}")
    if mine:
        span = (max(e["stopDate"] for e in mine) - min(e["startDate"] for e in mine)).total_seconds()
        net = span - 2 * WAIT_SECONDS
        print(f"executions completed: {len(mine)} in {span:.1f} s from first start to last stop = "
              f"{len(mine) / span:.1f}/s ({len(mine) / net:.1f}/s net of the two {WAIT_SECONDS} s waits)")
    stop_fakes()


if __name__ == "__main__":
    main()
