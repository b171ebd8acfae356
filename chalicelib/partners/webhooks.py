"""Delivery of the outbox (``events``) to each channel's webhook, signed per Standard Webhooks.

At least once: an event stays on the sparse pending index until a 2xx answer is booked. A failed attempt is
due again after an exponential delay with jitter (30 s doubling, capped at 4 h), for at least three days from
the event (``RETRY_WINDOW``, as Stripe: a channel's overnight maintenance never parks a night of events); the
first failure after that parks it for ops (sparse parked index, metric ``WebhooksParked``) until they redrive
it, which starts a new window. A 429 or 503 with ``Retry-After`` is honoured: that event is not tried again,
and the channel's webhook breaker stays open (its other events wait, untouched), until the time asked. A 410
Gone means the endpoint is no more: the channel's webhook is disabled at once (metric
``WebhookEndpointDisabled``, alarmed), its events wait, and ops enable it again (``enable``).
``webhook-id`` is the event id, the same on every attempt, so the channel dedupes. Whoever delivers first
claims the event with a conditional write (its due time moves past the call's timeout), and every booking
after the call (delivered, retry, parked) is conditional on the event still being pending at the attempt it
claimed, so racing deliverers (the sweep, the call after a commit) never book one attempt twice.

Signatures (``webhook_signing``): ``v1`` (HMAC with the channel's ``whsec_`` secret) always, and ``v1a``
(Ed25519, verified with a public key) once ops gave the channel a signing key; each rotates with an overlap
during which the old and the new one both sign.

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

import os
import random
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.channels import channels, endpoints, webhook_signing
from chalicelib.channels.models import Channel
from chalicelib.core import audit, budget, config
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import LabelledTransaction, Refused, commit_retrying, condition_failed, lost_race
from chalicelib.partners import breaker, reliability
from chalicelib.partners.models import OutboxEvent

TIMEOUT = 15.0
RETRY_BASE = 30.0  # seconds before the 2nd attempt; doubles after each failure, up to RETRY_CAP
RETRY_CAP = 4 * 3600.0
RETRY_WINDOW = 3 * 86400.0  # failures are retried for at least this long from the event (or its redrive)
RETRY_AFTER_CAP = 6 * 3600.0  # a receiver's Retry-After is honoured up to this
RETRY_AFTER_STATUSES = (429, 503)
GONE = 410
LEASE = TIMEOUT + 15.0  # a claimed event is due again after this if its deliverer vanished mid-call
BATCH = 50
SWEEP_BUDGET = 80.0  # every attempt of a round ends by then: the sweep Lambda's timeout is 120 s
ERROR_MAX = 200
BREAKER_API = "webhook"  # the breaker's and the figures' name for this channel's webhook endpoint


def retry_base() -> float:
    """The first retry delay; the local stage may shorten it (``WEBHOOK_RETRY_BASE_SECONDS``) so tests
    see retries in seconds."""
    override = os.environ.get("WEBHOOK_RETRY_BASE_SECONDS") if config.IS_LOCAL else None
    return float(override) if override else RETRY_BASE


def retry_window() -> float:
    """How long failures are retried; the local stage may shorten it (``WEBHOOK_RETRY_WINDOW_SECONDS``) so
    tests see parking in seconds."""
    override = os.environ.get("WEBHOOK_RETRY_WINDOW_SECONDS") if config.IS_LOCAL else None
    return float(override) if override else RETRY_WINDOW


def retry_delay(attempts: int, base: float, cap: float = RETRY_CAP, rand: Callable[[], float] = random.random
                ) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones: the exponential step (base, 2·base, …,
    capped) with "equal jitter", between half of it and all of it, so a backlog that failed together (an
    outage) does not come back in one burst."""
    step = min(cap, base * 2 ** max(0, min(attempts - 1, 30)))
    return step / 2 + rand() * step / 2


def retry_after(value: str | None, now: float) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), at most
    ``RETRY_AFTER_CAP``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def next_due(attempts: int, failed_at: float, retry_until: float, base: float, asked: float | None = None,
             rand: Callable[[], float] = random.random) -> float | None:
    """When to try an event again after its ``attempts``-th failure at ``failed_at``: the jittered backoff,
    or later if the receiver asked (``asked`` seconds); None once the retry window (``retry_until``) has
    passed: park it."""
    if failed_at >= retry_until:
        return None
    return failed_at + max(retry_delay(attempts, base, rand=rand), asked or 0.0)


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the bytes after ``whsec_``."""
    return webhook_signing.v1(secret, msg_id, timestamp, body)


def headers(secrets: list[str], msg_id: str, timestamp: int, body: str, signing_keys: list[str] = ()
            ) -> dict[str, str]:
    """The Standard Webhooks headers; one ``v1`` signature per secret and one ``v1a`` per signing key,
    space-separated (a rotation's overlap: old and new both)."""
    signed = [signature(s, msg_id, timestamp, body) for s in secrets]
    signed += [webhook_signing.v1a(k, msg_id, timestamp, body) for k in signing_keys]
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signed),
            "Content-Type": "application/json"}


class _Undeliverable(Exception):
    """The attempt failed before or at the call; the message says why (kept on the event). ``asked``: the
    seconds the receiver's ``Retry-After`` asked for; ``gone``: it answered 410."""

    def __init__(self, message: str, asked: float | None = None, gone: bool = False) -> None:
        super().__init__(message)
        self.asked, self.gone = asked, gone


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
    sent = headers(channels.webhook_secrets(channel), event.event_id, int(time.time()), event.payload,
                   channels.webhook_signing_keys(channel))
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
        asked = retry_after(response.headers.get("Retry-After"), time.time()) if status in RETRY_AFTER_STATUSES \
            else None
        raise _Undeliverable(f"answered {status}" + (f" (Retry-After {asked:g} s)" if asked is not None else ""),
                             asked, status == GONE)


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


def _retry_until(event: OutboxEvent) -> float:
    """Failures before this are retried: the redrive's window, or the event's own from its creation."""
    if event.retry_until:
        return float(event.retry_until)
    return datetime.fromisoformat(event.created_at).timestamp() + retry_window()


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
        return _failed(channel, event, attempts, at_claim, failure)
    booked = _book(event, [OutboxEvent.state.set("delivered"), OutboxEvent.pending.remove(),
                           OutboxEvent.due_at.remove(), OutboxEvent.attempts.set(attempts + 1),
                           OutboxEvent.delivered_at.set(now_iso())], OutboxEvent.state == "pending")
    return "delivered" if booked else "taken"


def _failed(channel: Channel, event: OutboxEvent, attempts: int, at_claim, failure: _Undeliverable) -> str:
    """Book a failed attempt: retried (after the backoff, or the receiver's ``Retry-After``), parked (past the
    retry window), or waiting for ops (410: the endpoint is disabled, the event due as soon as it is enabled)."""
    error, now = str(failure)[:ERROR_MAX], time.time()
    if failure.gone:
        if not _book(event, [OutboxEvent.due_at.set(round(now, 3)), OutboxEvent.attempts.set(attempts + 1),
                             OutboxEvent.last_error.set(error)], at_claim):
            return "taken"
        disable(channel, error)
        return "disabled"
    due = next_due(attempts + 1, now, _retry_until(event), retry_base(), failure.asked)
    if due is None:
        if not _book(event, [OutboxEvent.state.set("parked"), OutboxEvent.pending.remove(),
                             OutboxEvent.due_at.remove(), OutboxEvent.parked.set(channel.code),
                             OutboxEvent.attempts.set(attempts + 1), OutboxEvent.last_error.set(error)], at_claim):
            return "taken"
        count("WebhooksParked")
        logger.warning("webhook parked", extra={"channel": channel.code, "event_id": event.event_id, "error": error})
        return "parked"
    if failure.asked is not None:  # the receiver asked us to wait: none of the channel's events goes before then
        reliability.hold_open(channel.code, BREAKER_API, now + failure.asked, error)
    booked = _book(event, [OutboxEvent.due_at.set(round(due, 3)), OutboxEvent.attempts.set(attempts + 1),
                           OutboxEvent.last_error.set(error)], at_claim)
    return "retrying" if booked else "taken"


def disable(channel: Channel, reason: str) -> None:
    """The receiver answered 410 Gone: no delivery is attempted until ops enable the endpoint. One transaction
    with its audit row, conditional on the URL that answered and on not being disabled yet: a burst of 410s
    disables (and counts, and audits) once."""
    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("channel", channel, [Channel.webhook_disabled_at.set(int(time.time())),
                                       Channel.webhook_disabled_reason.set(reason)],
                  condition=Channel.webhook_disabled_at.does_not_exist() & (Channel.webhook_url == channel.webhook_url))
        audit.add(tx, f"channel#{channel.code}", "webhooks", "webhook_disabled", "webhook_url",
                  channel.webhook_url, reason)
        return tx
    try:
        commit_retrying(build)
    except Refused:
        return
    count("WebhookEndpointDisabled")
    logger.warning("webhook endpoint disabled", extra={"channel": channel.code, "reason": reason})


def enable(channel_code: str, actor: str) -> dict[str, Any]:
    """Ops say the endpoint is back: deliveries resume with the next round, the waiting events first."""
    channel = channels.get(channel_code)

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("channel", channel, [Channel.webhook_disabled_at.remove(), Channel.webhook_disabled_reason.remove()],
                  condition=Channel.webhook_disabled_at.exists())
        audit.add(tx, f"channel#{channel_code}", actor, "webhook_enabled", "webhook_url",
                  channel.webhook_disabled_reason, channel.webhook_url)
        return tx
    if channel.webhook_disabled_at:
        try:
            commit_retrying(build)
        except Refused:  # another ops call enabled it first
            pass
        reliability.close(channel_code, BREAKER_API)
    return status(channel_code)


def status(channel_code: str) -> dict[str, Any]:
    """What ops see of a channel's webhook: where, whether disabled and why, and the public keys in force."""
    channel = channels.get(channel_code)
    return {"webhook_url": channel.webhook_url, "disabled_at": int(channel.webhook_disabled_at)
            if channel.webhook_disabled_at else None, "disabled_reason": channel.webhook_disabled_reason,
            **public_keys(channel)}


def public_keys(channel: Channel) -> dict[str, Any]:
    """The ``whpk_`` keys a channel verifies ``v1a`` signatures with: the current one and, during a rotation's
    overlap, the previous one with its end."""
    keys = channels.webhook_signing_keys(channel)
    return {"public_key": webhook_signing.public_key(keys[0]) if keys else None,
            "previous_public_key": webhook_signing.public_key(keys[1]) if len(keys) > 1 else None,
            "previous_public_key_until": int(channel.previous_webhook_signing_key_until) if len(keys) > 1 else None}


def deliver_due(channel_code: str, now: float | None = None) -> dict[str, int]:
    """Deliver the channel's events that are due, oldest due first: call it right after a commit that
    recorded events (the minutely ``sweep`` catches whatever this misses). Outcomes are counted."""
    try:
        channel = Channel.get(channel_code)
    except DoesNotExist:
        return dict.fromkeys(OUTCOMES, 0)
    return _deliver(channel, time.time() if now is None else now)


# paused: due events left untouched because the channel's webhook breaker is open; disabled: because its
# endpoint answered 410 (ops enable it again)
OUTCOMES = ("delivered", "retrying", "parked", "taken", "not_configured", "paused", "disabled")


def _deliver(channel: Channel, now: float) -> dict[str, int]:
    """One round over the channel's due events; no attempt starts that could outlast the round's budget
    (``budget.within``)."""
    outcome = dict.fromkeys(OUTCOMES, 0)
    due = list(OutboxEvent.pending_index.query(channel.code, OutboxEvent.due_at <= now, limit=BATCH))
    if not (channel.webhook_url and channel.webhook_secret):  # they wait, due, until ops configure the channel
        outcome["not_configured"] = len(due)
        return outcome
    if channel.webhook_disabled_at:
        outcome["disabled"] = len(due)
        return outcome
    for i, event in enumerate(due):
        if not budget.fits(TIMEOUT):
            break
        try:
            done = _attempt(channel, event)
        except reliability.BreakerOpen:
            outcome["paused"] += len(due) - i
            break
        outcome[done] += 1
        if done == "disabled":
            outcome["disabled"] += len(due) - i - 1
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
    works again, so it closes the channel's webhook breaker too: the next round sends without waiting; each
    event gets a new retry window. (A disabled endpoint stays disabled: ``enable`` is its own decision.)"""
    channels.get(channel_code)
    reliability.close(channel_code, BREAKER_API)
    now = time.time()
    moved = 0
    for event in OutboxEvent.parked_index.query(channel_code):
        def build(event: OutboxEvent = event) -> LabelledTransaction:
            tx = LabelledTransaction()
            tx.update("event", event, [OutboxEvent.state.set("pending"), OutboxEvent.parked.remove(),
                                       OutboxEvent.pending.set(channel_code), OutboxEvent.due_at.set(now),
                                       OutboxEvent.attempts.set(0),
                                       OutboxEvent.retry_until.set(round(now + retry_window(), 3))],
                      condition=OutboxEvent.state == "parked")
            audit.add(tx, f"channel#{channel_code}", actor, "webhook_redriven", "event",
                      event.last_error, event.event_id)
            return tx
        try:
            commit_retrying(build)
            moved += 1
        except Refused:  # another redrive moved it first
            pass
    logger.info("webhooks redriven", extra={"channel": channel_code, "events": moved})
    return {"redriven": moved}
