"""Partners' tables: the webhook outbox, the breaker and call figures of channel APIs, parked stream
records, sandbox calls.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _index_meta, _meta


class OutboxPendingIndex(GlobalSecondaryIndex):
    """Sparse: only events still to be delivered, by when they are next due."""

    Meta = _index_meta("pending-index")
    pending = UnicodeAttribute(hash_key=True)  # the channel code while undelivered; removed once delivered or parked
    due_at = NumberAttribute(range_key=True)


class OutboxParkedIndex(GlobalSecondaryIndex):
    """Sparse: events whose last retry failed, waiting for ops to redrive them."""

    Meta = _index_meta("parked-index")
    parked = UnicodeAttribute(hash_key=True)  # the channel code while parked
    created_at = UnicodeAttribute(range_key=True)


class OutboxEvent(Model):
    """An event for a channel's webhook, written in the same transaction as the change that causes it.

    ``event_id`` is the Standard Webhooks ``webhook-id``: stable, the same on every retry, so the channel
    can dedupe. ``payload`` is the exact JSON body sent, frozen at the change."""

    Meta = _meta("outbox")
    event_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    kind = UnicodeAttribute()
    payload = UnicodeAttribute()
    state = UnicodeAttribute(default="pending")  # pending | delivered | parked
    attempts = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    pending = UnicodeAttribute(null=True)
    due_at = NumberAttribute(null=True)
    parked = UnicodeAttribute(null=True)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    delivered_at = UnicodeAttribute(null=True)
    # Failures before this (Unix seconds) are retried, later ones park the event; unset: created_at plus the
    # retry window (``webhooks``). A redrive starts a new window.
    retry_until = NumberAttribute(null=True)
    pending_index = OutboxPendingIndex()
    parked_index = OutboxParkedIndex()


class PartnerBreaker(Model):
    """The circuit breaker of one channel's API (``partners.reliability``; rules in ``partners.breaker``)."""

    Meta = _meta("partner-breakers")
    channel_code = UnicodeAttribute(hash_key=True)
    api = UnicodeAttribute(range_key=True)  # "points/deduct", …, "webhook"
    state = UnicodeAttribute(default="closed")
    failures = NumberAttribute(default=0)  # calls that failed since it last closed
    open_until = NumberAttribute(null=True)
    probe = UnicodeAttribute(null=True)  # the correlation id of the probe in flight (half-open)
    probe_until = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    changed_at = NumberAttribute(null=True)


class PartnerStats(Model):
    """One minute of one channel's calls to one API: counts by outcome and a latency histogram, all raised
    with atomic ADDs (``partners.reliability``); expires after a week."""

    Meta = _meta("partner-stats")
    channel_code = UnicodeAttribute(hash_key=True)
    minute_api = UnicodeAttribute(range_key=True)  # "{minute:010d}#{api}": a time range is one Query
    api = UnicodeAttribute()
    calls = NumberAttribute(default=0)  # calls made (a call's resends are one call)
    errors = NumberAttribute(default=0)  # calls that failed (their last attempt did)
    attempts = NumberAttribute(null=True)  # requests sent, resends included; the kinds below count these
    ok = NumberAttribute(null=True)
    client_error = NumberAttribute(null=True)
    timeout = NumberAttribute(null=True)
    connect_error = NumberAttribute(null=True)
    server_error = NumberAttribute(null=True)
    bad_response = NumberAttribute(null=True)
    refused = NumberAttribute(null=True)  # calls the open breaker refused (never sent)
    # latency histogram: h00 counts calls within ``breaker.BOUNDS_MS[0]``, h01 within the next edge, …
    h00 = NumberAttribute(null=True)
    h01 = NumberAttribute(null=True)
    h02 = NumberAttribute(null=True)
    h03 = NumberAttribute(null=True)
    h04 = NumberAttribute(null=True)
    h05 = NumberAttribute(null=True)
    h06 = NumberAttribute(null=True)
    h07 = NumberAttribute(null=True)
    h08 = NumberAttribute(null=True)
    h09 = NumberAttribute(null=True)
    h10 = NumberAttribute(null=True)
    h11 = NumberAttribute(null=True)
    expires_at = TTLAttribute()


class ParkedRecord(Model):
    """A stream record a consumer could not read (``partners.order_figures``), kept for ops instead of being
    retried forever (alarmed: ``StreamRecordParked``); expires after two weeks."""

    Meta = _meta("parked-records")
    record_id = UnicodeAttribute(hash_key=True)  # "{source}#{eventID}", e.g. "orders#..."
    record = UnicodeAttribute()  # the record as delivered, JSON
    error = UnicodeAttribute()
    parked_at = UnicodeAttribute(default=now_iso)
    expires_at = TTLAttribute()


class SandboxCall(Model):
    """A kind of signed call made to a sandbox channel, accepted or refused (``partners.kit.sandbox_log``): counted,
    with when it was last seen; the integration guide's checklist is ticked from them. Kept 30 days after the last."""

    Meta = _meta("sandbox-calls")
    channel_code = UnicodeAttribute(hash_key=True)
    call = UnicodeAttribute(range_key=True)  # "{METHOD} {route}#{accepted or the refusal's code}"
    method = UnicodeAttribute()
    route = UnicodeAttribute()  # the route as declared, e.g. "/partner/{code}/grants"
    outcome = UnicodeAttribute()
    count = NumberAttribute(default=0)
    last_at = NumberAttribute()
    expires_at = TTLAttribute()
