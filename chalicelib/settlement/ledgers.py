"""A channel's ledger for a settlement period: taken in (a signed POST, or a CSV through a signed upload link),
matched against our books (``reconciliation``), and the result kept and shown.

**Our side** is the settlement books (``settlement.books``): the channel's ``billed`` entries of the period's
business days, summed per order, are our deducts; its ``returned`` entries are our refunds, one per parcel. That
is a few Queries (per event, month and shard, ``books.read``) and never a scan; it is exactly what the
channel's statement for the period bills. A sandbox channel's parcels are never booked (they are never settled),
so its side is read from its members instead (``Member`` channel-index, each member's orders, their parcels):
test data is small. Then, only for the orders the ledger names: their order and member items (the channel's
member id, to check each row's) and, for rows we have nothing of, their parcels (to say why). So a ledger of R
rows over a period of N orders costs about N/400 Query pages plus 3·R/100 BatchGetItems.

**Bounds.** A POST is at most ``web.BODY_MAX_BYTES`` (JSON lines); an upload at most ``UPLOAD_MAX_BYTES`` (CSV)
and ``reconciliation.MAX_ROWS`` rows; at most ``MAX_RESULTS`` different ledgers per channel and period. A ledger
with any bad row is refused whole, its errors listed by line, and nothing is written but the upload's refusal.

**Idempotent.** The result's id derives from (channel, period, SHA-256 of the ledger's bytes): the same ledger
sent again answers the result already kept, unchanged. The result document goes to S3 first and its item is put
last (``attribute_not_exists``), so a result is either whole or absent.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from botocore.exceptions import ClientError
from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.billing import metering
from chalicelib.channels.models import Channel
from chalicelib.checkout.checkout import AWAITING, PAID
from chalicelib.core import bucket, config
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import BadRequest, Conflict, NotFound, Unprocessable
from chalicelib.core.models import plain
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import batch_read
from chalicelib.members.models import Member
from chalicelib.orders import parcels
from chalicelib.orders.models import Order, Parcel
from chalicelib.settlement import books, periods
from chalicelib.settlement import reconciliation as rec
from chalicelib.settlement.models import LedgerUpload, Reconciliation

LEDGER_PREFIX = "ledgers/"
RESULT_PREFIX = "reconciliations/"
CSV_TYPE = "text/csv"
UPLOAD_MAX_BYTES = 8 * 1024 * 1024  # ~100,000 rows
MAX_RESULTS = 20
PAGE_DEFAULT, PAGE_MAX = 100, 500
LINK_SECONDS = 300
RECORD_DAYS = 90
UPLOAD, POST = "upload", "post"


# --- the period --------------------------------------------------------------------------------------------

def period_of(period_id: str, now: float | None = None) -> periods.Period:
    """A settlement period that has begun (a month ``YYYY-MM`` or an ISO week ``YYYY-Www``)."""
    try:
        period = periods.parse(period_id)
    except ValueError as exc:
        raise Unprocessable("invalid_period", str(exc), "period_id") from None
    if period.starts_at > (time.time() if now is None else now):
        raise Unprocessable("period_not_started", f"settlement period {period_id} has not begun", "period_id")
    return period


# --- our side ----------------------------------------------------------------------------------------------

def _booked(channel: Channel, period: periods.Period) -> list[rec.Movement]:
    party = f"channel.{channel.code}"
    days = period.days()
    deducts: dict[str, int] = defaultdict(int)
    billed_on: dict[str, str] = {}
    for entry in books.read(books.BILLED, party, days):
        m = books.movement(entry)
        deducts[m.order_id] += sum(i.points for i in m.items)
        billed_on[m.order_id] = min(billed_on.get(m.order_id, m.day), m.day)
    ours = [rec.Movement(oid, rec.DEDUCT, points, oid, billed_on[oid]) for oid, points in deducts.items()]
    for entry in books.read(books.RETURNED, party, days):
        m = books.movement(entry)
        ours.append(rec.Movement(m.order_id, rec.REFUND, sum(i.points for i in m.items), m.parcel_id, m.day))
    return ours


def _batch(model, keys: list[tuple]) -> list:
    found = []
    for start in range(0, len(keys), 100):
        found += batch_read({model: keys[start:start + 100]})[model]
    return found


def returned_at(parcel: Parcel) -> str | None:
    """When the parcel's points went back (``Parcel.returned``), if they did."""
    if parcel.returned is None:
        return None
    returned = plain(parcel.returned)
    return returned.get("at")


def _sandbox(channel: Channel, period: periods.Period) -> list[rec.Movement]:
    """A sandbox channel's movements from its members' orders and their parcels (sandbox parcels are not booked)."""
    days = set(period.days())
    paid = [o for m in Member.channel_index.query(channel.code) for o in Order.member_index.query(m.member_id)
            if o.status == PAID]
    ours = []
    for order_id, found in parcels.of_orders(paid).items():
        billed = [p for p in found if books.day_of_stamp(p.created_at) in days]
        if billed:
            day = books.day_of_stamp(billed[0].created_at)
            ours.append(rec.Movement(order_id, rec.DEDUCT, sum(int(p.points) for p in billed), order_id, day))
        for p in found:
            at = returned_at(p)
            if at is not None and books.day_of_stamp(at) in days:
                ours.append(rec.Movement(order_id, rec.REFUND, int(p.points), p.parcel_id, books.day_of_stamp(at)))
    return ours


def _why(order: Order | None, kind: str, found: list[Parcel], channel_code: str) -> str:
    """Why our books of the period have no ``kind`` of this order (it is in the ledger)."""
    if order is None or order.channel_code != channel_code:
        return "no such order in this channel"
    if order.status == AWAITING:
        return "the deduction is not confirmed on our side yet"
    if order.status != PAID:
        return "released on our side: no points were taken for it"
    if kind == rec.DEDUCT:
        if not found:
            return "paid, not billed yet (being split into parcels)"
        return f"billed on {books.day_of_stamp(found[0].created_at)}, in another period"
    returned = sorted(books.day_of_stamp(at) for at in map(returned_at, found) if at is not None)
    if returned:
        return f"points given back on {', '.join(returned)}, in another period"
    return "no part of this order has been given back"


def _enrich(channel: Channel, ours: list[rec.Movement], theirs: list[rec.Row]
            ) -> tuple[list[rec.Movement], dict[tuple[str, str], str]]:
    """Our movements with the channel's member id where the ledger names the order, and why the ledger's
    other (order, kind) are not in our books."""
    named = sorted({r.order_id for r in theirs})
    orders = {o.order_id: o for o in _batch(Order, [(oid,) for oid in named])}
    members = {m.member_id: m.external_id
               for m in _batch(Member, sorted({(o.member_id,) for o in orders.values()}))}
    external = {oid: members.get(o.member_id) for oid, o in orders.items()}
    enriched = [rec.Movement(m.order_id, m.kind, m.points, m.ref, m.at, external.get(m.order_id))
                if m.order_id in orders else m for m in ours]
    wanted = rec.missing_candidates(ours, theirs)
    asked = [orders[oid] for oid in sorted({oid for oid, _ in wanted})
             if oid in orders and orders[oid].channel_code == channel.code and orders[oid].status == PAID]
    found = parcels.of_orders(asked)
    return enriched, {(oid, kind): _why(orders.get(oid), kind, found.get(oid, []), channel.code)
                      for oid, kind in wanted}


# --- taking a ledger in ------------------------------------------------------------------------------------

def _key(channel_code: str, period_id: str) -> str:
    return f"{channel_code}#{period_id}"


def _existing(channel_code: str, period_id: str) -> list[Reconciliation]:
    return list(Reconciliation.query(_key(channel_code, period_id), limit=MAX_RESULTS + 1))


def _metric(channel: Channel, differences: int) -> None:
    """Per channel for the dashboard; and without the channel for the alarm (an alarm names one metric)."""
    metering.metric("ReconciliationDifferences", channel.code, differences)
    count("ReconciliationDifferences", differences)


def take(channel: Channel, period_id: str, data: bytes, source: str, rows: list[rec.Row],
         now: float | None = None) -> tuple[Reconciliation, bool]:
    """Match a parsed ledger and keep the result; the result already kept for these bytes if there is one.
    Answers the result and whether it was made now."""
    now = time.time() if now is None else now
    period = period_of(period_id, now)
    sha256 = rec.ledger_sha256(data)
    result_id = rec.result_id(channel.code, period_id, sha256)
    kept = _existing(channel.code, period_id)
    same = next((r for r in kept if r.result_id == result_id), None)
    if same is not None:
        return same, False
    if len(kept) >= MAX_RESULTS:
        raise Conflict("too_many_ledgers", f"at most {MAX_RESULTS} different ledgers per period")
    ours = _sandbox(channel, period) if channel.sandbox else _booked(channel, period)
    ours, why = _enrich(channel, ours, rows)
    result = rec.reconcile(ours, rows, why)
    header = {"result_id": result_id, "channel": channel.code, "period_id": period_id, "ledger_sha256": sha256,
              "ledger_bytes": len(data), "rows": len(rows), "source": source, "sandbox": bool(channel.sandbox),
              "period_open": not period.settleable(now)}
    document = rec.document(result, header)
    key = f"{RESULT_PREFIX}{channel.code}/{period_id}/{result_id}.json"
    bucket.put(key, document, "application/json")
    item = Reconciliation(_key(channel.code, period_id), result_id, channel_code=channel.code, period_id=period_id,
                          ledger_sha256=sha256, ledger_bytes=len(data), source=source, rows=len(rows),
                          sandbox=bool(channel.sandbox), period_open=header["period_open"], counts=result.counts,
                          totals=result.totals, result_key=key, result_sha256=rec.ledger_sha256(document))
    try:
        item.save(condition=Reconciliation.result_id.does_not_exist())
    except PutError:  # the same ledger, taken in at the same moment: that one is the result
        return Reconciliation.get(item.channel_period, result_id, consistent_read=True), False
    differences = len(result.differences)
    _metric(channel, differences)
    logger.info("ledger reconciled", extra={"channel": channel.code, "period_id": period_id, "result_id": result_id,
                                            "source": source, "rows": len(rows), "counts": result.counts})
    return item, True


def post(channel: Channel, period_id: str, data: bytes) -> tuple[Reconciliation, bool]:
    """A ledger sent as JSON lines in a signed POST (parsed before the caller's signature is checked)."""
    return take(channel, period_id, data, POST, parse_post(data))


def parse_post(data: bytes) -> list[rec.Row]:
    try:
        return rec.parse_json_lines(data)
    except rec.LedgerInvalid as invalid:
        raise LedgerRefused(invalid) from None


class LedgerRefused(Unprocessable):
    def __init__(self, invalid: rec.LedgerInvalid) -> None:
        super().__init__("invalid_ledger", f"the ledger has {len(invalid.errors)} errors; nothing was taken in")
        self.errors = invalid.listed()

    def body(self) -> dict:
        body = super().body()
        body["error"]["errors"] = self.errors
        return body


# --- uploads -----------------------------------------------------------------------------------------------

def request_link(channel: Channel, period_id: str) -> dict:
    """A signed POST link for the period's ledger as CSV (``CSV_TYPE``, at most ``UPLOAD_MAX_BYTES``)."""
    period_of(period_id)
    upload_id = uuid.uuid4().hex
    key = f"{LEDGER_PREFIX}{channel.code}/{upload_id}"
    LedgerUpload(upload_id, channel_code=channel.code, period_id=period_id, key=key,
                 expires_at=timedelta(days=RECORD_DAYS)).save()
    post = bucket.presigned_post(key, CSV_TYPE, UPLOAD_MAX_BYTES, config.UPLOAD_LINK_SECONDS)
    return {"upload_id": upload_id, "url": post["url"], "fields": post["fields"], "key": key,
            "max_bytes": UPLOAD_MAX_BYTES, "content_type": CSV_TYPE, "expires_in": config.UPLOAD_LINK_SECONDS}


def upload_view(upload: LedgerUpload) -> dict:
    return {"upload_id": upload.upload_id, "period_id": upload.period_id, "status": upload.status,
            "result_id": upload.result_id, "refusal": upload.refusal.as_dict() if upload.refusal else None,
            "created_at": upload.created_at, "processed_at": upload.processed_at}


def own_upload(channel: Channel, upload_id: str) -> LedgerUpload:
    try:
        upload = LedgerUpload.get(upload_id)
    except DoesNotExist:
        upload = None
    if upload is None or upload.channel_code != channel.code:
        raise NotFound("upload_not_found", f"no ledger upload {upload_id}")
    return upload


def _refuse(upload: LedgerUpload, code: str, message: str, errors: list[dict] | None = None) -> dict:
    bucket.delete(upload.key)
    refusal = {"code": code, "message": message, "errors": errors or []}
    upload.update([LedgerUpload.status.set("refused"), LedgerUpload.refusal.set(refusal),
                   LedgerUpload.processed_at.set(now_iso())])
    count("LedgersRefused")
    return {"refused": code}


def process_object(bucket_name: str, key: str) -> dict:
    """An S3 "Object Created" event under ``ledgers/``: check the object against its link, then take it in."""
    if bucket_name != config.UPLOAD_BUCKET or not key.startswith(LEDGER_PREFIX):
        return {"ignored": key}
    try:
        upload = LedgerUpload.get(key.rsplit("/", 1)[-1], consistent_read=True)
    except DoesNotExist:
        upload = None
    if upload is None or upload.key != key:
        bucket.delete(key)
        return {"ignored": key, "reason": "no ledger link was issued for this key"}
    if upload.status != "issued":  # a second POST through the same link, or a repeated event
        return {"ignored": key, "reason": f"this ledger upload was already {upload.status}"}
    try:
        size, content_type = bucket.head(key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        return {"ignored": key, "reason": "the object no longer exists"}
    if size > UPLOAD_MAX_BYTES:
        return _refuse(upload, "ledger_too_large", f"the file is {size} bytes; the limit is {UPLOAD_MAX_BYTES}")
    if content_type != CSV_TYPE:
        return _refuse(upload, "unsupported_content_type", f"a ledger is {CSV_TYPE}, not {content_type or 'none'}")
    data = bucket.read(key, UPLOAD_MAX_BYTES)
    try:
        rows = rec.parse_csv(data)
    except rec.LedgerInvalid as invalid:
        return _refuse(upload, "invalid_ledger", f"the ledger has {len(invalid.errors)} errors; nothing was taken in",
                       invalid.listed())
    channel = Channel.get(upload.channel_code)
    try:
        item, created = take(channel, upload.period_id, data, UPLOAD, rows)
    except Conflict as refused:
        return _refuse(upload, refused.code, refused.message)
    upload.update([LedgerUpload.status.set("processed"), LedgerUpload.result_id.set(item.result_id),
                   LedgerUpload.processed_at.set(now_iso())])
    return {"result_id": item.result_id, "created": created, "counts": item.counts.as_dict()}


# --- reading results ---------------------------------------------------------------------------------------

def _summary(item: Reconciliation) -> dict:
    return {"result_id": item.result_id, "period_id": item.period_id, "source": item.source, "rows": int(item.rows),
            "ledger_sha256": item.ledger_sha256, "ledger_bytes": int(item.ledger_bytes), "sandbox": bool(item.sandbox),
            "period_open": bool(item.period_open), "counts": _ints(item.counts.as_dict()),
            "totals": _ints(item.totals.as_dict()), "result_sha256": item.result_sha256, "created_at": item.created_at}


def _ints(value):
    """Numbers as DynamoDB gives them back (floats for whole numbers in a map) as ints again."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _page(cursor: str | None, limit: str | None) -> tuple[int, int]:
    start = int(cursor) if cursor and cursor.isdigit() and len(cursor) <= 7 else (0 if cursor is None else -1)
    if start < 0:
        raise BadRequest("invalid_cursor", "the cursor is not one this API gave out", "cursor")
    size = int(limit) if limit and limit.isdigit() and len(limit) <= 3 else (PAGE_DEFAULT if limit is None else 0)
    if not 1 <= size <= PAGE_MAX:
        raise Unprocessable("validation_error", f"limit must be a whole number from 1 to {PAGE_MAX}", "limit")
    return start, size


def view(channel_code: str, period_id: str, result_id: str | None = None, cursor: str | None = None,
         limit: str | None = None, ops: bool = False) -> dict:
    """The period's latest result (or ``result_id``): summary, a page of differences, a link to the whole document;
    ops also see every result kept for the period."""
    start, size = _page(cursor, limit)
    kept = sorted(_existing(channel_code, period_id), key=lambda r: (r.created_at, r.result_id), reverse=True)
    chosen = next((r for r in kept if r.result_id == result_id), None) if result_id else (kept[0] if kept else None)
    if chosen is None:
        raise NotFound("reconciliation_not_found", f"no reconciliation of {period_id}"
                       + (f" with id {result_id}" if result_id else ""))
    document = json.loads(bucket.read(chosen.result_key, 64 * 1024 * 1024))
    differences = document["differences"]
    view = {**_summary(chosen), "differences": differences[start:start + size],
            "next_cursor": str(start + size) if start + size < len(differences) else None,
            "document_url": bucket.download_url(chosen.result_key, LINK_SECONDS, f"{chosen.result_id}.json"),
            "document_expires_in": LINK_SECONDS}
    if ops:
        view["results"] = [{"result_id": r.result_id, "source": r.source, "rows": int(r.rows),
                            "created_at": r.created_at, "counts": _ints(r.counts.as_dict())} for r in kept]
    return view


def created_view(item: Reconciliation, created: bool) -> dict:
    return {**_summary(item), "created": created}

