"""Every call to a channel is reliable and observable: per-channel timeouts, resends only where they cannot do
anything twice, a circuit breaker per channel and API shared through DynamoDB (callers fail fast while it is
open, exactly one probes when it may close), a correlation id both sides can quote, figures per channel and
API for ops, and nothing lost: remote orders resolve by the sweep, pushes are delivered or redriven.

The partner is a real HTTP server (``Partner``: the fake wallet back end that can also be down, slow or
flapping, API by API); every order goes over HTTP through the app. Breakers are per channel and every test
makes its own channels, so no breaker opened here reaches another test."""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import pytest
import requests

import checkout_helpers
from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.checkout import checkout
from chalicelib.core.tx import LabelledTransaction
from chalicelib.partners import breaker, channel_api, events, reliability, webhooks
from chalicelib.partners.models import OutboxEvent, PartnerBreaker
from checkout_helpers import Shop, make_shop, summary
from chalicelib.partners.channel_api import READ_TIMEOUT
from fake_wallet_channel import HOLD_SECONDS, NORMAL, TIMEOUT_AFTER, TIMEOUT_BEFORE, FakeWalletChannel
from test_remote_points import STOCK, assert_agree
from tests.helpers import assert_error, channel_body, ok, uid, wait_for
from tests.local_http import Drip
from tests.test_webhooks import Receiver, webhook_channel

OPEN_SECONDS = 1.0


class Partner(FakeWalletChannel):
    """The channel's wallet back end, able to fail API by API (``"*"``: every API).

    ``down``   APIs answering ``down_status`` (default 500) without doing anything
    ``pause``  API → seconds to sit on each request before answering it normally (slow, or past our timeout)
    ``drips``  API → a ``Drip``: its answer dripped a byte at a time until released
    ``hits`` counts the requests per API and ``seen`` keeps each one's ``X-Correlation-Id``."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()
        self.down_status = 500
        self.pause: dict[str, float] = {}
        self.gate: threading.Event | None = None  # when set up, every answer waits for it (released by the test)
        self.drips: dict[str, Drip] = {}
        self.hits: Counter = Counter()
        self.seen: list[tuple[str, str]] = []

    def _handle(self, handler: Any) -> None:
        api = handler.path.strip("/")
        with self._lock:
            self.hits[api] += 1
            self.seen.append((api, handler.headers.get("X-Correlation-Id", "")))
        if api in self.drips:
            self.drips[api].answer(handler)
            return
        if api in self.down or "*" in self.down:
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            self._send(handler, self.down_status, {"error": "down"})
            return
        pause = self.pause.get(api) or self.pause.get("*")
        if pause:
            self._stopping.wait(pause)
        gate = self.gate
        if gate is not None:
            gate.wait(HOLD_SECONDS)
        super()._handle(handler)


@pytest.fixture
def fast_breaker(monkeypatch):
    monkeypatch.setenv("PARTNER_BREAKER_OPEN_SECONDS", str(OPEN_SECONDS))


@pytest.fixture
def shop_of(system, ops, monkeypatch, fast_breaker):
    """A new channel (remote mode by default) whose back end is a ``Partner``, with its own API timeout."""
    monkeypatch.setattr(checkout_helpers, "FakeWalletChannel", Partner)

    def make(points_mode: str = "remote", timeout: float | None = None) -> Shop:
        shop = make_shop(system, ops, points_mode, quota=1_000_000, stock=STOCK)
        if timeout is not None:
            ok(ops.patch(f"/ops/channels/{shop.code}", json={"api_timeout_seconds": timeout}))
        return shop
    return make


def breaker_of_channel(code: str, api: str) -> breaker.State:
    return reliability.state_of(PartnerBreaker.get(code, api, consistent_read=True)
                                if PartnerBreaker.count(code, PartnerBreaker.api == api) else None)


def breaker_of(shop: Shop, api: str) -> breaker.State:
    return breaker_of_channel(shop.code, api)


def open_breaker(shop: Shop, api: str, member: str) -> None:
    """``MIN_FAILURES`` orders fail on the dead API one after another; the breaker is then open."""
    for _ in range(breaker.MIN_FAILURES):
        assert shop.place(requests.Session(), member).status in (201, 502)
    assert breaker_of(shop, api).state == breaker.OPEN


def timed(shop: Shop, member: str, n: int) -> list[tuple[float, checkout_helpers.Attempt]]:
    session = requests.Session()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        attempt = shop.place(session, member)
        out.append((time.perf_counter() - started, attempt))
    return out


# --- the rules, as plain data ------------------------------------------------------------------------

def test_breaker_rules():
    closed = breaker.State()
    assert breaker.decide(closed, 100) == breaker.CALL
    assert breaker.opens(10, 10, 10) and breaker.opens(40, 30, 10)  # (nearly) dead: ten failed, three in four
    assert not breaker.opens(9, 9, 9)  # too few to judge
    assert not breaker.opens(120, 60, 60)  # half its calls still served: degraded, not dead (the rate alarm pages)
    assert not breaker.opens(30, 30, 1)  # just closed by a probe: the failures before do not reopen it
    opened = breaker.opened(100, 30)
    assert (opened.state, opened.open_until) == (breaker.OPEN, 130)
    assert breaker.decide(opened, 129.9) == breaker.REFUSE and breaker.retry_at(opened) == 130
    assert breaker.decide(opened, 130) == breaker.PROBE
    probing = breaker.claimed(opened, 130, 10)
    assert (probing.state, probing.probe_until) == (breaker.HALF_OPEN, 140)
    assert breaker.decide(probing, 139) == breaker.REFUSE  # one probe at a time
    assert breaker.decide(probing, 140) == breaker.PROBE  # its caller vanished: the lease lapsed
    assert [breaker.failed(k) for k in breaker.KINDS] == [False, False, True, True, True, True]


def test_p95_is_the_upper_edge_of_the_bucket_holding_it():
    assert breaker.percentile({}) is None
    counts = Counter(breaker.bucket(ms) for ms in [3] * 90 + [40] * 5 + [900] * 5)
    assert breaker.percentile(counts) == 50  # the 95th of 100 calls is the 5th at 40 ms: bucket (25, 50]
    assert breaker.percentile(counts, 0.96) == 1000
    assert breaker.bucket(10**6) == len(breaker.BOUNDS_MS) - 1
    assert breaker.error_rate(0, 0) == 0.0 and breaker.error_rate(8, 2) == 0.25
    assert breaker.rate_alarming(10, 2) and not breaker.rate_alarming(10, 1) and not breaker.rate_alarming(9, 9)


# --- a dead partner: fail fast while open, one probe, recover ---------------------------------------

def test_a_dead_password_api_opens_its_breaker_then_orders_fail_fast_and_recover(system, ops, shop_of):
    shop = shop_of()
    member = shop.member(points=50_000)
    shop.fake.down = {"password/verify"}
    for i in range(breaker.MIN_FAILURES):
        a = shop.place(requests.Session(), member)
        assert (a.status, a.code) == (502, "channel_api_unavailable"), a.body
        # the id we sent is the id the member sees: the partner finds the call in its own logs by it
        assert a.body["error"]["correlation_id"] == shop.fake.seen[-1][1] != ""
    assert shop.fake.hits["password/verify"] == breaker.MIN_FAILURES
    assert breaker_of(shop, "password/verify").state == breaker.OPEN

    refused = timed(shop, member, 5)
    assert all((a.status, a.code) == (503, "partner_unavailable") for _, a in refused), refused
    assert all(a.body["error"]["correlation_id"].startswith("cm-") for _, a in refused)
    assert shop.fake.hits["password/verify"] == breaker.MIN_FAILURES  # fail fast: nothing reached the partner
    assert shop.quota()["reserved"] == 0 and shop.orders() == []

    shop.fake.down = set()
    time.sleep(OPEN_SECONDS)
    a = shop.place(requests.Session(), member)  # the probe
    assert a.status == 201 and a.body["status"] == "paid", a.body
    assert breaker_of(shop, "password/verify") == breaker.State()
    system.streams.drain()  # successful calls of paid orders are booked from the orders stream
    health = ok(ops.get(f"/ops/channels/{shop.code}/partner-health"))
    verify = health["apis"]["password/verify"]
    assert verify["breaker"]["state"] == "closed" and not verify["breaker"]["refusing"]
    hour = verify["last_hour"]
    assert (hour["calls"], hour["errors"], hour["refused"]) == (breaker.MIN_FAILURES + 1,
                                                               breaker.MIN_FAILURES, 5), hour
    assert hour["by_kind"] == {"ok": 1, "server_error": breaker.MIN_FAILURES}
    assert hour["error_rate"] == round(breaker.MIN_FAILURES / (breaker.MIN_FAILURES + 1), 4)
    assert hour["p95_ms"] in breaker.BOUNDS_MS and verify["last_day"] == hour
    assert health["apis"]["points/deduct"]["last_hour"]["calls"] == 1
    assert reliability.stats(shop.code, "password/verify", int(time.time()) - 3600)["calls"] == hour["calls"]
    assert reliability.stats(shop.code, None, int(time.time()) - 3600)["calls"] == hour["calls"] + 1
    assert reliability.stats(shop.code, None, int(time.time()) + 120)["calls"] == 0


def test_exactly_one_caller_probes_a_half_open_breaker(system, ops, shop_of):
    shop = shop_of(timeout=10)
    members = shop.members(20, points=50_000)
    shop.fake.down = {"password/verify"}
    open_breaker(shop, "password/verify", members[0])
    shop.fake.down = set()
    shop.fake.gate = threading.Event()  # the probe's answer waits until every other caller has been answered
    time.sleep(OPEN_SECONDS)
    before = shop.fake.hits["password/verify"]
    with ThreadPoolExecutor(20) as pool:
        pending = {pool.submit(shop.place, requests.Session(), m) for m in members}
        finished, pending = wait(pending, timeout=120, return_when=FIRST_COMPLETED)
        while len(finished) < len(members) - 1 and pending:
            done, pending = wait(pending, timeout=120, return_when=FIRST_COMPLETED)
            finished |= done
        shop.fake.gate.set()
        attempts = [f.result() for f in finished | pending]
    assert shop.fake.hits["password/verify"] - before == 1, shop.fake.hits
    assert summary(attempts) == {(201, None): 1, (503, "partner_unavailable"): 19}, summary(attempts)
    assert breaker_of(shop, "password/verify").state == breaker.CLOSED
    shop.fake.gate = None
    assert shop.place(requests.Session(), members[1]).status == 201


def test_a_slow_partner_is_cut_at_the_channels_own_timeout_then_fails_fast(system, ops, shop_of):
    shop = shop_of(timeout=0.5)
    member = shop.member(points=50_000)
    shop.fake.pause = {"password/verify": HOLD_SECONDS}  # never answers in time, however fast the machine
    slow = timed(shop, member, breaker.MIN_FAILURES)
    assert all((a.status, a.code) == (502, "channel_api_timeout") for _, a in slow), slow
    assert all(0.45 < t < READ_TIMEOUT for t, _ in slow), [round(t, 2) for t, _ in slow]  # 0.5 s, not the default
    assert shop.fake.hits["password/verify"] == breaker.MIN_FAILURES  # a timeout is never sent again
    fast = timed(shop, member, 3)
    assert all((a.status, a.code) == (503, "partner_unavailable") for _, a in fast), fast
    assert shop.fake.hits["password/verify"] == breaker.MIN_FAILURES  # fail fast: nothing more was sent
    system.streams.drain()  # successful calls of paid orders are booked from the orders stream
    kinds = reliability.stats(shop.code, "password/verify", int(time.time()) - 60)
    assert kinds["by_kind"] == {"timeout": breaker.MIN_FAILURES} and kinds["p95_ms"] == 1000


def test_a_dead_deduct_api_refuses_orders_before_anything_is_reserved(system, ops, shop_of):
    shop = shop_of()
    member = shop.member(points=50_000)
    shop.fake.down = {"points/deduct"}
    open_breaker(shop, "points/deduct", member)  # each order: deduct 500, query not_found, cancel, released
    assert all(o.status == "failed" for o in shop.orders())
    refused = timed(shop, member, 5)
    assert all((a.status, a.code) == (503, "partner_unavailable") for _, a in refused), refused
    assert shop.fake.hits["points/deduct"] == breaker.MIN_FAILURES  # fail fast: no deduct was sent
    assert shop.fake.hits["password/verify"] == breaker.MIN_FAILURES  # refused before the password, too
    assert len(shop.orders()) == breaker.MIN_FAILURES and shop.quota()["reserved"] == 0
    assert_agree(shop)


# --- nothing lost ---------------------------------------------------------------------------------------

def test_orders_caught_in_an_outage_are_resolved_by_the_sweep_once_the_partner_is_back(system, ops, shop_of,
                                                                                      monkeypatch):
    """Deducts time out (some applied by the channel, some not) while the query API is down: the orders wait,
    the breakers open, and once the channel is back the scheduled sweep settles every one of them right."""
    shop = shop_of(timeout=0.5)
    members = [shop.member(points=50_000) for _ in range(3)]
    shop.fake.down = {"points/query", "points/cancel"}
    waiting = []
    for i in range(breaker.MIN_FAILURES):
        shop.fake.deduct_mode = TIMEOUT_AFTER if i % 2 else TIMEOUT_BEFORE
        a = shop.place(requests.Session(), members[i % 3])
        assert a.status == 201 and a.body["status"] == "awaiting_deduction", a.body
        waiting.append(a.order_id)
    assert breaker_of(shop, "points/query").state == breaker.OPEN
    assert breaker_of(shop, "points/deduct").state == breaker.OPEN
    refused = shop.place(requests.Session(), members[0])
    assert (refused.status, refused.code) == (503, "partner_unavailable")
    assert_agree(shop, resolved=False)

    monkeypatch.setattr(checkout, "DEDUCT_LEASE_SECONDS", 0)
    monkeypatch.setattr(channels, "list_all", lambda: [channels.get(shop.code)])  # this channel's sweep only
    swept = checkout.sweep_remote()[shop.code]  # still open: every order asked about is refused at once
    assert swept == {"paid": 0, "failed": 0, "awaiting_deduction": breaker.MIN_FAILURES}, swept
    shop.fake.down, shop.fake.deduct_mode = set(), NORMAL
    time.sleep(OPEN_SECONDS)
    swept = checkout.sweep_remote()[shop.code]
    applied = breaker.MIN_FAILURES // 2  # the TIMEOUT_AFTER ones: deducted, the answer lost
    assert swept == {"paid": applied, "failed": breaker.MIN_FAILURES - applied, "awaiting_deduction": 0}, swept
    assert_agree(shop)
    assert breaker_of(shop, "points/query").state == breaker.CLOSED
    assert shop.place(requests.Session(), members[0]).status == 201  # the deduct breaker probes and closes


def orders_until(shop: Shop, member: str, done: threading.Event) -> list[checkout_helpers.Attempt]:
    session, placed = requests.Session(), []
    while not done.is_set():
        placed.append(shop.place(session, member))
        time.sleep(0.05)
    return placed


def test_a_flapping_partner_loses_nothing(system, ops, shop_of, monkeypatch):
    """The points APIs go down until the deduct breaker opens, stay down a moment, come back until a probe
    closes it, and again, while members keep ordering: each order ends paid (deducted once) or failed (never
    deducted) or is refused at once while the breaker is open (nothing reserved), and the books agree."""
    shop = shop_of(timeout=3)
    members = shop.members(6, points=1_000_000)
    done = threading.Event()
    seen: list[str] = []

    def flap() -> None:
        try:
            for _ in range(2):
                shop.fake.down = {"points/deduct", "points/query"}
                wait_for(lambda: breaker_of(shop, "points/deduct").state, lambda s: s == breaker.OPEN,
                         timeout=30, interval=0.05)
                seen.append(breaker.OPEN)
                time.sleep(0.3)  # orders meanwhile are refused at once
                shop.fake.down = set()
                wait_for(lambda: breaker_of(shop, "points/deduct").state, lambda s: s == breaker.CLOSED,
                         timeout=30, interval=0.05)  # after the open period, a probing order closes it
                seen.append(breaker.CLOSED)
                time.sleep(0.3)
        finally:
            done.set()

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    with ThreadPoolExecutor(6) as pool:
        attempts = [a for batch in pool.map(lambda m: orders_until(shop, m, done), members) for a in batch]
    flapper.join()
    assert seen == [breaker.OPEN, breaker.CLOSED] * 2
    statuses = Counter((a.status, a.code if a.status >= 400 else a.body["status"]) for a in attempts)
    assert set(statuses) <= {(201, "paid"), (201, "failed"), (201, "awaiting_deduction"),
                             (503, "partner_unavailable")}, statuses
    assert statuses[(503, "partner_unavailable")] > 0 and statuses[(201, "paid")] > 0, statuses
    monkeypatch.setattr(checkout, "DEDUCT_LEASE_SECONDS", 0)
    monkeypatch.setattr(channels, "list_all", lambda: [channels.get(shop.code)])
    wait_for(lambda: checkout.sweep_remote()[shop.code], lambda r: r["awaiting_deduction"] == 0,
             timeout=20, interval=0.3)
    assert_agree(shop)
    system.streams.drain()  # successful calls of paid orders are booked from the orders stream
    day = reliability.stats(shop.code, None, int(time.time()) - 86400)
    assert day["errors"] > 0 and day["refused"] > 0, day


# --- which failures are sent again -------------------------------------------------------------------

@pytest.mark.parametrize("api, status, sent", [
    ("password/verify", 503, 3),  # 503: not processed; safe to send again for any API
    ("password/verify", 502, 1),  # maybe processed: a password try must not count twice
    ("password/verify", 500, 1),
    ("points/query", 502, 3),  # idempotent by contract
    ("points/deduct", 504, 3),
    ("points/refund", 500, 1),  # 500: the channel failed at it; the caller's query resolves it
])
def test_a_request_is_sent_again_only_where_that_cannot_do_anything_twice(system, ops, shop_of, api, status, sent):
    shop = shop_of()
    shop.fake.down, shop.fake.down_status = {api}, status
    with pytest.raises(channel_api.PartnerError) as failed:
        channel_api.call(channels.get(shop.code), api, {"order_id": uid("O"), "member_id": "m", "points": 1,
                                                        "password": "x", "refund_id": uid("R")})
    assert failed.value.code == "channel_api_unavailable" and shop.fake.hits[api] == sent
    ids = {cid for a, cid in shop.fake.seen if a == api}
    assert ids == {failed.value.correlation_id}  # every attempt of one call carries the same id
    assert failed.value.body()["error"]["correlation_id"] == failed.value.correlation_id


def test_a_refused_connection_is_tried_again_even_for_a_password(system, ops, shop_of):
    from fake_channel import closed_url

    shop = shop_of()
    Channel(shop.code).update(actions=[Channel.api_base_url.set(closed_url())])
    started = time.perf_counter()
    with pytest.raises(channel_api.PartnerError) as failed:
        channel_api.call(channels.get(shop.code), "password/verify", {"member_id": "m", "password": "x"})
    assert failed.value.code == "channel_api_unavailable" and time.perf_counter() - started < 3
    system.streams.drain()  # successful calls of paid orders are booked from the orders stream
    figures = reliability.stats(shop.code, "password/verify", int(time.time()) - 60)
    assert (figures["calls"], figures["errors"], figures["attempts"]) == (1, 1, channel_api.ATTEMPTS)
    assert figures["by_kind"] == {"connect_error": channel_api.ATTEMPTS}


# --- the channel's own timeout, as ops set it -------------------------------------------------------------

def test_ops_set_a_channels_api_timeout_within_bounds_audited(ops):
    code = ok(ops.post("/ops/channels", json=channel_body()), 201)["channel"]["code"]
    assert ok(ops.get(f"/ops/channels/{code}"))["api_timeout_seconds"] is None
    for bad in (0.4, 10.5, "NaN", "x"):
        assert_error(ops.patch(f"/ops/channels/{code}", json={"api_timeout_seconds": bad}), 422, "validation_error",
                     "api_timeout_seconds")
    assert ok(ops.patch(f"/ops/channels/{code}", json={"api_timeout_seconds": 0.5}))["api_timeout_seconds"] == 0.5
    assert ok(ops.patch(f"/ops/channels/{code}", json={"api_timeout_seconds": 10}))["api_timeout_seconds"] == 10
    audit = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert sorted(float(r["new"]) for r in audit if r["field"] == "api_timeout_seconds") == [0.5, 10], audit
    assert channel_api.timeouts(channels.get(code)) == (channel_api.CONNECT_TIMEOUT, 10)


def test_partner_health_is_for_ops_only(system, ops, anon):
    code = ok(ops.post("/ops/channels", json=channel_body()), 201)["channel"]["code"]
    assert anon.get(f"/ops/channels/{code}/partner-health").status_code in (401, 403)
    assert_error(ops.get(f"/ops/channels/{uid('nx-')}/partner-health"), 404, "channel_not_found")
    system.streams.drain()  # successful calls of paid orders are booked from the orders stream
    fresh = ok(ops.get(f"/ops/channels/{code}/partner-health"))
    assert fresh["apis"] == {} and fresh["last_day"]["calls"] == 0 and fresh["last_hour"]["p95_ms"] is None


# --- webhooks: paused while the breaker is open, delivered or redriven after -------------------------------

def record(code: str, n: int) -> list[str]:
    tx = LabelledTransaction()
    ids = [events.record(tx, code, "order.paid", uid("ord-"), {"points": i}) for i in range(n)]
    tx.commit()
    return ids


def test_a_dead_webhook_pauses_its_channel_without_spending_attempts_then_delivers_and_redrives(ops, monkeypatch):
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", str(OPEN_SECONDS))  # the webhook breaker's open period too
    monkeypatch.setenv("WEBHOOK_RETRY_WINDOW_SECONDS", "0")  # the first failure parks: ops must redrive
    with Receiver() as receiver:
        code, secret = webhook_channel(ops, receiver.url)
        receiver.secrets, receiver.down = [secret], True
        n = breaker.MIN_FAILURES + 2
        ids = record(code, n)
        first = webhooks.deliver_due(code)
        assert (first["parked"], first["paused"]) == (breaker.MIN_FAILURES, 2), first
        parked = [i for i in ids if OutboxEvent.get(i).state == "parked"]
        waiting = [i for i in ids if i not in parked]
        assert len(parked) == breaker.MIN_FAILURES and all(receiver.posts[i] == 0 for i in waiting)
        again = webhooks.deliver_due(code)  # open: the round stops at once, nothing sent, no attempt spent
        assert again["paused"] == 2 and sum(receiver.posts.values()) == breaker.MIN_FAILURES, again
        assert all(int(OutboxEvent.get(i).attempts) == 0 for i in waiting)
        health = ok(ops.get(f"/ops/channels/{code}/partner-health"))["apis"]["webhook"]
        assert health["breaker"]["refusing"] and health["last_hour"]["refused"] == 2, health  # one per round
        assert health["last_hour"]["by_kind"] == {"server_error": breaker.MIN_FAILURES}

        receiver.down = False
        time.sleep(OPEN_SECONDS)
        assert webhooks.deliver_due(code)["delivered"] == 2  # the probe delivers and closes; the other follows
        assert breaker_of_channel(code, "webhook") == breaker.State()
        assert ok(ops.post(f"/ops/channels/{code}/webhooks/redrive", json={})) == {
            "redriven": breaker.MIN_FAILURES}
        assert webhooks.deliver_due(code)["delivered"] == breaker.MIN_FAILURES
        assert set(receiver.processed) == set(ids) and receiver.unverified == []
        assert {h.get("x-correlation-id", "")[:3] for h in receiver.headers.values()} == {"cm-"}
        assert all(OutboxEvent.get(i).state == "delivered" for i in parked + waiting)


def test_a_redrive_closes_the_webhook_breaker_at_once(ops, monkeypatch):
    """Ops fixed the receiver and redrive: the next round sends, without waiting out the open period."""
    monkeypatch.setenv("WEBHOOK_RETRY_WINDOW_SECONDS", "0")
    with Receiver() as receiver:
        code, secret = webhook_channel(ops, receiver.url)
        receiver.secrets, receiver.down = [secret], True
        ids = record(code, breaker.MIN_FAILURES)
        assert webhooks.deliver_due(code)["parked"] == breaker.MIN_FAILURES
        assert breaker_of_channel(code, "webhook").state == breaker.OPEN  # for the default 30 s
        receiver.down = False
        ok(ops.post(f"/ops/channels/{code}/webhooks/redrive", json={}))
        assert webhooks.deliver_due(code)["delivered"] == len(ids) and set(receiver.processed) == set(ids)
