"""Settlement's tables: the books, settled days, periods, statements, ledger uploads, reconciliations,
invariant-check runs.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _index_meta, _meta


class BookEntry(Model):
    """A parcel's event that settlement counts, written in the same transaction as the event (``settlement.books``):
    billed to its channel (the split), payable to its supplier (shipped), returned to its channel (cancelled or
    refunded), refunded after shipment (its supplier's). Read back by the statement of its days with one Query
    per month and shard, never by a scan; the lines are frozen as the parcel has them (prices, settlement
    prices, points)."""

    Meta = _meta("settlement-books")
    book = UnicodeAttribute(hash_key=True)  # "{event}#{party}#{YYYY-MM}#{shard}"
    entry = UnicodeAttribute(range_key=True)  # "{business day}#{parcel_id}": a range of days is one Query
    parcel_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, price, settlement_price, points
    points_per_yuan = NumberAttribute()
    billed_day = UnicodeAttribute(null=True)  # a return's: the business day its parcel was billed
    after_shipment = BooleanAttribute(default=False)  # a return's: a refund of a shipped parcel, not a cancel
    borne_by = UnicodeAttribute(null=True)  # a refund after shipment's: "supplier" or "platform"


class SettledDay(Model):
    """Which statement settles one party's business day: claimed once, by a conditional put, so a day is never
    in two statements (a channel that moves between weekly and monthly periods) nor lost."""

    Meta = _meta("settled-days")
    party_day = UnicodeAttribute(hash_key=True)  # "{party}#{day}"
    statement_id = UnicodeAttribute()


class SettlementPeriod(Model):
    """One run of settlement over a period (``settlement.runs``): ``freezing`` from the first start (the parties
    and their pages are fixed then, in S3) until every statement is written, then ``settled``. A period with no
    item is still open (or not yet started)."""

    Meta = _meta("settlement-periods")
    period_id = UnicodeAttribute(hash_key=True)  # "2026-01", "2026-W05" (``settlement.periods``)
    kind = UnicodeAttribute()
    state = UnicodeAttribute()
    parties = NumberAttribute(default=0)
    pages_key = UnicodeAttribute()
    runs = NumberAttribute(default=0)  # how many times a run froze it (a re-run changes no statement)
    frozen_at = UnicodeAttribute(default=now_iso)
    settled_at = UnicodeAttribute(null=True)
    totals = MapAttribute(null=True)


class StatementPartyIndex(GlobalSecondaryIndex):
    Meta = _index_meta("party-index")
    party = UnicodeAttribute(hash_key=True)
    period_id = UnicodeAttribute(range_key=True)


class Statement(Model):
    """A party's statement for a period, written once and never changed: its id derives from (period, party),
    its lines are the CSV export in S3 (``export_key``, with the SHA-256 and length of those exact bytes), its
    totals are here. Party: ``channel.{code}``, ``supplier.{id}`` or ``platform`` (the margin)."""

    Meta = _meta("statements")
    statement_id = UnicodeAttribute(hash_key=True)  # "{period_id}.{party}"
    period_id = UnicodeAttribute()
    party = UnicodeAttribute()
    days = ListAttribute(of=UnicodeAttribute, default=list)  # the business days it settles
    totals = MapAttribute(default=dict)
    export_key = UnicodeAttribute()
    sha256 = UnicodeAttribute()
    byte_length = NumberAttribute()
    # A channel statement's part of the platform margin (``runs.margin_key``, named by its content like the
    # export): what the platform's statement reads. None for suppliers and the platform.
    margin_key = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    party_index = StatementPartyIndex()


class LedgerUpload(Model):
    """A signed upload link handed to a channel for its ledger of one settlement period, and what the file became
    (``settlement.ledgers``): ``issued``, then ``processed`` (with the reconciliation's id) or ``refused``."""

    Meta = _meta("ledger-uploads")
    upload_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    period_id = UnicodeAttribute()
    key = UnicodeAttribute()
    status = UnicodeAttribute(default="issued")
    result_id = UnicodeAttribute(null=True)
    refusal = MapAttribute(null=True)  # {code, message, errors: [{line, field, reason}]}
    created_at = UnicodeAttribute(default=now_iso)
    processed_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class Reconciliation(Model):
    """A channel's ledger for a period matched against our books, written once: ``result_id`` derives from
    (channel, period, SHA-256 of the ledger's bytes), so the same ledger imported again names this same result.
    Totals and counts are here; every difference is in the JSON document ``result_key`` (S3), whose SHA-256 is
    ``result_sha256``."""

    Meta = _meta("reconciliations")
    channel_period = UnicodeAttribute(hash_key=True)  # "{channel}#{period_id}"
    result_id = UnicodeAttribute(range_key=True)
    channel_code = UnicodeAttribute()
    period_id = UnicodeAttribute()
    ledger_sha256 = UnicodeAttribute()
    ledger_bytes = NumberAttribute()
    source = UnicodeAttribute()  # "upload" | "post"
    rows = NumberAttribute()
    sandbox = BooleanAttribute(default=False)
    period_open = BooleanAttribute(default=False)  # the period had not ended when it was matched
    counts = MapAttribute()
    totals = MapAttribute()
    result_key = UnicodeAttribute()
    result_sha256 = UnicodeAttribute()
    created_at = UnicodeAttribute(default=now_iso)


class AuditRun(Model):
    """One run of the invariant audit (``settlement.invariants``): what it checked and every drift it found (the first
    ``invariants.MAX_LISTED`` listed; all are in the run's log lines). Kept 30 days."""

    Meta = _meta("audit-runs")
    scope = UnicodeAttribute(hash_key=True)  # "invariants"
    started_at = UnicodeAttribute(range_key=True)
    finished_at = UnicodeAttribute()
    checked = MapAttribute()
    drifts = NumberAttribute()
    unsettled = NumberAttribute(default=0)
    findings = UnicodeAttribute()  # JSON list
    expires_at = TTLAttribute()
