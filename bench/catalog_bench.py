"""Catalog latency and DynamoDB read cost: `.venv/bin/python -m bench.catalog_bench [--goods 200] [--requests 300]`.

Starts its own local system (Dynoxide + the app over HTTP), seeds one
channel whose sub-pool holds ``--goods`` goods through the business functions
(so every rule and audit row applies), enters one member with a signed link,
then:

* times ``--requests`` ``GET /api/{code}/catalog?limit=20`` calls over HTTP,
  first pages and cursor pages alike, on one kept-alive connection;
* calls ``chalicelib.channels.catalog.list_page`` in-process for every page while a
  botocore handler asks DynamoDB for ``ReturnConsumedCapacity=TOTAL`` and sums
  the ``ConsumedCapacity`` it answers, giving the read capacity per page.

Dynoxide runs on this machine, so the latencies are a floor for the
code path, not a forecast for AWS; the capacity units are what AWS would bill.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.stack import LocalSystem  # noqa: E402

ACTOR = "ops:bench"
PAGE = 20
CATEGORIES = ("food", "home", "digital", "beauty")


@dataclass
class Capacity:
    """ConsumedCapacity answered by DynamoDB, per operation, while ``recording`` is on in this thread."""

    units: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)

    def reset(self) -> None:
        self.units.clear()
        self.calls.clear()

    @contextlib.contextmanager
    def recording(self):
        self._local.on = True
        try:
            yield self
        finally:
            self._local.on = False

    def _on(self) -> bool:
        return getattr(self._local, "on", False)

    def ask(self, params: dict, **_) -> None:
        if self._on():
            params["ReturnConsumedCapacity"] = "TOTAL"

    def add(self, parsed: dict, model, **_) -> None:
        if not self._on():
            return
        found = parsed.get("ConsumedCapacity")
        entries = found if isinstance(found, list) else [found] if found else []
        total = sum(float(e.get("CapacityUnits", 0)) for e in entries)
        self.units[model.name] = self.units.get(model.name, 0.0) + total
        self.calls[model.name] = self.calls.get(model.name, 0) + 1

    def install(self, *models) -> None:
        """Hook the botocore client behind each PynamoDB model (each model has its own connection)."""
        seen = set()
        for m in models:
            client = m._get_connection().connection.client
            if id(client) in seen:
                continue
            seen.add(id(client))
            for op in ("Query", "BatchGetItem", "GetItem", "Scan"):
                client.meta.events.register(f"before-parameter-build.dynamodb.{op}", self.ask)
            client.meta.events.register("after-call.dynamodb", self.add)

    @property
    def total(self) -> float:
        return sum(self.units.values())


def seed(goods_count: int) -> dict:
    from chalicelib.channels import channels, pools
    from chalicelib.core.schemas import ChannelCreate, GoodsDraft, PoolPricing, SupplierApplication
    from chalicelib.supply import goods, suppliers
    from chalicelib.supply.models import Upload

    supplier, _ = suppliers.create_by_ops(SupplierApplication(
        name="Bench Supplier", contact_name="Bench", phone="13800000009", licence_no="BENCH-000001",
        bank_account={"bank": "ICBC", "account_name": "Bench", "account_no": "6222020000000009"}), ACTOR)
    channel = channels.create(ChannelCreate(
        code="bench", name="Bench Bank", contact_name="Bench", phone="4008800009", points_mode="hosted",
        points_per_yuan=100, member_points_cap=1_000_000, redemption_quota=100_000_000), ACTOR)
    # one processed image upload that every goods shows, so the catalog signs an image link per card
    image_id = "b" * 32
    Upload(image_id, supplier_id=supplier.supplier_id, kind="image", content_type="image/png", status="processed",
           key=f"uploads/{supplier.supplier_id}/image/{image_id}", expires_at=timedelta(days=1)).save()

    def one(i: int) -> str:
        skus = [{"sku_id": f"S{k}", "spec": f"spec {k}", "settlement_price": 1000 + 37 * i + 100 * k,
                 "stock": (i * 7 + k) % 120} for k in range(1 + i % 3)]
        draft = GoodsDraft(ref=f"bench-{i:04d}", title=f"{CATEGORIES[i % 4].title()} item no.{i} "
                           f"{'tea ' if i % 5 == 0 else ''}gift box", description="Benchmark goods. " * 20,
                           category=CATEGORIES[i % 4], images=[image_id], skus=skus)
        created = goods.publish(supplier.supplier_id, draft, f"supplier:{supplier.supplier_id}")
        goods.approve(created.goods_id, {s["sku_id"]: s["settlement_price"] * 2 for s in skus}, False, ACTOR)
        rules = {s["sku_id"]: ({"price": s["settlement_price"] + 500} if i % 2 else
                               {"markup": {"payment_bps": 60, "platform_bps": 800, "channel_bps": 500}})
                 for s in skus}
        pools.put(channel.code, created.goods_id, PoolPricing(prices=rules), ACTOR)
        return created.goods_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(goods_count)))
    return {"code": channel.code, "secret": channel.secret, "goods_ids": ids}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goods", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    wall = time.perf_counter()
    noise = io.StringIO()   # the app's per-request log lines and EMF metrics; shown only if something fails
    system = None
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            system = LocalSystem().start()
            started = time.perf_counter()
            shop = seed(args.goods)
            seed_seconds = time.perf_counter() - started

            from tools.sign import entry_link
            http = requests.Session()
            r = http.get(entry_link(system.base_url, shop["code"], shop["secret"], "BENCH-M1", nickname="Bench"),
                         allow_redirects=False, timeout=30)
            assert r.status_code == 302, r.text
            token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            http.headers["Authorization"] = f"Bearer {token}"
            url = f"{system.base_url}/api/{shop['code']}/catalog"

            # walk every page once: the cursors to replay, and a check that paging covers the pool exactly
            cursors: list[str | None] = [None]
            seen: list[str] = []
            while True:
                body = http.get(url, params={"limit": PAGE, **({"cursor": cursors[-1]} if cursors[-1] else {})},
                                timeout=30).json()
                seen += [c["goods_id"] for c in body["items"]]
                if not body["next_cursor"]:
                    break
                cursors.append(body["next_cursor"])
            assert sorted(seen) == sorted(shop["goods_ids"]), "paging did not cover the pool exactly once"

            for _ in range(10):     # warm up connections and code paths
                http.get(url, params={"limit": PAGE}, timeout=30)
            first, later = [], []
            for i in range(args.requests):
                cursor = cursors[i % len(cursors)]
                params = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
                t0 = time.perf_counter()
                response = http.get(url, params=params, timeout=30)
                millis = (time.perf_counter() - t0) * 1000
                assert response.status_code == 200, response.text
                (later if cursor else first).append(millis)

            # read capacity per page, in-process, on the same tables
            from chalicelib.channels import catalog
            from chalicelib.channels.models import Channel, PoolItem
            from chalicelib.members import entry
            from chalicelib.supply.models import Goods
            capacity = Capacity()
            capacity.install(PoolItem, Goods, Channel)
            channel = entry.active_channel(shop["code"])
            per_page: list[float] = []
            per_table: dict[str, list[float]] = {}
            calls: dict[str, list[int]] = {}
            for cursor in cursors:
                capacity.reset()
                with capacity.recording():
                    catalog.list_page(channel, cursor, PAGE)
                per_page.append(capacity.total)
                for op, units in capacity.units.items():
                    per_table.setdefault(op, []).append(units)
                for op, n in capacity.calls.items():
                    calls.setdefault(op, []).append(n)
            capacity.reset()
            with capacity.recording():
                entry.active_channel(shop["code"])
            channel_read = capacity.total
            capacity.reset()
            with capacity.recording():
                catalog.list_page(channel, None, PAGE, category="food")
            filtered = capacity.total
            capacity.reset()
            with capacity.recording():
                catalog.list_page(channel, None, PAGE, keyword="tea")
            searched = capacity.total
    except BaseException:
        sys.stderr.write(noise.getvalue()[-4000:])
        raise
    finally:
        if system is not None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                system.stop()

    every = first + later
    line = "-" * 66
    print(line)
    print("catalog benchmark  (local: Dynoxide + chalice local, one client)")
    print(line)
    print(f"pool                     {args.goods} goods, {len(cursors)} pages of {PAGE}, seeded in {seed_seconds:.1f} s")
    print(f"requests                 {len(every)} x GET /api/{{code}}/catalog?limit={PAGE} "
          f"({len(first)} first pages, {len(later)} cursor pages)")
    print(f"latency all     (ms)     p50 {statistics.median(every):7.1f}   p95 {pct(every, 95):7.1f}   "
          f"mean {statistics.fmean(every):7.1f}   max {max(every):7.1f}")
    if first:
        print(f"latency first   (ms)     p50 {statistics.median(first):7.1f}   p95 {pct(first, 95):7.1f}   "
              f"mean {statistics.fmean(first):7.1f}")
    if later:
        print(f"latency cursor  (ms)     p50 {statistics.median(later):7.1f}   p95 {pct(later, 95):7.1f}   "
              f"mean {statistics.fmean(later):7.1f}")
    print(f"throughput               {len(every) / (sum(every) / 1000):.0f} req/s sequential")
    print(line)
    print("DynamoDB read capacity per catalog page (ReturnConsumedCapacity=TOTAL, eventually consistent)")
    print(f"list_page RCU            mean {statistics.fmean(per_page):6.2f}   min {min(per_page):6.2f}   "
          f"max {max(per_page):6.2f}   (pages: {', '.join(f'{u:g}' for u in per_page)})")
    for op in sorted(per_table):
        print(f"  {op:<22} mean {statistics.fmean(per_table[op]):6.2f} RCU in "
              f"{statistics.fmean(calls[op]):.1f} call(s)/page")
    print(f"+ channel status read    {channel_read:6.2f} RCU per request (the route's suspension check)")
    print(f"=> per request           {statistics.fmean(per_page) + channel_read:6.2f} RCU "
          f"(session check is stateless: 0)")
    print(f"first page, category=food  {filtered:6.2f} RCU;   first page, q=tea  {searched:6.2f} RCU")
    print(line)
    print(f"wall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
