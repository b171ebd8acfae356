"""One slow channel costs only itself. Every call to a channel's back end (its API, its webhook) ends within a
total deadline however slowly the back end drips its answer, and the breaker hears of it; the webhook,
remote-order and refund sweeps run the channels side by side, each within its own budget, so a healthy
channel swept after a slow one is served while the slow one still holds its call.

The slow back end is a ``Drip`` (``local_http``): a byte every 50 ms, far inside any per-read timeout, and
never a complete answer until the test releases it. So nothing here races the clock: a call that is not cut
by our deadline hangs until released, and the test's own generous wait (``within``) turns that into a
failure instead of a hang."""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.checkout import checkout
from chalicelib.orders import fulfilment, refunds
from chalicelib.orders.models import Order
from chalicelib.partners import reliability, webhooks
from fake_wallet_channel import DOWN, NORMAL, TIMEOUT_AFTER
from tests.helpers import ok, uid, wait_for
from tests.local_http import Drip
from tests.test_partner_reliability import fast_breaker, shop_of  # noqa: F401 (fixtures)
from tests.test_remote_refunds import shipped
from tests.test_webhooks import Receiver, record, stored, webhook_channel

GENEROUS = 20.0  # seconds: a bound on what should take about one, never a measurement


@pytest.fixture
def drip():
    slow = Drip()
    yield slow
    slow.release()


@pytest.fixture
def background():
    """Run a call on its own thread (``background(fn, *args)`` → its future), so a call that hangs fails the
    test at ``within`` instead of hanging it."""
    pool = ThreadPoolExecutor(2)
    yield lambda fn, *args: pool.submit(fn, *args)
    pool.shutdown(wait=False)


def within(future: Future, seconds: float = GENEROUS) -> Any:
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        raise AssertionError(f"still waiting after {seconds} s: no deadline cut the call") from None


def timeouts_booked(code: str, api: str) -> dict[str, int]:
    return reliability.stats(code, api, int(time.time()) - 120)["by_kind"]


def sweeping(monkeypatch, *codes: str) -> None:
    """Every sweep sees just these channels, in this order (the slow one first: swept one at a time, it would
    hold every channel after it)."""
    monkeypatch.setattr(channels, "list_all", lambda: [channels.get(code) for code in codes])
    monkeypatch.setattr(Channel, "scan", classmethod(lambda cls, *a, **k: iter([Channel.get(c) for c in codes])))


# --- every call has a total deadline ----------------------------------------------------------------------

def test_a_channel_api_that_drips_its_answer_is_cut_at_the_calls_deadline(shop_of, drip, background):
    shop = shop_of(timeout=0.5)  # each read waits 0.5 s at most; the call, connect + read: 1 s in all
    member = shop.member(points=50_000)
    shop.fake.drips["password/verify"] = drip
    placed = within(background(shop.place, requests.Session(), member))
    assert (placed.status, placed.code) == (502, "channel_api_timeout"), placed.body
    assert drip.served == 1 and not drip.released  # cut by us, the back end still dripping
    assert timeouts_booked(shop.code, "password/verify") == {"timeout": 1}  # the breaker counts it


def test_a_webhook_receiver_that_drips_its_answer_is_cut_at_the_attempts_deadline(ops, drip, background,
                                                                                  monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT", 1.0)
    with Receiver() as receiver:
        code, _ = webhook_channel(ops, receiver.url)
        receiver.drip = drip
        [event_id] = record(code, 1)
        outcome = within(background(webhooks.deliver_due, code))
    assert outcome["retrying"] == 1 and not drip.released
    event = stored(event_id)
    assert event.state == "pending" and int(event.attempts) == 1 and event.last_error == "timed out"
    assert timeouts_booked(code, webhooks.BREAKER_API) == {"timeout": 1}


# --- the sweeps: one channel's slowness costs only that channel --------------------------------------------

def test_the_webhook_sweep_serves_a_healthy_channel_while_a_slow_one_holds_its_call(ops, drip, background,
                                                                                   monkeypatch):
    with Receiver() as slow, Receiver() as healthy:
        slow_code, _ = webhook_channel(ops, slow.url, code=uid("w0-"))
        healthy_code, healthy.secrets = webhook_channel(ops, healthy.url, code=uid("w1-"))
        healthy.secrets = [healthy.secrets]
        slow.drip = drip
        [held] = record(slow_code, 1)
        served = record(healthy_code, 2)
        sweeping(monkeypatch, slow_code, healthy_code)
        sweep = background(webhooks.sweep)
        wait_for(lambda: (set(healthy.processed), drip.holding), lambda seen: seen == (set(served), 1),
                 timeout=GENEROUS)  # the healthy channel's events arrive while the slow one still drips
        drip.release()
        outcome = within(sweep)
    assert outcome[healthy_code]["delivered"] == 2 and outcome[slow_code]["delivered"] == 1, outcome
    assert all(stored(i).state == "delivered" for i in [held, *served])


def awaiting_order(shop) -> str:
    """An order whose deduct the channel applied but whose answer, and the query after it, were lost."""
    member = shop.member(points=50_000)
    shop.fake.slow_seconds, shop.fake.deduct_mode, shop.fake.down = 0.8, TIMEOUT_AFTER, {"points/query"}
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201 and placed.body["status"] == "awaiting_deduction", placed.body
    shop.fake.deduct_mode, shop.fake.down = NORMAL, set()
    return placed.order_id


def test_the_remote_order_sweep_resolves_a_healthy_channel_and_reaches_fulfilment_while_a_slow_one_drips(
        system, shop_of, drip, background, monkeypatch):
    from chalice.local import LambdaContext

    scheduled = json.loads((Path(__file__).resolve().parent.parent / "events" / "resolve_remote_orders.json")
                           .read_text())

    slow, healthy = shop_of(timeout=0.5), shop_of(timeout=0.5)
    held, resolved = awaiting_order(slow), awaiting_order(healthy)
    slow.fake.drips["points/query"] = drip
    monkeypatch.setattr(checkout, "DEDUCT_LEASE_SECONDS", 0)
    sweeping(monkeypatch, slow.code, healthy.code)
    started: list[dict] = []
    real = fulfilment.sweep_unstarted
    monkeypatch.setattr(fulfilment, "sweep_unstarted", lambda: started.append(real()) or started[-1])

    outcome = within(background(system.app.resolve_remote_orders, scheduled, LambdaContext("resolve_remote_orders", 256)))
    assert not drip.released and drip.served == 1  # the slow channel was cut by its deadline, not let go
    assert outcome[healthy.code] == {"paid": 1, "failed": 0, "awaiting_deduction": 0}, outcome
    assert outcome[slow.code] == {"paid": 0, "failed": 0, "awaiting_deduction": 1}, outcome
    assert len(started) == 1  # the same Lambda went on to the unstarted fulfilments
    assert Order.get(resolved, consistent_read=True).status == "paid"
    assert Order.get(held, consistent_read=True).status == "awaiting_deduction"


def test_the_refund_sweep_settles_a_healthy_channel_while_a_slow_one_holds_its_call(
        system, ops, shop_of, drip, background, monkeypatch):
    slow, healthy = shop_of(), shop_of()
    waiting: dict[str, str] = {}
    for shop in (slow, healthy):
        parcel_id = shipped(shop, shop.member(points=50_000))
        shop.fake.refund_mode = shop.fake.refund_query_mode = DOWN
        refund = ok(ops.post(f"/ops/parcels/{parcel_id}/refund", json={"reason": "lost"}))
        assert refund["state"] == "awaiting_channel", refund
        shop.fake.refund_mode = shop.fake.refund_query_mode = NORMAL
        waiting[shop.code] = refund["refund_id"]
    slow.fake.drips["points/refund/query"] = drip
    monkeypatch.setattr(refunds, "SWEEP_GRACE_SECONDS", 0)
    sweeping(monkeypatch, slow.code, healthy.code)

    sweep = background(refunds.sweep)
    state: Callable[[str], str] = lambda code: refunds.get(waiting[code]).state
    wait_for(lambda: (state(healthy.code), drip.holding), lambda seen: seen == ("refunded", 1), timeout=GENEROUS)
    drip.release()
    outcome = within(sweep)
    assert outcome[healthy.code]["refunded"] == 1 and outcome[slow.code]["awaiting_channel"] == 1, outcome
    assert state(slow.code) == "awaiting_channel"
