"""Settlement of large periods on the local stack: `.venv/bin/python -m bench.settlement_bench [--sizes 10000,30000,100000]`.

Starts its own local system (Dynoxide, moto executing the real ``settlement`` definition with its Distributed
Map over the pages file in S3, the app's Lambdas in this process), creates ``--channels`` channels and
``--suppliers`` suppliers through the ops API, then for each size seeds that many paid, shipped orders into
a past month of its own: per order, the two book entries the split and the shipment write in their
transactions (``billed`` to the channel, ``payable`` to the supplier), one line each, spread over the month's
days, and one order in a hundred refunded after shipment (``returned`` and ``refunded``). Seeding uses batch
writes; orders and parcels themselves are not written, as settlement never reads them (it reads the books).

Then it starts the period's execution and reports, per size:

- **run time**: the execution's start to stop (freeze, every statement, the margin, close);
- **orders settled per second**: orders / run time;
- **read units per order**: the ``ConsumedCapacity`` DynamoDB answered (``ReturnConsumedCapacity=TOTAL`` on every
  read of the run) / orders; writes are shown too.

Dynoxide, moto and the Lambdas share this machine and one Python process: a floor for the code path, not a
forecast for AWS, where the Map's child executions run in parallel Lambdas.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tools.stack import LocalSystem  # noqa: E402

# This process only: no EMF metric lines or INFO JSON logs from the app's Lambdas between the figures.
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"

READS = ("Query", "GetItem", "BatchGetItem", "Scan")
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


class Capacity:
    """Every DynamoDB call's ``ConsumedCapacity`` in this process while on, summed as reads and writes."""

    def __init__(self) -> None:
        self.on = False
        self.read = self.write = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def ask(self, params: dict, model, **_) -> None:
        if self.on and model.name in READS + WRITES:
            params["ReturnConsumedCapacity"] = "TOTAL"

    def add(self, parsed: dict, model, **_) -> None:
        if not self.on or model.name not in READS + WRITES:
            return
        found = parsed.get("ConsumedCapacity")
        units = sum(float(e.get("CapacityUnits", 0)) for e in (found if isinstance(found, list) else [found] if found else []))
        with self._lock:
            self.calls += 1
            if model.name in READS:
                self.read += units
            else:
                self.write += units

    def install(self, *models) -> None:
        """The botocore client behind each model, and the one transactions share (``tx.transaction``)."""
        from chalicelib.core import tx

        tx.transaction()
        seen = set()
        for client in [m._get_connection().connection.client for m in models] + [tx._TX_CONNECTION.client]:
            if id(client) not in seen:
                seen.add(id(client))
                client.meta.events.register("before-parameter-build.dynamodb", self.ask)
                client.meta.events.register("after-call.dynamodb", self.add)


def seed(period_id: str, orders: int, channel_codes: list[str], supplier_ids: list[str], rnd: random.Random) -> None:
    """The books of ``orders`` paid and shipped orders in the period (batch writes, 8 threads)."""
    from chalicelib.settlement import books, periods
    from chalicelib.settlement.models import BookEntry

    days = periods.parse(period_id).days()

    def entries(start: int, end: int):
        local = random.Random(rnd.random())
        for n in range(start, end):
            parcel_id = f"B{period_id.replace('-', '')}{n:08d}-1"
            order_id = parcel_id[:-2]
            channel, supplier = local.choice(channel_codes), local.choice(supplier_ids)
            qty, settlement = local.randint(1, 3), local.randint(500, 20000)
            price = settlement + local.randint(-200, 3000)  # a few loss-priced sales
            line = {"goods_id": f"G{n % 977:05d}", "sku_id": "S1", "qty": qty, "price": price,
                    "settlement_price": settlement, "points": price * qty}  # 100 points per yuan
            billed_day = local.choice(days)
            shipped_day = min(days[-1], local.choice([d for d in days if d >= billed_day]))
            shard = books.shard_of(parcel_id)
            common = {"parcel_id": parcel_id, "order_id": order_id, "lines": [line], "points_per_yuan": 100}
            yield BookEntry(books.book(books.BILLED, f"channel.{channel}", billed_day, shard),
                            f"{billed_day}#{parcel_id}", **common)
            yield BookEntry(books.book(books.PAYABLE, f"supplier.{supplier}", shipped_day, shard),
                            f"{shipped_day}#{parcel_id}", **common)
            if n % 100 == 7:
                returned = {**common, "billed_day": billed_day, "after_shipment": True, "borne_by": "supplier"}
                yield BookEntry(books.book(books.RETURNED, f"channel.{channel}", days[-1], shard),
                                f"{days[-1]}#{parcel_id}", **returned)
                yield BookEntry(books.book(books.REFUNDED, f"supplier.{supplier}", days[-1], shard),
                                f"{days[-1]}#{parcel_id}", **returned)

    def write(bounds: tuple[int, int]) -> None:
        with BookEntry.batch_write() as batch:
            for entry in entries(*bounds):
                batch.save(entry)

    step = max(1, orders // 8 + 1)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, [(i, min(orders, i + step)) for i in range(0, orders, step)]))


def settle(period_id: str) -> dict:
    import json

    import boto3

    from chalicelib.core import config

    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=config.SETTLEMENT_STATE_MACHINE_ARN, name=f"bench-{period_id}",
                              input=json.dumps({"period_id": period_id}))["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.2)
    if described["status"] != "SUCCEEDED":
        raise SystemExit(f"settlement of {period_id} ended {described['status']}: {described.get('cause')}")
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--suppliers", type=int, default=50)
    args = parser.parse_args()
    system = LocalSystem().start()
    try:
        run(system, [int(s) for s in args.sizes.split(",")], args.channels, args.suppliers)
    finally:
        system.stop()


def run(system: LocalSystem, sizes: list[int], channel_count: int, supplier_count: int) -> None:
    from chalicelib.channels.models import Channel
    from chalicelib.settlement.models import BookEntry, SettledDay, SettlementPeriod, Statement
    from chalicelib.supply.models import Supplier
    from conftest import Api
    from helpers import channel, supplier_api

    ops = Api(system.base_url, {"Authorization": f"Bearer {system.ops_token}"})
    codes = [channel(ops)[0]["code"] for _ in range(channel_count)]
    supplier_ids = [supplier_api(system, ops)[1] for _ in range(supplier_count)]
    capacity = Capacity()
    capacity.install(BookEntry, Channel, SettledDay, SettlementPeriod, Statement, Supplier)
    rnd = random.Random(8)
    print(f"settlement bench: {channel_count} channels, {supplier_count} suppliers, one line per order, "
          f"1 % refunded after shipment (Dynoxide + moto Step Functions, one process)")
    print(f"{'orders':>8} {'seed s':>7} {'run s':>7} {'orders/s':>9} {'RCU/order':>10} {'WCU/order':>10} "
          f"{'calls':>7} {'statements':>10}")
    for i, size in enumerate(sizes):
        period_id = f"2001-{2 * i + 1:02d}"
        started = time.monotonic()
        seed(period_id, size, codes, supplier_ids, rnd)
        seeded = time.monotonic() - started
        capacity.read = capacity.write = 0.0
        capacity.calls = 0
        capacity.on = True
        described = settle(period_id)
        capacity.on = False
        seconds = (described["stopDate"] - described["startDate"]).total_seconds()
        totals = SettlementPeriod.get(period_id).totals.as_dict()
        print(f"{size:>8} {seeded:>7.1f} {seconds:>7.1f} {size / seconds:>9.0f} {capacity.read / size:>10.3f} "
              f"{capacity.write / size:>10.3f} {capacity.calls:>7} {int(totals['statements']):>10}")


if __name__ == "__main__":
    main()
