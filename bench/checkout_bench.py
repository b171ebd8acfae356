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
   Dynoxide is another process and the fake channel answers on other threads);
6. **a remote-mode order** — the same for a remote channel (the fake keeps the points and deducts):
   its checkout transaction's WCU apart from the confirm transaction after the deduct;
7. **off the request path** — the orders stream's consumer (``partners.order_figures``), run once all
   checkouts are done: its records, CPU and write units per order (on AWS its own Lambda, batched);
8. **cold start** — ``import app`` against bare ``import boto3``, each in a fresh interpreter with compiled
   bytecode (median of ``--imports`` runs); and with ``--profile``, where the in-process checkouts' CPU goes.

As on AWS, the fulfilment executor is not in the app's process: each paid order still starts its
``order_fulfilment`` execution (the request path's ``StartExecution``), but moto only records it here
instead of running its tasks in this process; and the stream consumer's poller is stopped while the
phases run (its work is measured apart, in 7). Dynoxide, the app and the fake share this machine (and the
app and fake one Python process), so rates and latencies are a floor for the code path, not a forecast
for AWS. The goals (issue 17) are printed beside the figures.
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
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# This process only: no EMF metric lines or INFO JSON logs from the app on stdout (Powertools reads both
# settings from the environment); a fulfilment execution, were one run, would wait an hour for shipment.
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
    from chalicelib.channels import channels, pools
    from chalicelib.checkout import wallets
    from chalicelib.members import members as members_mod, sessions
    from chalicelib.supply import goods, suppliers
    from chalicelib.core.schemas import ChannelCreate, GoodsDraft, PoolPricing, SupplierApplication

    code = f"bench-{uuid.uuid4().hex[:6]}"
    channel = channels.create(ChannelCreate(
        code=code, name="Bench Bank", contact_name="Bench", phone="4008800009", points_mode="hosted",
        points_per_yuan=100, member_points_cap=10**9, redemption_quota=10**12, api_base_url=fake_url,
        payment_auth="channel_password"), ACTOR)
    now = int(time.time())
    channels.open_period(code, "P1", now - 10, now + 3600, None, ACTOR)
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
    from chalicelib.channels import channels, pools
    from chalicelib.members import members as members_mod
    from chalicelib.core.schemas import ChannelCreate, PoolPricing

    code = f"benchr-{uuid.uuid4().hex[:6]}"
    channel = channels.create(ChannelCreate(
        code=code, name="Bench Remote Bank", contact_name="Bench", phone="4008800009", points_mode="remote",
        points_per_yuan=100, member_points_cap=10**12, redemption_quota=10**12, api_base_url=fake.url,
        payment_auth="channel_password"), ACTOR)
    fake.secret = channel.secret
    now = int(time.time())
    channels.open_period(code, "P1", now - 10, now + 3600, None, ACTOR)
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
    from chalicelib.callers import entry
    from chalicelib.checkout import checkout
    from chalicelib.core import tx

    lines = [checkout.LineRequest(shop["goods_id"], "S1", 1)]
    channel = entry.active_channel(shop["code"])
    checkout.place(channel, member["member_id"], uuid.uuid4().hex, lines, password=PASSWORD)  # warm-up
    captured: list[dict] = []
    me = threading.get_ident()

    def grab(params: dict, **_) -> None:
        # This thread's call only: another thread's transaction on the same client (none expected here) would
        # replay the wrong transaction.
        if threading.get_ident() == me:
            captured.append(copy.deepcopy(params))

    events = tx._TX_CONNECTION.client.meta.events
    events.register("before-parameter-build.dynamodb.TransactWriteItems", grab, unique_id="bench-capture")
    try:
        checkout.place(channel, member["member_id"], uuid.uuid4().hex, lines, password=PASSWORD)
    finally:
        events.unregister("before-parameter-build.dynamodb.TransactWriteItems", unique_id="bench-capture")
    template = captured[-1]
    tables = [next(iter(i.values()))["TableName"].rsplit("-", 1)[-1] for i in template["TransactItems"]]
    assert "Put" in template["TransactItems"][0] and tables[0] == "orders" and len(tables) >= 4, tables
    return template


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
        self.thread = threading.get_ident()  # the checking thread
        self.elsewhere: Counter = Counter()  # calls of other threads meanwhile (none expected: shown if any)

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
        from chalicelib import tables
        from chalicelib.core import tx

        clients = {id(c): c for c in [m._get_connection().connection.client for m in tables.ALL_MODELS]
                   + [tx._TX_CONNECTION.client]}
        for client in clients.values():
            client.meta.events.register("before-parameter-build.dynamodb", self.ask)
            client.meta.events.register("after-call.dynamodb", self.add)


def capacity_per_order(shop: dict, member: dict, orders: int) -> tuple[Capacity, float, float]:
    """Checkouts one after another in this process: capacity, calls, wall time and this thread's CPU time."""
    from chalicelib.callers import entry
    from chalicelib.checkout import checkout

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
        print(f"    not counted: calls on other threads meanwhile, per order: "
              f"{', '.join(f'{k} {v / n:g}' for k, v in sorted(capacity.elsewhere.items()))}")
    print("    (as Dynoxide reports it; the password check is the channel's API, no DynamoDB)")


def stream_cost(system: LocalSystem) -> tuple[Capacity, float, float, int]:
    """The orders stream's consumer run over everything the phases wrote (this thread: the handler runs in the
    caller of ``drain``): its write units, CPU and wall time, and the records it took."""
    capacity = Capacity()
    capacity.install()
    capacity.on = True
    t0, cpu0 = time.perf_counter(), time.thread_time()
    records = system.streams.drain()
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    capacity.on = False
    return capacity, elapsed, cpu, records


def cold_start(runs: int) -> tuple[float, float]:
    """Median seconds of ``import boto3`` and of ``import app``, each in a fresh interpreter (bytecode compiled
    first), alternating so that machine load falls on both alike."""
    import compileall
    import subprocess

    compileall.compile_dir(str(ROOT / "chalicelib"), quiet=1)
    compileall.compile_file(str(ROOT / "app.py"), quiet=1)
    env = {"PATH": os.environ.get("PATH", ""), "STAGE": "local", "POWERTOOLS_TRACE_DISABLED": "true",
           "AWS_DEFAULT_REGION": "us-east-1"}
    probe = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
    found: dict[str, list[float]] = {"boto3": [], "app": []}
    for _ in range(runs):
        for module in found:
            out = subprocess.run([sys.executable, "-c", probe.format(module)], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True).stdout
            found[module].append(float(out.strip().splitlines()[-1]))
    return statistics.median(found["boto3"]), statistics.median(found["app"])


def profile(shop: dict, member: dict, orders: int) -> list[tuple[str, float]]:
    """Where the in-process checkouts' CPU goes: own CPU time per package (cProfile on this thread's CPU clock),
    in seconds per checkout."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.thread_time)  # CPU, not the wall time of waiting on sockets
    profiler.enable()
    capacity_per_order(shop, member, orders)
    profiler.disable()
    by_package: Counter = Counter()
    for (file, _, _), (_, _, own, _, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in file:
            name = file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif str(ROOT) in file:
            name = "/".join(Path(file).relative_to(ROOT).parts[:2])
        else:
            name = "python (stdlib, builtins)"
        by_package[name] += own / (orders + 3)
    return by_package.most_common(12)


def goal(ok: bool) -> str:
    return "goal met" if ok else "GOAL NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32, help="raw TransactWriteItems threads")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP checkout clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed concurrent phase")
    parser.add_argument("--sequential", type=int, default=100, help="one-client checkouts and raw transactions")
    parser.add_argument("--orders", type=int, default=300, help="in-process checkouts measured for cost")
    parser.add_argument("--remote-orders", type=int, default=50, help="in-process remote-mode checkouts measured")
    parser.add_argument("--imports", type=int, default=5, help="fresh interpreters per cold-start figure")
    parser.add_argument("--profile", action="store_true", help="profile the in-process checkouts by package")
    args = parser.parse_args()

    wall = time.perf_counter()
    noise = io.StringIO()  # the app's request log lines, JSON logs and EMF metrics; shown only on failure
    system = fake = fake_remote = None
    profiled: list[tuple[str, float]] = []
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            system = LocalSystem().start()
            # (its stream consumer is not started: it runs apart, in 7, as its own Lambda does on AWS)
            # The fulfilment executor is not in the app's process on AWS: moto records each execution the
            # checkouts start, and runs none of their tasks here.
            requests.post(f"{system.moto.endpoint}/moto-api/config",
                          json={"stepfunctions": {"execute_state_machine": False}}, timeout=10).raise_for_status()
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

            template = capture_transaction(shop, solo)
            raw = raw_commits(system.dynamodb.endpoint, template, solo, raw_people, args.seconds)
            http = http_checkouts(system.base_url, shop, http_people, args.seconds)
            seq_http, seq_raw = sequential(system.base_url, system.dynamodb.endpoint, shop, alone, template, solo,
                                           args.sequential)
            capacity, capacity_seconds, capacity_cpu = capacity_per_order(shop, solo, args.orders)
            fake_remote = FakeWalletChannel().start()
            remote = seed_remote(shop["goods_id"], fake_remote)
            remote_capacity, remote_seconds, remote_cpu = capacity_per_order(remote, remote, args.remote_orders)
            if args.profile:
                profiled = profile(shop, solo, args.orders)

            from chalicelib.channels.models import Channel
            from chalicelib.checkout import quotas
            from chalicelib.supply.models import Stock
            quota = quotas.current(Channel.get(shop["code"]))
            stock = int(Stock.get(shop["goods_id"], "S1", consistent_read=True).stock)
            stream, stream_seconds, stream_cpu, records = stream_cost(system)
            boto3_import, app_import = cold_start(args.imports)
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
    # the capture's warm-up and captured checkouts, the in-process ones and their warm-up (and the profiled ones),
    # the one-client checkouts and raw transactions (and its connecting one)
    orders_total = args.orders + 3 + 2 + 2 * args.sequential + 1 + ((args.orders + 3) if args.profile else 0)
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
    ratio = http["rate"] / raw["rate"]
    print(f"(3) ratio                HTTP checkout / raw commit = {ratio:.3f}"
          f"  ({raw['rate'] / http['rate']:.1f}x)   [>= 0.25: {goal(ratio >= 0.25)}]")
    print(f"(4) checkout latency     p50 {statistics.median(http['latencies']):7.1f} ms   "
          f"p95 {pct(http['latencies'], 95):7.1f} ms   max {max(http['latencies']):7.1f} ms "
          f"(at {args.clients} concurrent clients)")
    one = statistics.median(seq_http) / statistics.median(seq_raw)
    print(f"(4b) one client          checkout p50 {statistics.median(seq_http):6.1f} ms  p95 {pct(seq_http, 95):6.1f} ms"
          f"   vs raw transaction p50 {statistics.median(seq_raw):6.1f} ms  p95 {pct(seq_raw, 95):6.1f} ms"
          f"  ({args.sequential} each, sequential): {one:.1f}x   [<= 6x: {goal(one <= 6)}]")
    print(line)
    report_capacity("(5) hosted one-line order", capacity, args.orders, capacity_seconds, capacity_cpu)
    trips, wcu = sum(capacity.calls.values()) / args.orders, sum(capacity.write.values()) / args.orders
    cpu_ms = capacity_cpu / args.orders * 1000
    print(f"    [password-checked hosted order: <= 5 round trips: {goal(trips <= 5)}; <= 12 WCU: {goal(wcu <= 12)};"
          f" app CPU <= 10 ms: {goal(cpu_ms <= 10)}]")
    print(line)
    report_capacity("(6) remote one-line order", remote_capacity, args.remote_orders, remote_seconds, remote_cpu)
    print("    (a remote order's deduct, and its confirm transaction, come after the checkout's transaction)")
    print(line)
    paid_orders = committed + paid + orders_total + remote_total
    by_table: Counter = Counter()
    for label, units in stream.write.items():
        by_table[label.rsplit(" ", 1)[-1]] += units
    print(f"(7) off the request path: the orders stream's consumer took {records} records in "
          f"{stream_seconds:.1f} s, {stream_cpu * 1000 / max(records, 1):.2f} ms CPU per record; "
          f"{sum(by_table.values()) / max(paid_orders, 1):.2f} WCU per paid order "
          f"({', '.join(f'{k} {v / max(paid_orders, 1):.2f}' for k, v in sorted(by_table.items()))})")
    print(line)
    print(f"(8) cold start           import app {app_import * 1000:.0f} ms vs bare import boto3 "
          f"{boto3_import * 1000:.0f} ms (median of {args.imports}, bytecode compiled): "
          f"{app_import / boto3_import:.2f}x   [<= 1.3x: {goal(app_import <= 1.3 * boto3_import)}]")
    if profiled:
        print("    in-process checkout CPU by package (cProfile own time, ms per checkout; profiling inflates it): "
              + ", ".join(f"{name} {sec * 1000:.1f}" for name, sec in profiled))
    print(line)
    spent_expected = (committed + paid + orders_total) * PRICE
    left = 10_000_000 - committed - paid - orders_total - remote_total
    print(f"books                    quota spent {int(quota.spent):,} = {committed + paid + orders_total} orders"
          f" x {PRICE} ({'ok' if int(quota.spent) == spent_expected else 'MISMATCH'}); "
          f"stock left {stock:,} ({'ok' if stock == left else 'MISMATCH'}, {remote_total} of them remote orders)")
    print(f"wall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
