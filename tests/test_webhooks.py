"""Order events reach the channel's webhook: signed per Standard Webhooks (checked here with the independent
``standardwebhooks`` package), at least once, retried, parked and redriven; webhook secret rotation."""
from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from chalicelib.partners import events, webhooks
from chalicelib.core.models import LabelledTransaction, OutboxEvent
from tests.helpers import assert_error, channel_body, ok, race, uid, wait_for
from tests.local_http import Drip, LocalHttpFake


class Receiver(LocalHttpFake):
    """A channel's webhook endpoint: verifies every delivery with each secret it knows, dedupes by webhook-id.

    ``down_for`` answers 503 to the first n deliveries of each id without processing them; ``lost_answers``
    processes the first n and still answers 500 (the answer lost on the way back), so the sender retries;
    ``drip`` (a ``Drip``) drips every answer a byte at a time until released."""

    protocol_version = "HTTP/1.1"

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = secrets or []
        self.down_for = 0
        self.lost_answers = 0
        self.down = False
        self.lock = threading.Lock()
        self.posts: Counter[str] = Counter()
        self.processed: dict[str, dict] = {}  # webhook-id → the event, once
        self.verified_with: dict[str, set[int]] = {}  # webhook-id → indexes of the secrets that verified it
        self.unverified: list[str] = []
        self.headers: dict[str, dict[str, str]] = {}
        self.drip: Drip | None = None

    def _handle(self, handler: Any) -> None:
        if self.drip is not None:
            self.drip.answer(handler)
            return
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        sent = {k.lower(): v for k, v in handler.headers.items()}
        msg_id = sent.get("webhook-id", "")
        ok_with = set()
        for i, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, sent)
                ok_with.add(i)
            except WebhookVerificationError:
                pass
        with self.lock:
            self.posts[msg_id] += 1
            n = self.posts[msg_id]
            self.headers[msg_id] = sent
            if not ok_with:
                self.unverified.append(msg_id)
                status = 401
            elif self.down or n <= self.down_for:
                status = 503
            else:
                self.verified_with[msg_id] = ok_with
                self.processed.setdefault(msg_id, json.loads(body))  # dedupe: a repeat id changes nothing
                status = 500 if n <= self.down_for + self.lost_answers else 204
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@pytest.fixture
def receiver():
    with Receiver() as fake:
        yield fake


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0.05")


def webhook_channel(ops, url: str, **overrides: Any) -> tuple[str, str]:
    created = ok(ops.post("/ops/channels", json=channel_body(webhook_url=url + "/hooks", **overrides)), 201)
    assert created["channel"]["webhook_url"] == url + "/hooks"
    return created["channel"]["code"], created["webhook_secret"]


def record(code: str, n: int, sandbox: bool = False) -> list[str]:
    """n order.paid events for the channel, committed in one transaction as a state change would."""
    tx = LabelledTransaction()
    ids = [events.record(tx, code, "order.paid", uid("ord-"), {"points": i}, sandbox=sandbox) for i in range(n)]
    tx.commit()
    return ids


def stored(event_id: str) -> OutboxEvent:
    return OutboxEvent.get(event_id, consistent_read=True)


def deliver_until(code: str, done, timeout: float = 30.0) -> None:
    """Delivery rounds, as the minutely sweep would run them, until ``done()``."""
    wait_for(lambda: webhooks.deliver_due(code), lambda _: done(), timeout=timeout, interval=0.05)


# --- secrets and settings ---------------------------------------------------------------------

def test_a_channel_gets_a_webhook_secret_apart_from_its_signing_secret_shown_once(ops, receiver):
    created = ok(ops.post("/ops/channels", json=channel_body(webhook_url=receiver.url)), 201)
    secret = created["webhook_secret"]
    assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:])) <= 64
    assert secret != created["secret"]
    code = created["channel"]["code"]
    shown = ok(ops.get(f"/ops/channels/{code}"))
    assert shown["webhook_secret_set"] is True and secret not in json.dumps(shown)


@pytest.mark.parametrize("url, status, code", [
    ("http://10.0.0.7/hooks", 422, "private_webhook_url"),
    ("http://169.254.169.254/latest", 422, "private_webhook_url"),
    ("http://user:pw@example.com/hooks", 422, "invalid_webhook_url"),
    ("ftp://example.com/hooks", 422, "validation_error"),
])
def test_webhook_url_follows_the_api_base_url_rules(ops, url, status, code):
    assert_error(ops.post("/ops/channels", json=channel_body(webhook_url=url)), status, code)
    existing = ok(ops.post("/ops/channels", json=channel_body()), 201)["channel"]["code"]
    assert_error(ops.patch(f"/ops/channels/{existing}", json={"webhook_url": url}), status, code)


def test_webhook_url_must_be_https_outside_the_local_stage():
    from chalicelib.partners import endpoints
    from chalicelib.core.errors import Unprocessable

    with pytest.raises(Unprocessable) as refused:
        endpoints.check_base_url("http://hooks.example.com/in", local=False, field="webhook_url")
    assert refused.value.code == "insecure_webhook_url"
    endpoints.check_base_url("https://hooks.example.com/in", local=False, field="webhook_url")


# --- delivery -----------------------------------------------------------------------------

def test_events_are_delivered_signed_and_verified_by_an_independent_implementation(ops, receiver):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets = [secret]
    ids = record(code, 3)
    assert webhooks.deliver_due(code)["delivered"] == 3
    assert receiver.unverified == [] and set(receiver.processed) == set(ids)
    for event_id in ids:
        event = stored(event_id)
        assert receiver.processed[event_id] == json.loads(event.payload)
        assert receiver.processed[event_id]["id"] == event_id and receiver.processed[event_id]["type"] == "order.paid"
        assert event.state == "delivered" and int(event.attempts) == 1 and event.pending is None
        assert receiver.headers[event_id]["webhook-signature"].count("v1,") == 1
    assert webhooks.deliver_due(code)["delivered"] == 0  # nothing due any more: nothing sent again
    assert sum(receiver.posts.values()) == 3


def test_a_receiver_down_for_the_first_attempts_gets_each_event_once_per_id(ops, receiver, fast_retries):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.down_for, receiver.lost_answers = [secret], 2, 1
    ids = record(code, 4)
    deliver_until(code, lambda: all(stored(i).state == "delivered" for i in ids))
    assert set(receiver.processed) == set(ids) and receiver.unverified == []
    for event_id in ids:  # 2 refused, 1 processed with its answer lost, 1 repeat deduped by webhook-id
        assert receiver.posts[event_id] == 4
        event = stored(event_id)
        assert int(event.attempts) == 4 and event.last_error == "answered 500"


def test_a_receiver_down_for_good_parks_events_then_ops_redrive_delivers_them(ops, receiver, fast_retries):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.down = [secret], True
    ids = record(code, 2)
    deliver_until(code, lambda: all(stored(i).state == "parked" for i in ids))
    assert all(receiver.posts[i] == webhooks.MAX_ATTEMPTS for i in ids)
    parked = ok(ops.get(f"/ops/channels/{code}/webhooks/parked"))["events"]
    assert {e["event_id"] for e in parked} == set(ids)
    assert all(e["attempts"] == webhooks.MAX_ATTEMPTS and e["last_error"] == "answered 503" for e in parked)
    assert webhooks.deliver_due(code)["delivered"] == 0  # parked: no longer swept

    receiver.down = False
    assert ok(ops.post(f"/ops/channels/{code}/webhooks/redrive", json={})) == {"redriven": 2}
    assert ok(ops.post(f"/ops/channels/{code}/webhooks/redrive", json={})) == {"redriven": 0}
    assert webhooks.deliver_due(code)["delivered"] == 2
    assert set(receiver.processed) == set(ids)
    assert ok(ops.get(f"/ops/channels/{code}/webhooks/parked"))["events"] == []
    assert all(stored(i).state == "delivered" and stored(i).parked is None for i in ids)
    audit = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert sorted(row["new"] for row in audit if row["action"] == "webhook_redriven") == sorted(ids)


def test_a_channel_without_a_webhook_url_keeps_its_events_waiting(ops, receiver):
    code = ok(ops.post("/ops/channels", json=channel_body()), 201)["channel"]["code"]
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["not_configured"] == 1
    assert stored(event_id).state == "pending" and int(stored(event_id).attempts) == 0
    ok(ops.patch(f"/ops/channels/{code}", json={"webhook_url": receiver.url}))
    receiver.secrets = [ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={}))["webhook_secret"]]
    assert webhooks.deliver_due(code)["delivered"] == 1 and set(receiver.processed) == {event_id}


def test_sandbox_events_are_delivered_marked(ops, receiver):
    code, secret = webhook_channel(ops, receiver.url, sandbox=True)
    receiver.secrets = [secret]
    [event_id] = record(code, 1, sandbox=True)
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.processed[event_id]["sandbox"] is True
    assert receiver.headers[event_id]["webhook-sandbox"] == "true"


def test_rotation_sends_both_signatures_during_the_overlap(ops, receiver):
    code, old = webhook_channel(ops, receiver.url)
    rotated = ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={"overlap_seconds": 3600}))
    new = rotated["webhook_secret"]
    assert new.startswith("whsec_") and new != old and rotated["channel"]["previous_webhook_secret_until"]
    assert_error(ops.post(f"/ops/channels/{code}/webhook-secret", json={}), 409, "rotation_in_progress")
    receiver.secrets = [old, new]
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.verified_with[event_id] == {0, 1}  # a receiver holding either secret verifies it
    assert receiver.headers[event_id]["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        Webhook(secret).verify(json.dumps(receiver.processed[event_id], separators=(",", ":"), ensure_ascii=False,
                                          sort_keys=True), receiver.headers[event_id])
    audit = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert any(row["action"] == "webhook_secret_rotated" for row in audit)
    assert old not in json.dumps(audit) and new not in json.dumps(audit)


def test_rotation_without_overlap_signs_with_the_new_secret_only(ops, receiver):
    code, old = webhook_channel(ops, receiver.url)
    new = ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={"overlap_seconds": 0}))["webhook_secret"]
    receiver.secrets = [old, new]
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.verified_with[event_id] == {1}


def test_fifty_concurrent_deliverers_book_each_event_once(ops, receiver):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets = [secret]
    ids = record(code, 20)
    outcomes = race(50, lambda _: webhooks.deliver_due(code))
    assert sum(o["delivered"] for o in outcomes) == 20  # each event booked delivered exactly once
    assert all(receiver.posts[i] >= 1 for i in ids) and set(receiver.processed) == set(ids)
    assert receiver.unverified == []
    for event_id in ids:
        event = stored(event_id)
        assert event.state == "delivered" and int(event.attempts) == 1 and event.pending is None


def test_redrive_of_an_unknown_channel_is_404(ops):
    assert_error(ops.post(f"/ops/channels/{uid('nx-')}/webhooks/redrive", json={}), 404, "channel_not_found")
    assert_error(ops.get(f"/ops/channels/{uid('nx-')}/webhooks/parked"), 404, "channel_not_found")


def test_retry_delays_double_and_are_capped():
    delays = [webhooks.retry_delay(n, 30) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920]
    assert webhooks.retry_delay(40, 30) == webhooks.RETRY_CAP


def test_the_minutely_sweep_delivers_what_no_commit_delivered(system, ops, receiver):
    from pathlib import Path

    from chalice.local import LambdaContext

    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets = [secret]
    ids = record(code, 2)
    scheduled = json.loads((Path(__file__).resolve().parent.parent / "events" / "resolve_remote_orders.json")
                           .read_text())
    result = system.app.deliver_webhooks(scheduled, LambdaContext("deliver_webhooks", 256))
    assert result[code]["delivered"] == 2 and set(receiver.processed) == set(ids)


class Redirector(LocalHttpFake):
    """A webhook endpoint that answers every delivery with a redirect to ``target``."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def _handle(self, handler: Any) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler.send_response(307)
        handler.send_header("Location", self.target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


def test_a_redirect_is_a_failed_attempt_never_followed(ops, receiver):
    with Redirector(receiver.url + "/hooks") as redirector:
        code, secret = webhook_channel(ops, redirector.url)
        receiver.secrets = [secret]
        [event_id] = record(code, 1)
        assert webhooks.deliver_due(code)["retrying"] == 1
    assert receiver.posts == Counter()
    event = stored(event_id)
    assert event.state == "pending" and event.last_error == "answered 307" and int(event.attempts) == 1


def test_a_webhook_url_that_became_private_is_not_called(ops, receiver):
    """A URL written behind the API (or a name that now resolves inside) is refused at delivery too."""
    from chalicelib.core.models import Channel

    code, _ = webhook_channel(ops, receiver.url)
    Channel(code).update(actions=[Channel.webhook_url.set("http://10.1.2.3/hooks")])
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["retrying"] == 1
    assert stored(event_id).last_error == "webhook URL refused (private_webhook_url)"


def test_a_channel_from_before_webhook_secrets_gets_its_first_by_rotation(ops, receiver):
    from chalicelib.core.models import Channel

    code, _ = webhook_channel(ops, receiver.url)
    Channel(code).update(actions=[Channel.webhook_secret.remove()])
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["not_configured"] == 1  # nothing to sign with: the event waits
    first = ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={"overlap_seconds": 3600}))
    assert first["channel"]["previous_webhook_secret_until"] is None  # no earlier secret to keep signing with
    receiver.secrets = [first["webhook_secret"]]
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.headers[event_id]["webhook-signature"].count("v1,") == 1 and receiver.unverified == []


def test_concurrent_redrives_move_and_audit_each_parked_event_once(system, ops, receiver, fast_retries):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.down = [secret], True
    ids = record(code, 3)
    deliver_until(code, lambda: all(stored(i).state == "parked" for i in ids))
    answers = race(20, lambda _: ops.post(f"/ops/channels/{code}/webhooks/redrive", json={}))
    assert [a.status_code for a in answers] == [200] * 20
    assert sum(a.json()["redriven"] for a in answers) == 3
    audit = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert sorted(row["new"] for row in audit if row["action"] == "webhook_redriven") == sorted(ids)
    assert all(stored(i).state == "pending" and int(stored(i).attempts) == 0 for i in ids)
