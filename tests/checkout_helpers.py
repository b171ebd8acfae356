"""Shared set-up for the points, quota and checkout tests: a channel with its fake back end,
goods in its sub-pool, members with sessions, signed partner calls, and a burst runner that
fires hundreds of real HTTP requests at once."""
from __future__ import annotations

import atexit
import json
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from chalicelib.channels.signing import request_headers
from chalicelib.checkout import quotas
from chalicelib.checkout.models import Quota
from chalicelib.orders.models import Order
from fake_wallet_channel import FakeWalletChannel
from tools.sign import entry_link

PASSWORD = "246810"
PRICE = 1200  # fen; at 100 points per yuan one unit costs 1200 points
SETTLEMENT = 1000


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def ok(response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def error_code(response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return (body.get("error") or {}).get("code") if isinstance(body, dict) else None


def assert_error(response, status: int, code: str) -> None:
    assert (response.status_code, error_code(response)) == (status, code), (response.status_code, response.text)


def ts(iso: str) -> float:
    """An ISO-8601 timestamp as Unix seconds."""
    return datetime.fromisoformat(iso).timestamp()


# --- channel, period, goods, members ------------------------------------------------------

@dataclass
class Shop:
    """One channel ready to sell: its fake back end, one goods in its sub-pool, the ops client."""

    system: Any
    ops: Any
    code: str
    secret: str
    fake: FakeWalletChannel
    points_mode: str
    goods_id: str = ""
    sku_id: str = "S1"
    supplier_key: str = ""
    price_points: int = PRICE
    period_id: str = "P1"
    ends_at: int = 0
    cap: int = 0
    shards: int = 1
    tokens: dict[str, str] = field(default_factory=dict)  # external id → session token
    member_ids: dict[str, str] = field(default_factory=dict)  # external id → our member id

    @property
    def base_url(self) -> str:
        return self.system.base_url

    def body(self, qty: int = 1, **auth: str) -> dict:
        auth = auth or {"password": PASSWORD}
        return {"lines": [{"goods_id": self.goods_id, "sku_id": self.sku_id, "qty": qty}], **auth}

    def quota(self) -> dict:
        return ok(self.ops.get(f"/ops/channels/{self.code}/quota"))

    def quota_item(self) -> quotas.Period:
        """The period's quota as stored: every shard item, read by key, with their totals."""
        return quotas.get(self.code, self.period_id)

    def quota_shards(self) -> list[Quota]:
        shards = list(self.quota_item().shards.values())
        assert len(shards) == self.shards, (len(shards), self.shards)
        return shards

    def assert_shards_balanced(self) -> list[Quota]:
        """On every shard: nothing negative, remaining + reserved + spent = limit = grant_room + granted."""
        shards = self.quota_shards()
        for q in shards:
            remaining, reserved, spent, limit = int(q.remaining), int(q.reserved), int(q.spent), int(q.limit)
            grant_room, granted = int(q.grant_room), int(q.granted)
            assert min(remaining, reserved, spent, grant_room, granted) >= 0, q.attribute_values
            assert remaining + reserved + spent == limit == grant_room + granted, q.attribute_values
        return shards

    def stock(self) -> int:
        goods = ok(self.ops.get(f"/ops/goods/{self.goods_id}"))
        return next(s["stock"] for s in goods["skus"] if s["sku_id"] == self.sku_id)

    def orders(self) -> list[Order]:
        """This shop's orders, through its members' order lists (orders have no index by channel)."""
        return [o for member_id in self.member_ids.values() for o in Order.member_index.query(member_id)
                if o.channel_code == self.code]

    def member(self, external_id: str | None = None, points: int = 0, mobile: str | None = None) -> str:
        """A member who entered through the signed entry link; returns its external id."""
        external_id = external_id or uid("m-")
        self.fake.member(external_id, PASSWORD, points)
        fields = {"mobile": mobile} if mobile else {}
        link = entry_link(self.base_url, self.code, self.secret, external_id, **fields)
        split = urlsplit(link)
        response = requests.get(f"{self.base_url}{split.path}?{split.query}", allow_redirects=False, timeout=30)
        assert response.status_code == 302, response.text
        self.tokens[external_id] = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        me = ok(requests.get(f"{self.base_url}/api/{self.code}/me", headers=self.auth(external_id), timeout=30))
        self.member_ids[external_id] = me["member_id"]
        return external_id

    def members(self, n: int, points: int = 0) -> list[str]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: self.member(points=points), range(n)))

    def auth(self, external_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[external_id]}"}

    def grant(self, external_id: str, points: int, expires_at: int | None = None, grant_id: str | None = None,
              session: requests.Session | None = None, secret: str | None = None) -> requests.Response:
        payload = {"grant_id": grant_id or uid("g-"), "member_id": external_id, "points": points,
                   "expires_at": expires_at or self.ends_at}
        return signed_post(session or requests.Session(), self.base_url, self.code, secret or self.secret,
                           f"/partner/{self.code}/grants", payload)

    def place(self, session: requests.Session, external_id: str, key: str | None = None, body: dict | None = None,
              retries_on_busy: int = 10) -> "Attempt":
        return place(session, self.base_url, self.code, self.tokens[external_id], key or uid("key-"),
                     body or self.body(), retries_on_busy)

    def wallet(self, external_id: str) -> dict:
        return ok(requests.get(f"{self.base_url}/api/{self.code}/wallet", headers=self.auth(external_id), timeout=30))


def signed_post(session: requests.Session, base_url: str, code: str, secret: str, path: str,
                payload: dict) -> requests.Response:
    """A channel server's call to us, signed per contract v2: X-Timestamp / X-Nonce / X-Sign over POST, the
    path and timestamp + nonce + body_sha256."""
    body = json.dumps(payload).encode()
    headers = {**request_headers("POST", path, body, secret), "Content-Type": "application/json"}
    return session.post(base_url + path, data=body, headers=headers, timeout=60)


# A burst's channel waits this long for its back end: far above the fake's normal answer on a loaded machine,
# so only an answer the fake holds (a "timeout" mode) ever times out.
BURST_TIMEOUT = 10.0


def burst_shop(system, ops, points_mode: str, **options: Any) -> "Shop":
    """``make_shop`` for a burst: the channel's API deadline is ``BURST_TIMEOUT``."""
    return make_shop(system, ops, points_mode, api_timeout=BURST_TIMEOUT, **options)


def make_shop(system, ops, points_mode: str, quota: int = 10_000_000, cap: int = 500_000, stock: int = 100_000,
              payment_auth: str = "channel_password", period_seconds: int = 3600, price: int = PRICE,
              starts_ago: int = 10, shards: int | None = None, sandbox: bool = False,
              api_timeout: float | None = None) -> Shop:
    """A new channel with its own fake back end (started; stopped at the end of the session).

    ``api_timeout``: the channel's ``api_timeout_seconds`` (unset: the 3 s default). A burst of remote orders
    sets it far above the fake's normal latency, so no call times out because the machine is busy."""
    fake = FakeWalletChannel().start()
    _FAKES.append(fake)
    code = uid("ck-")
    created = ok(ops.post("/ops/channels", json={
        "code": code, "name": "Bank of Tests", "contact_name": "Han Meimei", "phone": "+86 10 8888 8888",
        "points_mode": points_mode, "points_per_yuan": 100, "member_points_cap": cap, "redemption_quota": quota,
        "api_base_url": fake.url, "payment_auth": payment_auth, "sandbox": sandbox,
        **({"api_timeout_seconds": api_timeout} if api_timeout is not None else {})}), 201)
    fake.secret = created["secret"]
    now = int(time.time())
    shop = Shop(system, ops, code, created["secret"], fake, points_mode, ends_at=now + period_seconds,
                price_points=price, cap=cap, shards=shards or 1)
    period = {"period_id": shop.period_id, "starts_at": now - starts_ago, "ends_at": shop.ends_at}
    if shards is not None:  # without it, the default (one shard)
        period["shards"] = shards
    opened = ok(ops.post(f"/ops/channels/{code}/periods", json=period), 201)
    assert (opened["shards"], opened["limit"], opened["remaining"]) == (shop.shards, quota, quota), opened
    supplier = ok(ops.post("/ops/suppliers", json={
        "name": f"Supplier {uid()}", "contact_name": "Li Lei", "phone": "+86 138 0000 0000", "licence_no": uid("LIC-"),
        "bank_account": {"bank": "ICBC", "account_name": "Li Lei Trading", "account_no": "6222 0000 1111 2222"}}), 201)
    shop.supplier_key = supplier["api_key"]
    goods = ok(requests.post(f"{system.base_url}/supplier/goods", headers={"X-Api-Key": shop.supplier_key}, json={
        "ref": uid("ref-"), "title": "Tea gift box", "category": "food",
        "skus": [{"sku_id": shop.sku_id, "spec": "250 g", "settlement_price": SETTLEMENT, "stock": stock}]},
        timeout=30), 201)
    shop.goods_id = goods["goods_id"]
    ok(ops.post(f"/ops/goods/{shop.goods_id}/approve", json={"base_prices": {shop.sku_id: price}}))
    ok(ops.put(f"/ops/channels/{code}/pool/{shop.goods_id}", json={"prices": {}}))
    return shop


_FAKES: list[FakeWalletChannel] = []


@atexit.register
def stop_fakes() -> None:
    while _FAKES:
        _FAKES.pop().stop()


# --- placing orders ----------------------------------------------------------------------

@dataclass
class Attempt:
    key: str
    status: int
    code: str | None
    body: Any
    sent: float
    done: float
    busy_retries: int = 0

    @property
    def order_id(self) -> str | None:
        return self.body.get("order_id") if isinstance(self.body, dict) else None


def place(session: requests.Session, base_url: str, code: str, token: str, key: str, body: dict,
          retries_on_busy: int = 10) -> Attempt:
    """POST one order. A 503 ``busy`` is the documented "retry with the same Idempotency-Key"."""
    sent = time.time()
    busy = 0
    while True:
        response = session.post(f"{base_url}/api/{code}/orders", json=body, timeout=60,
                                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
        try:
            data = response.json()
        except ValueError:
            data = response.text
        err = error_code(response)
        if response.status_code == 503 and err == "busy" and busy < retries_on_busy:
            busy += 1
            time.sleep(0.05 * busy)
            continue
        return Attempt(key, response.status_code, err, data, sent, time.time(), busy)


class Sessions:
    """``size`` keep-alive HTTP sessions, connected one by one before a burst, lent out per request."""

    def __init__(self, base_url: str, size: int) -> None:
        self._free: queue.Queue = queue.Queue()
        for _ in range(size):
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)
            session.mount("http://", adapter)
            session.get(f"{base_url}/ops/channels", timeout=30)  # opens the connection
            self._free.put(session)

    def run(self, fn: Callable[[requests.Session], Any]) -> Any:
        session = self._free.get()
        try:
            return fn(session)
        finally:
            self._free.put(session)

    def close(self) -> None:
        while not self._free.empty():
            self._free.get().close()


def burst(base_url: str, tasks: list[Callable[[requests.Session], Any]], workers: int = 64) -> list[Any]:
    """Run every task at once on ``workers`` threads, each with a pre-connected session; results in order."""
    sessions = Sessions(base_url, workers)
    start = threading.Barrier(min(workers, len(tasks)))
    try:
        with ThreadPoolExecutor(workers) as pool:
            # All workers start together: the barrier holds the first wave until every thread is up.
            def gated(i, fn):
                if i < workers:
                    start.wait(timeout=30)
                return sessions.run(fn)
            futures = [pool.submit(gated, i, fn) for i, fn in enumerate(tasks)]
            return [f.result() for f in futures]
    finally:
        sessions.close()


def summary(attempts: list[Attempt]) -> dict[tuple[int, str | None], int]:
    counts: dict[tuple[int, str | None], int] = {}
    for a in attempts:
        counts[(a.status, a.code)] = counts.get((a.status, a.code), 0) + 1
    return counts
