"""Checkout throughput, latency and DynamoDB cost: `.venv/bin/python -m bench.checkout_bench`.

Starts its own local system (Dynoxide + the app over HTTP) and a fast local fake
channel back end that answers the payment-password API, seeds one hosted channel with a big
quota, one goods with a big stock and a wallet per member, then, on the same Dynoxide:

1. **raw commit rate** — the exact ``TransactWriteItems`` a checkout sends (order put, quota shard
   update with the period and pricing-version conditions, wallet update, ``Stock`` update), captured
   from a real checkout and replayed with boto3 from ``--threads`` threads, each thread its own
   member and order ids, all on the same channel, quota and goods items (as checkouts are);
2. **checkout rate over HTTP** — ``POST /api/{code}/orders`` from ``--clients`` concurrent
   clients (one member each, password auth through the fake channel), with p50/p95 latency;
3. their ratio: the share of the database's commit ceiling the whole request path reaches;
4. **sequential latency** — one client: ``--sequential`` HTTP checkouts one after another, next to
   the same number of raw transactions of the same items from one thread;
5. **cost per order** — ``--orders`` checkouts in-process (``chalicelib.checkout.checkout.place`` plus the
   route's channel read) while botocore hooks ask for ``ReturnConsumedCapacity=TOTAL``, sum the
   ``ConsumedCapacity`` DynamoDB answers (reads and writes), count the DynamoDB calls (round trips)
   before and at the transaction, and the checking thread's own CPU time (``time.thread_time``:
   Dynoxide is another process and the fake channel answers on other threads). Only the checking
   thread's calls count: each paid order starts its ``order_fulfilment`` execution (moto, in this
   process), whose split task reads the order and writes parcels, outbox and the order (off the sparse
   unsplit index) on other threads; those calls are shown apart, per order, not added in. The executions
   then wait (``FULFILMENT_SECONDS_OVERRIDE``, an hour), and between phases the bench waits until the
   checkouts' splits are done, so one phase's splits do not run into the next one's figures;
6. **a remote-mode order** — the same for a remote channel (the fake keeps the points and deducts):
   its checkout transaction's WCU apart from the confirm transaction after the deduct.

Dynoxide, the app and the fake share this machine (and the app and fake one Python
process), so rates and latencies are a floor for the code path, not a forecast for AWS.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# This process only: no EMF metric lines or INFO JSON logs from the app on stdout (Powertools reads both
# settings from the environment), and every paid order's fulfilment execution waits an hour for shipment
# after its split (local-only override), so nothing but the split runs while the bench does.
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
os.environ["FULFILMENT_SECONDS_OVERRIDE"] = "3600,3600"

from chalice.local import ChaliceRequestHandler  # noqa: E402

from tools.stack import LocalSystem  # noqa: E402

# ... nor the local server's per-request access log ("127.0.0.1 - - [...] POST ..."), http.server's log_message.
ChaliceRequestHandler.log_message = lambda self, format, *args: None

ACTOR = "ops:bench"
PASSWORD = "135790"
PRICE = 1200
READ_OPS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --- set-up, through the business functions -------------------------------------------------

def seed(members: int, fake_url: str) -> dict:
    from chalicelib.channels import channels
    from chalicelib.checkout import quotas, wallets
    from chalicelib.members import members as members_mod, sessions
    from chalicelib.supply import goods, pools, suppliers
    from chalicelib.core.schemas import ChannelCreate, GoodsDraft, PoolPricing, SupplierApplication

    code = f"bench-{uuid.uuid4().hex[:6]}"
    channel = channels.create(ChannelCreate(
        code=code, name="Bench Bank", contact_name="Bench", phone="4008800009", points_mode="hosted",
        points_per_yuan=100, member_points_cap=10**9, redemption_quota=10**12, api_base_url=fake_url,
        payment_auth="channel_password"), ACTOR)
    now = int(time.time())
    quotas.open_period(code, "P1", now - 10, now + 3600, None, ACTOR)
    supplier, _ = suppliers.create_by_ops(SupplierApplication(
        name="Bench Supplier", contact_name="Bench", phone="13800000009", licence_no="BENCH-000002",
        bank_account={"bank": "ICBC", "account_name": "Bench", "account_no": "6222020000000009"}), ACTOR)
    created = goods.publish(supplier.supplier_id, GoodsDraft(
        ref="bench-checkout", title="Tea gift box", category="food", description="Longjing, 250 g",
        skus=[{"sku_id": "S1", "spec": "250 g", "settlement_price": 1000, "stock": 10_000_000}]),
        f"supplier:{supplier.supplier_id}")
    goods.approve(created.goods_id, {"S1": PRICE}, False, ACTOR)
    pools.put(code, created.goods_id, PoolPricing(prices={}), ACTOR)
    channel = channels.get(code)

    def one(i: int) -> dict:
        external = f"BM{i:05d}"
        member = members_mod.enter(code, external, nickname=f"Bench {i}")
        wallets.grant(channel, external, f"g{i:05d}", 10**9, now + 3000)
        token, _ = sessions.issue(member.member_id, code)
        return {"external": external, "member_id": member.member_id, "lot": f"g{i:05d}", "token": token}

    with ThreadPoolExecutor(8) as pool:
        people = list(pool.map(one, range(members)))
    return {"code": code, "secret": channel.secret, "goods_id": created.goods_id, "members": people}


def seed_remote(goods_id: str, fake) -> dict:
    """A remote-mode channel (the fake keeps the members' points) selling the same goods, one member."""
    from chalicelib.channels import channels
    from chalicelib.checkout import quotas
    from chalicelib.members import members as members_mod
    from chalicelib.supply import pools
    from chalicelib.core.schemas import ChannelCreate, PoolPricing

    code = f"benchr-{uuid.uuid4().hex[:6]}"
    channel = channels.create(ChannelCreate(
        code=code, name="Bench Remote Bank", contact_name="Bench", phone="4008800009", points_mode="remote",
        points_per_yuan=100, member_points_cap=10**12, redemption_quota=10**12, api_base_url=fake.url,
        payment_auth="channel_password"), ACTOR)
    fake.secret = channel.secret
    now = int(time.time())
    quotas.open_period(code, "P1", now - 10, now + 3600, None, ACTOR)
    pools.put(code, goods_id, PoolPricing(prices={}), ACTOR)
    fake.member("BR00001", PASSWORD, 10**12)
    member = members_mod.enter(code, "BR00001", nickname="Bench remote")
    return {"code": code, "goods_id": goods_id, "member_id": member.member_id}


def run_all(run, people: list[dict]) -> float:
    """One thread per member, all started together; the wall time they took."""
    threads = [threading.Thread(target=run, args=(m,)) for m in people]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


# --- 1. the raw transaction -----------------------------------------------------------------

def capture_transaction(shop: dict, member: dict) -> dict:
    """The TransactWriteItems parameters of one real checkout, as PynamoDB sends them."""
    from chalicelib.checkout import checkout
    from chalicelib.core import models
    from chalicelib.members import entry

    lines = [checkout.LineRequest(shop["goods_id"], "S1", 1)]
    channel = entry.active_channel(shop["code"])
    checkout.place(channel, member["member_id"], uuid.uuid4().hex, lines, password=PASSWORD)  # warm-up
    captured: list[dict] = []
    me = threading.get_ident()

    def grab(params: dict, **_) -> None:
        # This thread's call only: the fulfilment execution that a paid order starts splits the previous
        # (warm-up) order into parcels in a background thread, with its own TransactWriteItems (parcel put,
        # outbox put, order update) on the same client. Capturing that one replays the wrong transaction.
        if threading.get_ident() == me:
            captured.append(copy.deepcopy(params))

    events = models._TX_CONNECTION.client.meta.events
    events.register("before-parameter-build.dynamodb.TransactWriteItems", grab, unique_id="bench-capture")
    try:
        checkout.place(channel, member["member_id"], uuid.uuid4().hex, lines, password=PASSWORD)
    finally:
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", unique_id="bench-capture")
    template = captured[-1]
    tables = [next(iter(i.values()))["TableName"].rsplit("-", 1)[-1] for i in template["TransactItems"]]
    assert "Put" in template["TransactItems"][0] and tables[0] == "orders" and len(tables) >= 4, tables
    return template


def settle_splits(code: str, since: str, timeout: float = 60.0) -> float:
    """Wait until the fulfilment executions of the channel's checkouts (order ids "O…", created after
    ``since``) have split their orders (off the sparse unsplit index): the split's background writes and CPU
    then do not fall into the next phase. Raw replayed orders ("B…", created_at of the captured order) are
    paid orders no execution runs for: they stay on the index and are left out. The seconds waited."""
    from chalicelib.core.models import Order

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        left = Order.unsplit_index.query(code, Order.created_at > since,
                                         filter_condition=Order.order_id.startswith("O"))
        if next(iter(left), None) is None:
            break
        time.sleep(0.1)
    return time.perf_counter() - t0


def shape(template: dict) -> str:
    kinds = []
    for item in template["TransactItems"]:
        (kind, body), = item.items()
        kinds.append(f"{kind}({body['TableName'].rsplit('-', 1)[-1]})")
    return " + ".join(kinds)


def for_member(template: dict, source: dict, member: dict) -> dict:
    """The captured transaction re-aimed at another member's wallet lot and a fresh order id."""
    params = copy.deepcopy(template)
    if "ClientRequestToken" in params:  # as checkout sends one, each replay its own
        params["ClientRequestToken"] = uuid.uuid4().hex
    for item in params["TransactItems"]:
        (kind, body), = item.items()
        if kind == "Put" and "order_id" in body["Item"]:
            body["Item"]["order_id"] = {"S": "B" + uuid.uuid4().hex[:19].upper()}
            body["Item"]["member_id"] = {"S": member["member_id"]}
        if body.get("Key", {}).get("member_id") == {"S": source["member_id"]}:
            body["Key"]["member_id"] = {"S": member["member_id"]}
            names = body.get("ExpressionAttributeNames", {})
            for k, v in names.items():
                if v == source["lot"]:
                    names[k] = member["lot"]
    return params


def raw_commits(endpoint: str, template: dict, source: dict, people: list[dict], seconds: float) -> dict:
    import boto3
    from botocore.config import Config

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=Config(max_pool_connections=len(people) + 4, retries={"max_attempts": 1}))
    outcome: Counter = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(len(people))

    def run(member: dict) -> None:
        ready = [for_member(template, source, member) for _ in range(50)]  # built ahead, off the clock
        start.wait()
        deadline = time.perf_counter() + seconds
        done, mine, i = Counter(), [], 0
        while time.perf_counter() < deadline:
            params = ready[i] if i < len(ready) else for_member(template, source, member)
            i += 1
            t0 = time.perf_counter()
            try:
                client.transact_write_items(**params)
                done["committed"] += 1
            except client.exceptions.TransactionCanceledException as exc:
                reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])} - {"None"}
                done["cancelled " + ",".join(sorted(reasons))] += 1
            except Exception as exc:  # throttling, conflicts: counted, not hidden
                done[type(exc).__name__] += 1
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            outcome.update(done)
            latencies.extend(mine)

    elapsed = run_all(run, people)
    return {"outcome": outcome, "rate": outcome["committed"] / elapsed, "latencies": latencies, "elapsed": elapsed}


# --- 2. checkout over HTTP --------------------------------------------------------------------

def http_checkouts(base_url: str, shop: dict, people: list[dict], seconds: float) -> dict:
    url = f"{base_url}/api/{shop['code']}/orders"
    body = {"lines": [{"goods_id": shop["goods_id"], "sku_id": "S1", "qty": 1}], "password": PASSWORD}
    outcome: Counter = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(len(people))

    def run(member: dict) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {member['token']}"
        http.get(f"{base_url}/api/{shop['code']}/me", timeout=30)  # connect before the clock starts
        start.wait()
        deadline = time.perf_counter() + seconds
        done, mine = Counter(), []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = http.post(url, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=60)
            mine.append((time.perf_counter() - t0) * 1000)
            done["201 paid" if r.status_code == 201 else f"{r.status_code} {r.text[:60]}"] += 1
        with lock:
            outcome.update(done)
            latencies.extend(mine)

    elapsed = run_all(run, people)
    return {"outcome": outcome, "rate": outcome["201 paid"] / elapsed, "latencies": latencies, "elapsed": elapsed}


# --- 4. capacity units per order ------------------------------------------------------------------

class Capacity:
    """ReturnConsumedCapacity=TOTAL on every data call of the app's PynamoDB clients, summed per op."""

    def __init__(self) -> None:
        self.on = False
        self.tx_seconds = 0.0  # wall time inside TransactWriteItems calls
        self._tx_started = 0.0
        self.read: dict[str, float] = defaultdict(float)
        self.write: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.before_tx = 0  # DynamoDB calls made before the checkout's TransactWriteItems
        self._seen_tx = False
        self.thread = threading.get_ident()  # the checking thread: fulfilment tasks write on other threads
        self.elsewhere: Counter = Counter()  # calls of other threads meanwhile (the background order split)

    def ask(self, params: dict, model, **_) -> None:
        if self.on and (model.name in READ_OPS or model.name in WRITE_OPS) and threading.get_ident() == self.thread:
            params["ReturnConsumedCapacity"] = "TOTAL"
            if model.name == "TransactWriteItems":
                self._tx_started = time.perf_counter()

    def add(self, parsed: dict, model, **_) -> None:
        if not self.on or model.name not in READ_OPS | WRITE_OPS:
            return
        if threading.get_ident() != self.thread:
            self.elsewhere[model.name] += 1
            return
        name = model.name
        if name == "TransactWriteItems" and self._seen_tx:
            name = "TransactWriteItems after"  # a remote order's confirm, not the checkout's own transaction
        elif name == "TransactWriteItems":
            self.tx_seconds += time.perf_counter() - self._tx_started
            self._seen_tx = True
        elif not self._seen_tx:
            self.before_tx += 1
        self.calls[name] += 1
        found = parsed.get("ConsumedCapacity")
        for e in found if isinstance(found, list) else [found] if found else []:
            table = e.get("TableName", "?").rsplit("-", 1)[-1]
            label = f"{name} {table}"
            if "ReadCapacityUnits" in e or "WriteCapacityUnits" in e:
                self.read[label] += float(e.get("ReadCapacityUnits") or 0)
                self.write[label] += float(e.get("WriteCapacityUnits") or 0)
            elif model.name in READ_OPS:
                self.read[label] += float(e.get("CapacityUnits", 0))
            else:
                self.write[label] += float(e.get("CapacityUnits", 0))

    def next_order(self) -> None:
        self._seen_tx = False

    def transaction_wcu(self, orders: int) -> str:
        """The checkout transaction's write units per order, in all and per table."""
        parts = {label.split()[1]: w / orders for label, w in sorted(self.write.items())
                 if label.startswith("TransactWriteItems ") and not label.startswith("TransactWriteItems after")}
        return f"{sum(parts.values()):g} WCU (" + ", ".join(f"{t} {w:g}" for t, w in parts.items()) + ")"

    def install(self) -> None:
        from chalicelib.core import models

        clients = {id(c): c for c in [m._get_connection().connection.client for m in models.ALL_MODELS]
                   + [models._TX_CONNECTION.client]}
        for client in clients.values():
            client.meta.events.register("before-parameter-build.dynamodb", self.ask)
            client.meta.events.register("after-call.dynamodb", self.add)


def capacity_per_order(shop: dict, member: dict, orders: int) -> tuple[Capacity, float, float]:
    """Checkouts one after another in this process: capacity, calls, wall time and this thread's CPU time."""
    from chalicelib.checkout import checkout
    from chalicelib.members import entry

    lines = [checkout.LineRequest(shop["goods_id"], "S1", 1)]
    for _ in range(3):  # warm: the route's and the checkout's code paths, connections
        checkout.place(entry.active_channel(shop["code"]), member["member_id"], uuid.uuid4().hex, lines,
                       password=PASSWORD)
    capacity = Capacity()
    capacity.install()
    capacity.on = True
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(orders):
        capacity.next_order()
        channel = entry.active_channel(shop["code"])  # the route's own channel read (member_channel)
        order, created = checkout.place(channel, member["member_id"], uuid.uuid4().hex, lines,
                                        password=PASSWORD)
        assert created and order.status == "paid"
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    capacity.on = False
    return capacity, elapsed, cpu


def sequential(base_url: str, endpoint: str, shop: dict, member: dict, template: dict, source: dict,
               count: int) -> tuple[list[float], list[float]]:
    """One client: ``count`` HTTP checkouts in a row, and ``count`` raw transactions of the same items in a row."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    ready = [for_member(template, source, member) for _ in range(count + 1)]
    client.transact_write_items(**ready.pop())  # connect before the clock starts
    raw = []
    for params in ready:
        t0 = time.perf_counter()
        client.transact_write_items(**params)
        raw.append((time.perf_counter() - t0) * 1000)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {member['token']}"
    http.get(f"{base_url}/api/{shop['code']}/me", timeout=30)
    body = {"lines": [{"goods_id": shop["goods_id"], "sku_id": "S1", "qty": 1}], "password": PASSWORD}
    checkouts = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = http.post(f"{base_url}/api/{shop['code']}/orders", json=body,
                      headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=60)
        checkouts.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 201, r.text
    return checkouts, raw


def report_capacity(title: str, capacity: Capacity, n: int, seconds: float, cpu: float) -> None:
    reads, writes = sum(capacity.read.values()) / n, sum(capacity.write.values()) / n
    print(f"{title}: {n} in-process checkouts ({n / seconds:.0f}/s sequential), ReturnConsumedCapacity=TOTAL")
    print(f"    transaction writes   {capacity.transaction_wcu(n)}")
    print(f"    read  {reads:6.2f} RCU/order     write {writes:6.2f} WCU/order in all     "
          f"(calls/order: {', '.join(f'{k} {v / n:g}' for k, v in sorted(capacity.calls.items()))})")
    for label in sorted(set(capacity.read) | set(capacity.write)):
        r, w = capacity.read.get(label, 0) / n, capacity.write.get(label, 0) / n
        print(f"      {label:<36} {r:5.2f} RCU   {w:5.2f} WCU")
    print(f"    DynamoDB round trips/order: {sum(capacity.calls.values()) / n:g} in all, "
          f"{capacity.before_tx / n:g} before the transaction (route's channel read included)")
    print(f"    app CPU per checkout: {cpu / n * 1000:.1f} ms (thread CPU time; wall {seconds / n * 1000:.1f} ms, "
          f"of it in the transaction call {capacity.tx_seconds / n * 1000:.1f} ms)")
    if capacity.elsewhere:
        print(f"    not counted: the fulfilment split's calls on other threads meanwhile, per order: "
              f"{', '.join(f'{k} {v / n:g}' for k, v in sorted(capacity.elsewhere.items()))}")
    print("    (as Dynoxide reports it; the password check is the channel's API, no DynamoDB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32, help="raw TransactWriteItems threads")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP checkout clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed concurrent phase")
    parser.add_argument("--sequential", type=int, default=100, help="one-client checkouts and raw transactions")
    parser.add_argument("--orders", type=int, default=300, help="in-process checkouts measured for cost")
    parser.add_argument("--remote-orders", type=int, default=50, help="in-process remote-mode checkouts measured")
    args = parser.parse_args()

    wall = time.perf_counter()
    noise = io.StringIO()  # the app's request log lines, JSON logs and EMF metrics; shown only on failure
    system = fake = fake_remote = None
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            system = LocalSystem().start()
            from fake_wallet_channel import FakeWalletChannel

            fake = FakeWalletChannel().start()
            t0 = time.perf_counter()
            shop = seed(args.threads + args.clients + 2, fake.url)
            fake.secret = shop["secret"]
            for m in shop["members"]:
                fake.member(m["external"], PASSWORD)
            seed_seconds = time.perf_counter() - t0
            raw_people = shop["members"][:args.threads]
            http_people = shop["members"][args.threads:args.threads + args.clients]
            solo, alone = shop["members"][-1], shop["members"][-2]

            before = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            template = capture_transaction(shop, solo)
            captured_at = template["TransactItems"][0]["Put"]["Item"]["created_at"]["S"]  # every raw order's too
            settled = settle_splits(shop["code"], before)
            raw = raw_commits(system.dynamodb.endpoint, template, solo, raw_people, args.seconds)
            http = http_checkouts(system.base_url, shop, http_people, args.seconds)
            settled += settle_splits(shop["code"], captured_at)
            seq_http, seq_raw = sequential(system.base_url, system.dynamodb.endpoint, shop, alone, template, solo,
                                           args.sequential)
            settled += settle_splits(shop["code"], captured_at)
            capacity, capacity_seconds, capacity_cpu = capacity_per_order(shop, solo, args.orders)
            settled += settle_splits(shop["code"], captured_at)
            fake_remote = FakeWalletChannel().start()
            remote = seed_remote(shop["goods_id"], fake_remote)
            remote_capacity, remote_seconds, remote_cpu = capacity_per_order(remote, remote, args.remote_orders)
            settled += settle_splits(remote["code"], before)

            from chalicelib.checkout import quotas
            from chalicelib.core.models import Channel, Stock
            quota = quotas.current(Channel.get(shop["code"]))
            stock = int(Stock.get(shop["goods_id"], "S1", consistent_read=True).stock)
    except BaseException:
        sys.stderr.write(noise.getvalue()[-4000:])
        raise
    finally:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for each in (fake, fake_remote):
                if each is not None:
                    each.stop()
            if system is not None:
                system.stop()

    committed = raw["outcome"]["committed"]
    paid = http["outcome"]["201 paid"]
    # the capture's warm-up and captured checkouts, the in-process ones and their warm-up, the one-client
    # checkouts and raw transactions (and its connecting one)
    orders_total = args.orders + 3 + 2 + 2 * args.sequential + 1
    remote_total = args.remote_orders + 3
    line = "-" * 78
    print(line)
    print("checkout benchmark  (local: Dynoxide + chalice local + fake channel, one machine)")
    print(line)
    print(f"seeded                   1 hosted channel, {len(shop['members'])} members with wallets, "
          f"1 goods, in {seed_seconds:.1f} s")
    print(f"transaction              {shape(template)}")
    print(f"(1) raw TransactWriteItems  {args.threads} threads x {raw['elapsed']:.1f} s: {committed} committed"
          f" -> {raw['rate']:7.1f} tx/s   latency p50 {statistics.median(raw['latencies']):6.1f} ms  "
          f"p95 {pct(raw['latencies'], 95):6.1f} ms")
    other = {k: v for k, v in raw["outcome"].items() if k != "committed"}
    if other:
        print(f"                         not committed: {dict(other)}")
    print(f"(2) HTTP checkout        {args.clients} clients x {http['elapsed']:.1f} s: {paid} paid"
          f" -> {http['rate']:7.1f} orders/s")
    other = {k: v for k, v in http["outcome"].items() if k != "201 paid"}
    if other:
        print(f"                         not paid: {dict(other)}")
    print(f"(3) ratio                HTTP checkout / raw commit = {http['rate'] / raw['rate']:.3f}"
          f"  ({raw['rate'] / http['rate']:.1f}x)")
    print(f"(4) checkout latency     p50 {statistics.median(http['latencies']):7.1f} ms   "
          f"p95 {pct(http['latencies'], 95):7.1f} ms   max {max(http['latencies']):7.1f} ms "
          f"(at {args.clients} concurrent clients)")
    print(f"(4b) one client          checkout p50 {statistics.median(seq_http):6.1f} ms  p95 {pct(seq_http, 95):6.1f} ms"
          f"   vs raw transaction p50 {statistics.median(seq_raw):6.1f} ms  p95 {pct(seq_raw, 95):6.1f} ms"
          f"  ({args.sequential} each, sequential)")
    print(line)
    report_capacity("(5) hosted one-line order", capacity, args.orders, capacity_seconds, capacity_cpu)
    print(line)
    report_capacity("(6) remote one-line order", remote_capacity, args.remote_orders, remote_seconds, remote_cpu)
    print("    (a remote order's deduct, and its confirm transaction, come after the checkout's transaction)")
    print(line)
    spent_expected = (committed + paid + orders_total) * PRICE
    left = 10_000_000 - committed - paid - orders_total - remote_total
    print(f"books                    quota spent {int(quota.spent):,} = {committed + paid + orders_total} orders"
          f" x {PRICE} ({'ok' if int(quota.spent) == spent_expected else 'MISMATCH'}); "
          f"stock left {stock:,} ({'ok' if stock == left else 'MISMATCH'}, {remote_total} of them remote orders)")
    print(f"wall time {time.perf_counter() - wall:.1f} s (of it {settled:.1f} s waiting between phases for the "
          f"paid orders' fulfilment splits)")


if __name__ == "__main__":
    main()
