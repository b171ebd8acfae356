"""Delivery of the outbox (``events``) to each channel's webhook, signed per Standard Webhooks.

At least once: an event stays on the sparse pending index until a 2xx answer is booked; a failed
attempt is due again after an exponential delay, and after ``MAX_ATTEMPTS`` it is parked for ops
(sparse parked index, metric ``WebhooksParked``) until they redrive it. ``webhook-id`` is the event id,
the same on every attempt, so the channel dedupes. Whoever delivers first claims the event with a
conditional write (its due time moves past the call's timeout), and every booking after the call
(delivered, retry, parked) is conditional on the event still being pending at the attempt it claimed,
so racing deliverers (the sweep, the call after a commit) never book one attempt twice.

The webhook URL follows the ``api_base_url`` rules (``endpoints``): the call connects to exactly the
address that was checked and never follows a redirect, and it ends within ``TIMEOUT`` in all, however slowly
the receiver drips its answer (``pinned_http``).

Each attempt passes the channel's ``webhook`` circuit breaker first (``reliability``): while a dead or
slow receiver has it open, a round stops at once and leaves the channel's events due and untouched (no
attempt spent, so nothing parks for the outage itself), instead of holding the sweep for every event's
timeout and starving the other channels. It stays open as long as a failed event's first retry waits;
then one attempt probes, and its success lets the round deliver the rest.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.channels import channels
from chalicelib.core import audit, config
from chalicelib.core.errors import DomainError
from chalicelib.core.models import (
    Channel,
    LabelledTransaction,
    OutboxEvent,
    Refused,
    commit_retrying,
    condition_failed,
    lost_race,
    now_iso,
)
from chalicelib.core.observability import count, logger
from chalicelib.partners import breaker, endpoints, reliability

TIMEOUT = 15.0
MAX_ATTEMPTS = 8
RETRY_BASE = 30.0  # seconds before the 2nd attempt; doubles after each failure (30 s … 32 min: ~1 h in all)
RETRY_CAP = 3600.0
LEASE = TIMEOUT + 15.0  # a claimed event is due again after this if its deliverer vanished mid-call
BATCH = 50
SWEEP_BUDGET = 80.0  # every attempt of a round ends by then: the sweep Lambda's timeout is 120 s
ERROR_MAX = 200
BREAKER_API = "webhook"  # the breaker's and the figures' name for this channel's webhook endpoint


def retry_base() -> float:
    """The first retry delay; the local stage may shorten it (``WEBHOOK_RETRY_BASE_SECONDS``) so tests
    see retries and parking in seconds."""
    override = os.environ.get("WEBHOOK_RETRY_BASE_SECONDS") if config.IS_LOCAL else None
    return float(override) if override else RETRY_BASE


def retry_delay(attempts: int, base: float, cap: float = RETRY_CAP) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones (1 → base, 2 → 2·base, …), capped."""
    return min(cap, base * 2 ** max(0, min(attempts - 1, 30)))


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the bytes after ``whsec_``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per secret, space-separated (a rotation's overlap)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
            "Content-Type": "application/json"}


class _Undeliverable(Exception):
    """The attempt failed before or at the call; the message says why (kept on the event)."""


def _http_post(url: str, deadline: float, **kwargs: Any):
    """A POST through the shared pinned session under a total deadline (``pinned_http``, imported on the first
    call: ``requests`` is not needed before)."""
    from chalicelib.partners import pinned_http

    return pinned_http.post(url, deadline, **kwargs)


def _destination(url: str) -> tuple[str, str]:
    """The webhook URL pinned to an address that passes the rules now, and the ``Host`` header."""
    try:
        endpoints.check_base_url(url, field="webhook_url")
        addresses = endpoints.resolve(url)
    except DomainError as error:
        raise _Undeliverable(f"webhook URL refused ({error.code})") from None
    except OSError:
        raise _Undeliverable("webhook host does not resolve") from None
    if endpoints.refused_addresses(addresses):
        raise _Undeliverable("webhook host resolves to a non-public address")
    return endpoints.pinned(url, addresses[0])


def _post(channel: Channel, event: OutboxEvent, permit: reliability.Permit) -> None:
    """One attempt, counted on the permit; returns only when the channel answered 2xx."""
    import requests

    url, host = _destination(channel.webhook_url)
    sent = headers(channels.webhook_secrets(channel), event.event_id, int(time.time()), event.payload)
    if event.sandbox:
        sent["webhook-sandbox"] = "true"
    started = time.perf_counter()

    def measured(kind: str, outcome: str) -> None:
        millis = (time.perf_counter() - started) * 1000
        permit.attempt(kind, millis, outcome)
        logger.info("webhook attempt", extra={"channel": channel.code, "event_id": event.event_id, "outcome": outcome,
                                              "ms": round(millis, 1), "correlation_id": permit.correlation_id})

    try:
        response = _http_post(url, TIMEOUT, data=event.payload.encode(), timeout=TIMEOUT,
                              allow_redirects=False,
                              headers={"Host": host, "X-Correlation-Id": permit.correlation_id, **sent})
    except requests.Timeout:
        measured(breaker.TIMEOUT, "timeout")
        raise _Undeliverable("timed out") from None
    except requests.RequestException as exc:
        measured(breaker.CONNECT_ERROR, "connect_error")
        raise _Undeliverable(f"connection failed ({type(exc).__name__})") from None
    status = response.status_code
    kind = breaker.OK if 200 <= status < 300 else (
        breaker.SERVER_ERROR if status >= 500 else breaker.BAD_RESPONSE if status < 400 else breaker.CLIENT_ERROR)
    measured(kind, f"http_{status}")
    if kind != breaker.OK:
        raise _Undeliverable(f"answered {status}")


def _book(event: OutboxEvent, actions: list, condition) -> bool:
    """A conditional update of the event; False when the condition no longer held (someone else booked)."""
    try:
        event.update(actions=actions, condition=condition)
        return True
    except UpdateError as exc:
        if condition_failed(exc) or lost_race(exc):
            return False
        raise


def _attempt(channel: Channel, event: OutboxEvent) -> str:
    """Pass the breaker (``BreakerOpen`` when it refuses), claim, call, book: the outcome ``delivered``,
    ``retrying``, ``parked``, or ``taken`` (another has it)."""
    permit = reliability.admit(channel.code, BREAKER_API, lease=LEASE, open_for=retry_base())
    try:
        return _claim_and_post(channel, event, permit)
    finally:
        permit.finish()


def _claim_and_post(channel: Channel, event: OutboxEvent, permit: reliability.Permit) -> str:
    attempts = int(event.attempts or 0)
    at_claim = (OutboxEvent.state == "pending") & (OutboxEvent.attempts == attempts)
    # The lease runs from the claim itself (a long round's ``now`` may be well past), covering the whole call.
    lease = round(time.time() + LEASE, 3)
    if not _book(event, [OutboxEvent.due_at.set(lease)], at_claim & (OutboxEvent.due_at == event.due_at)):
        return "taken"
    try:
        _post(channel, event, permit)
    except _Undeliverable as failure:
        error = str(failure)[:ERROR_MAX]
        if attempts + 1 >= MAX_ATTEMPTS:
            if not _book(event, [OutboxEvent.state.set("parked"), OutboxEvent.pending.remove(),
                                 OutboxEvent.due_at.remove(), OutboxEvent.parked.set(channel.code),
                                 OutboxEvent.attempts.set(attempts + 1), OutboxEvent.last_error.set(error)], at_claim):
                return "taken"
            count("WebhooksParked")
            logger.warning("webhook parked", extra={"channel": channel.code, "event_id": event.event_id,
                                                     "error": error})
            return "parked"
        due = round(time.time() + retry_delay(attempts + 1, retry_base()), 3)
        booked = _book(event, [OutboxEvent.due_at.set(due), OutboxEvent.attempts.set(attempts + 1),
                               OutboxEvent.last_error.set(error)], at_claim)
        return "retrying" if booked else "taken"
    booked = _book(event, [OutboxEvent.state.set("delivered"), OutboxEvent.pending.remove(),
                           OutboxEvent.due_at.remove(), OutboxEvent.attempts.set(attempts + 1),
                           OutboxEvent.delivered_at.set(now_iso())], OutboxEvent.state == "pending")
    return "delivered" if booked else "taken"


def deliver_due(channel_code: str, now: float | None = None) -> dict[str, int]:
    """Deliver the channel's events that are due, oldest due first: call it right after a commit that
    recorded events (the minutely ``sweep`` catches whatever this misses). Outcomes are counted."""
    try:
        channel = Channel.get(channel_code)
    except DoesNotExist:
        return dict.fromkeys(OUTCOMES, 0)
    return _deliver(channel, time.time() if now is None else now)


# paused: due events left untouched because the channel's webhook breaker is open
OUTCOMES = ("delivered", "retrying", "parked", "taken", "not_configured", "paused")


def _deliver(channel: Channel, now: float) -> dict[str, int]:
    """One round over the channel's due events; no attempt starts that could outlast the round's budget
    (``reliability.within``)."""
    outcome = dict.fromkeys(OUTCOMES, 0)
    due = list(OutboxEvent.pending_index.query(channel.code, OutboxEvent.due_at <= now, limit=BATCH))
    if not (channel.webhook_url and channel.webhook_secret):  # they wait, due, until ops configure the channel
        outcome["not_configured"] = len(due)
        return outcome
    for i, event in enumerate(due):
        if not reliability.fits(TIMEOUT):
            break
        try:
            outcome[_attempt(channel, event)] += 1
        except reliability.BreakerOpen:
            outcome["paused"] += len(due) - i
            break
    return outcome


def sweep(budget_seconds: float = SWEEP_BUDGET) -> dict[str, dict[str, int]]:
    """The scheduled round: every channel with a webhook URL, its due events, the channels side by side
    (``channels.sweep_each``), each ending within ``budget_seconds`` (every attempt within ``TIMEOUT``) and
    leaving the rest due for the next round: a slow receiver delays only its own channel's events."""
    now = time.time()
    return channels.sweep_each(lambda channel: _deliver(channel, now), lambda: count("WebhookSweepFailed"),
                               [c for c in channels.list_all() if c.webhook_url], budget_seconds)


def view(e: OutboxEvent) -> dict[str, Any]:
    return {"event_id": e.event_id, "kind": e.kind, "state": e.state, "attempts": int(e.attempts or 0),
            "last_error": e.last_error, "sandbox": bool(e.sandbox), "created_at": e.created_at,
            "delivered_at": e.delivered_at}


def parked(channel_code: str) -> list[OutboxEvent]:
    """The channel's parked events, oldest first."""
    channels.get(channel_code)
    return list(OutboxEvent.parked_index.query(channel_code))


def redrive(channel_code: str, actor: str) -> dict[str, int]:
    """Every parked event of the channel back to pending, due now with a fresh set of attempts; the next
    delivery round (the minutely sweep) sends them, so this answers at once however many there are and
    however slow the channel is. Each event moves in one transaction with its audit row, conditional on it
    still being parked: two redrives move (and audit) each event once. A redrive is ops saying the webhook
    works again, so it closes the channel's webhook breaker too: the next round sends without waiting."""
    channels.get(channel_code)
    reliability.close(channel_code, BREAKER_API)
    now = time.time()
    moved = 0
    for event in OutboxEvent.parked_index.query(channel_code):
        def build(event: OutboxEvent = event) -> LabelledTransaction:
            tx = LabelledTransaction()
            tx.update("event", event, [OutboxEvent.state.set("pending"), OutboxEvent.parked.remove(),
                                       OutboxEvent.pending.set(channel_code), OutboxEvent.due_at.set(now),
                                       OutboxEvent.attempts.set(0)], condition=OutboxEvent.state == "parked")
            tx.put("audit", audit.row(f"channel#{channel_code}", actor, "webhook_redriven", "event",
                                      event.last_error, event.event_id))
            return tx
        try:
            commit_retrying(build)
            moved += 1
        except Refused:  # another redrive moved it first
            pass
    logger.info("webhooks redriven", extra={"channel": channel_code, "events": moved})
    return {"redriven": moved}
