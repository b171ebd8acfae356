"""Order events reach the channel's webhook: signed per Standard Webhooks (checked here with the independent
``standardwebhooks`` package), at least once, retried, parked and redriven; webhook secret rotation."""
from __future__ import annotations

import base64
import json
import random
import threading
import time
from datetime import datetime, timezone
from collections import Counter
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from chalicelib.core.tx import LabelledTransaction
from chalicelib.partners import events, webhooks
from chalicelib.partners.models import OutboxEvent
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
        self.public_keys: list[str] = []  # whpk_ keys: v1a signatures are verified with them too
        self.v1a_verified_with: dict[str, set[int]] = {}  # webhook-id → indexes of the public keys that verified it
        self.answer: tuple[int, dict[str, str]] | None = None  # answer every delivery so (status, headers)

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
        v1a_with = {i for i, key in enumerate(self.public_keys) if verify_v1a(key, sent, body)}
        with self.lock:
            self.posts[msg_id] += 1
            n = self.posts[msg_id]
            self.headers[msg_id] = sent
            self.v1a_verified_with[msg_id] = v1a_with
            if self.answer is not None:
                handler.send_response(self.answer[0])
                for name, value in {"Content-Length": "0", **self.answer[1]}.items():
                    handler.send_header(name, value)
                handler.end_headers()
                return
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


def verify_v1a(public_key: str, sent: dict[str, str], body: bytes) -> bool:
    """A channel's check of a ``v1a`` signature, written from the Standard Webhooks spec with ``cryptography``
    alone (not our signing module): Ed25519 over ``{id}.{timestamp}.{body}``, any signature in the header."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[5:]))
    signed = f"{sent.get('webhook-id')}.{sent.get('webhook-timestamp')}.".encode() + body
    for part in sent.get("webhook-signature", "").split(" "):
        version, _, signature = part.partition(",")
        if version == "v1a":
            try:
                key.verify(base64.b64decode(signature), signed)
                return True
            except InvalidSignature:
                pass
    return False


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
    from chalicelib.channels import endpoints
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


def test_a_receiver_down_for_good_parks_events_then_ops_redrive_delivers_them(ops, receiver, fast_retries,
                                                                                monkeypatch):
    monkeypatch.setenv("WEBHOOK_RETRY_WINDOW_SECONDS", "0.5")  # three days, in tests half a second
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.down = [secret], True
    ids = record(code, 2)
    deliver_until(code, lambda: all(stored(i).state == "parked" for i in ids))
    assert all(receiver.posts[i] >= 2 for i in ids)  # retried within the window, parked at the first failure after
    parked = ok(ops.get(f"/ops/channels/{code}/webhooks/parked"))["events"]
    assert {e["event_id"] for e in parked} == set(ids)
    assert all(e["attempts"] == receiver.posts[e["event_id"]] and e["last_error"] == "answered 503" for e in parked)
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


def test_retry_delays_double_with_jitter_and_are_capped():
    steps = [30, 60, 120, 240, 480, 960, 1920]
    assert [webhooks.retry_delay(n, 30, rand=lambda: 1.0) for n in range(1, 8)] == steps
    assert [webhooks.retry_delay(n, 30, rand=lambda: 0.0) for n in range(1, 8)] == [s / 2 for s in steps]
    assert webhooks.retry_delay(40, 30, rand=lambda: 1.0) == webhooks.RETRY_CAP
    assert len({webhooks.retry_delay(5, 30) for _ in range(20)}) > 1  # jittered: a backlog does not return in step


def test_failures_are_retried_for_at_least_three_days_then_parked():
    """A receiver down for good: the schedule, as the deliverer books it, from the event's creation."""
    for rand in (lambda: 0.0, lambda: 1.0, random.random):
        failed_at, attempts, until = 0.0, 0, webhooks.RETRY_WINDOW
        while True:
            attempts += 1
            due = webhooks.next_due(attempts, failed_at, until, webhooks.RETRY_BASE, rand=rand)
            if due is None:
                break
            assert due - failed_at <= webhooks.RETRY_CAP
            failed_at = due
        assert failed_at >= 3 * 86400 and failed_at < 3 * 86400 + webhooks.RETRY_CAP, failed_at
        assert 20 <= attempts <= 45, attempts  # Stripe's three days, not an hour; never a storm of attempts


def test_retry_after_is_read_as_seconds_or_a_date_and_capped():
    now = 1_800_000_000.0
    assert webhooks.retry_after("120", now) == 120
    assert webhooks.retry_after("Fri, 15 Jan 2038 08:00:00 GMT", now) == webhooks.RETRY_AFTER_CAP
    date = datetime.fromtimestamp(now + 90, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert webhooks.retry_after(date, now) == 90
    assert webhooks.retry_after("soon", now) is None and webhooks.retry_after(None, now) is None
    assert webhooks.next_due(1, now, now + 10, 30, asked=600, rand=lambda: 1.0) == now + 600  # later of the two


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
    from chalicelib.channels.models import Channel

    code, _ = webhook_channel(ops, receiver.url)
    Channel(code).update(actions=[Channel.webhook_url.set("http://10.1.2.3/hooks")])
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["retrying"] == 1
    assert stored(event_id).last_error == "webhook URL refused (private_webhook_url)"


def test_a_channel_from_before_webhook_secrets_gets_its_first_by_rotation(ops, receiver):
    from chalicelib.channels.models import Channel

    code, _ = webhook_channel(ops, receiver.url)
    Channel(code).update(actions=[Channel.webhook_secret.remove()])
    [event_id] = record(code, 1)
    assert webhooks.deliver_due(code)["not_configured"] == 1  # nothing to sign with: the event waits
    first = ok(ops.post(f"/ops/channels/{code}/webhook-secret", json={"overlap_seconds": 3600}))
    assert first["channel"]["previous_webhook_secret_until"] is None  # no earlier secret to keep signing with
    receiver.secrets = [first["webhook_secret"]]
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.headers[event_id]["webhook-signature"].count("v1,") == 1 and receiver.unverified == []


def test_concurrent_redrives_move_and_audit_each_parked_event_once(system, ops, receiver, fast_retries, monkeypatch):
    monkeypatch.setenv("WEBHOOK_RETRY_WINDOW_SECONDS", "0.5")
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


# --- as the anchors deliver: three days, Retry-After, 410 Gone, v1a ----------------------------------------

def test_an_event_that_failed_all_night_is_still_retried_and_parks_only_after_three_days(ops, receiver):
    """Eight failures over a night (a channel's maintenance window) used to park the event; now only a failure
    after its three-day window does."""
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.down = [secret], True
    [event_id] = record(code, 1)
    night = datetime.fromtimestamp(time.time() - 12 * 3600, timezone.utc).isoformat(timespec="milliseconds")
    OutboxEvent(event_id).update(actions=[OutboxEvent.attempts.set(7), OutboxEvent.created_at.set(night)])
    assert webhooks.deliver_due(code)["retrying"] == 1
    event = stored(event_id)
    assert event.state == "pending" and int(event.attempts) == 8 and event.due_at > time.time()

    gone_by = datetime.fromtimestamp(time.time() - webhooks.RETRY_WINDOW - 60, timezone.utc).isoformat()
    OutboxEvent(event_id).update(actions=[OutboxEvent.created_at.set(gone_by), OutboxEvent.due_at.set(time.time())])
    assert webhooks.deliver_due(code)["parked"] == 1
    assert stored(event_id).state == "parked"
    ok(ops.post(f"/ops/channels/{code}/webhooks/redrive", json={}))  # a redrive starts a new window
    assert webhooks.deliver_due(code)["retrying"] == 1 and stored(event_id).state == "pending"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_for_the_whole_channel(ops, receiver, fast_retries, status):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.answer = [secret], (status, {"Retry-After": "120"})
    ids = record(code, 3)
    first = webhooks.deliver_due(code)
    assert (first["retrying"], first["paused"]) == (1, 2), first  # the rest of the round waits too
    asked = next(stored(i) for i in ids if receiver.posts[i])
    assert asked.due_at >= time.time() + 110 and asked.last_error == f"answered {status} (Retry-After 120 s)"
    again = webhooks.deliver_due(code)
    assert again["paused"] == 2 and sum(receiver.posts.values()) == 1, again  # nothing before the time asked
    health = ok(ops.get(f"/ops/channels/{code}/partner-health"))["apis"]["webhook"]["breaker"]
    assert health["refusing"] and health["retry_at"] >= time.time() + 110, health


def test_410_gone_disables_the_endpoint_until_ops_enable_it(ops, anon, receiver):
    code, secret = webhook_channel(ops, receiver.url)
    receiver.secrets, receiver.answer = [secret], (410, {})
    ids = record(code, 3)
    assert webhooks.deliver_due(code)["disabled"] == 3 and sum(receiver.posts.values()) == 1
    shown = ok(ops.get(f"/ops/channels/{code}/webhooks"))
    assert shown["disabled_at"] and shown["disabled_reason"] == "answered 410", shown
    assert webhooks.deliver_due(code)["disabled"] == 3 and sum(receiver.posts.values()) == 1  # stopped
    assert all(stored(i).state == "pending" for i in ids)  # waiting, not parked
    assert anon.post(f"/ops/channels/{code}/webhooks/enable", json={}).status_code in (401, 403)
    assert_error(ops.post(f"/ops/channels/{uid('nx-')}/webhooks/enable", json={}), 404, "channel_not_found")

    receiver.answer = None
    assert ok(ops.post(f"/ops/channels/{code}/webhooks/enable", json={}))["disabled_at"] is None
    assert webhooks.deliver_due(code)["delivered"] == 3 and set(receiver.processed) == set(ids)
    audit = ok(ops.get(f"/ops/channels/{code}/audit"))["audit"]
    assert [r["action"] for r in audit if r["action"].startswith("webhook_")
            ].count("webhook_disabled") == 1 and any(r["action"] == "webhook_enabled" for r in audit)


def test_v1a_signatures_verify_with_the_public_key_and_rotate_with_an_overlap(ops, anon, receiver):
    code, secret = webhook_channel(ops, receiver.url)
    assert ok(ops.get(f"/ops/channels/{code}/webhooks"))["public_key"] is None  # v1 only until ops add a key
    assert anon.post(f"/ops/channels/{code}/webhook-signing-key", json={}).status_code in (401, 403)
    first = ok(ops.post(f"/ops/channels/{code}/webhook-signing-key", json={}))
    assert first["public_key"].startswith("whpk_") and first["previous_public_key"] is None
    receiver.secrets, receiver.public_keys = [secret], [first["public_key"]]
    [one] = record(code, 1)
    assert webhooks.deliver_due(code)["delivered"] == 1
    signatures = receiver.headers[one]["webhook-signature"].split(" ")
    assert [s.split(",")[0] for s in signatures] == ["v1", "v1a"] and receiver.v1a_verified_with[one] == {0}
    assert receiver.verified_with[one] == {0}  # the HMAC one still verifies (standardwebhooks package)

    rotated = ok(ops.post(f"/ops/channels/{code}/webhook-signing-key", json={"overlap_seconds": 3600}))
    assert rotated["previous_public_key"] == first["public_key"] and rotated["public_key"] != first["public_key"]
    assert rotated["previous_public_key_until"] >= time.time() + 3500
    assert_error(ops.post(f"/ops/channels/{code}/webhook-signing-key", json={}), 409, "rotation_in_progress")
    receiver.public_keys = [first["public_key"], rotated["public_key"]]
    [two] = record(code, 1)
    assert webhooks.deliver_due(code)["delivered"] == 1
    assert receiver.v1a_verified_with[two] == {0, 1}  # either key verifies during the overlap
    assert receiver.headers[two]["webhook-signature"].count("v1a,") == 2
    audit = json.dumps(ok(ops.get(f"/ops/channels/{code}/audit"))["audit"])
    assert "webhook_signing_key_rotated" in audit and "whsk_" not in audit  # the private key never leaves
    assert ok(ops.get(f"/ops/channels/{code}/webhooks"))["public_key"] == rotated["public_key"]
