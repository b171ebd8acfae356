"""A period's settlement run: the Lambda task bodies of the ``settlement`` state machine, and starting it.

Freeze → one Map iteration per page of parties (a Distributed Map reading the pages from S3) → the platform's
margin → close (``infra/state_machines.settlement``). Every task is idempotent and deterministic, so a Step
Functions retry, a re-run of the period or two runs at once give byte-identical exports and pay nobody twice:

- the period is frozen once: its parties (live channels with days of its kind in it, by each day's rule
  (``settlement_rules.rule_on``); suppliers in monthly periods) are fixed in a pages file in S3 whose key the ``SettlementPeriod`` item records; a re-run reads it;
- a statement's id derives from (period, party); it claims the party's days of the period (``SettledDay``, one
  conditional transaction over them: a day another statement settled stays there), reads those days' books,
  writes its export and then its record, once (``does_not_exist``). The export's key names its content (its
  SHA-256, ``export_key``), as does a channel's margin file's: a run that computed other bytes (its inputs
  changed) writes them beside, never over, what a record names, so the bytes at a record's key always have
  its recorded SHA-256. A step that dies in between is re-run from scratch and writes the very same bytes; a
  closed statement is returned as it is, never recomputed;
- ordering everywhere is by value, never by arrival.

Scheduled: ``start_due`` (every five minutes) starts each period that ended within the last week once it is
settleable, as the execution ``settle-{period}``: a second start of that name is answered with the same
execution while it runs and refused after, so the schedule starts a period once. Ops start one (or re-run it)
with ``start``.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from functools import cache
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.billing import fees
from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.core import audit, config
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound, Unprocessable
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import Contended, LabelledTransaction, Refused, condition_failed
from chalicelib.settlement import books, exports, periods, statements
from chalicelib.settlement.models import SettledDay, SettlementPeriod, Statement
from chalicelib.settlement.periods import Period
from chalicelib.supply.models import Supplier

FREEZING, SETTLED = "freezing", "settled"
CHANNELS_PER_PAGE, SUPPLIERS_PER_PAGE = 5, 25  # a Map item: the statements one Lambda writes
# Suppliers that never got past onboarding have nothing to settle.
UNSETTLED_SUPPLIERS = ("applied", "rejected")
PLATFORM = "platform"


@cache
def _sfn() -> Any:
    import boto3

    return boto3.client("stepfunctions", region_name=config.REGION)


def period_of(period_id: str) -> Period:
    try:
        return periods.parse(period_id)
    except ValueError as error:
        raise Unprocessable("invalid_settlement_period", str(error), "period_id") from None


def statement_id(period_id: str, party: str) -> str:
    return f"{period_id}.{party}"


def export_key(period_id: str, party: str, sha256: str) -> str:
    """Where a statement's export with this SHA-256 lives: one key per content, never overwritten with other
    bytes."""
    return f"{exports.PREFIX}{period_id}/{party.replace('.', '/')}/{sha256}.csv"


def margin_key(period_id: str, channel_code: str, sha256: str) -> str:
    """Where a channel statement's margin file with this SHA-256 lives (the statement records it)."""
    return f"{exports.PREFIX}{period_id}/margin/{channel_code}/{sha256}.json"


# --- freeze -------------------------------------------------------------------------------------------

def channel_days(channel: Channel, period: Period) -> list[str]:
    """The period's days a channel settles in it: those its rule of that day puts in a period of this kind
    (all of them for a channel that never changed its rule to another)."""
    return periods.days_of_kind(channels.rules_of(channel), channel.settlement_period or periods.MONTHLY, period)


def parties(period: Period) -> list[str]:
    """Who this period settles: live channels with days of its kind in it (by the rule each day had, not the
    rule at the run: a channel that moved to the other rule mid-period is settled here for the days before),
    then (monthly) every onboarded supplier."""
    found = [f"channel.{c.code}" for c in channels.list_all() if not c.sandbox and channel_days(c, period)]
    if period.kind == periods.MONTHLY:
        found += sorted(f"supplier.{s.supplier_id}" for s in Supplier.scan() if s.status not in UNSETTLED_SUPPLIERS)
    return found


def pages_of(period_id: str, names: list[str]) -> list[dict]:
    """The Map's items: pages of ``CHANNELS_PER_PAGE`` channels, then of ``SUPPLIERS_PER_PAGE`` suppliers."""
    def paged(found: list[str], size: int) -> list[list[str]]:
        return [found[i:i + size] for i in range(0, len(found), size)]

    pages = paged([p for p in names if p.startswith("channel.")], CHANNELS_PER_PAGE) + paged(
        [p for p in names if p.startswith("supplier.")], SUPPLIERS_PER_PAGE)
    return [{"period_id": period_id, "parties": page} for page in pages]


def freeze(period_id: str, now: float | None = None) -> dict:
    """Fix the period's parties (first run) or read them back (any later run); the Map reads the pages file."""
    period = period_of(period_id)
    if not period.settleable(time.time() if now is None else now):
        raise Conflict("settlement_period_not_ended", f"settlement period {period_id} can be settled from "
                                                      f"{periods.SETTLE_AFTER_SECONDS // 60} minutes after its end")
    try:
        item = SettlementPeriod.get(period_id, consistent_read=True)
    except DoesNotExist:
        item = _first_freeze(period)
    item.update([SettlementPeriod.runs.add(1)])
    return {"period_id": period_id, "bucket": config.UPLOAD_BUCKET, "pages_key": item.pages_key,
            "parties": int(item.parties), "state": item.state}


def _first_freeze(period: Period) -> SettlementPeriod:
    names = parties(period)
    pages = pages_of(period.period_id, names)
    body = exports.json_bytes(pages)
    # The key names its content: two first runs racing write two files, and the item says whose was kept.
    key = f"{exports.PREFIX}{period.period_id}/parties-{hashlib.sha256(body).hexdigest()[:16]}.json"
    exports.put(key, body, "application/json")
    item = SettlementPeriod(period.period_id, kind=period.kind, state=FREEZING, parties=len(names), pages_key=key)
    try:
        item.save(condition=SettlementPeriod.period_id.does_not_exist())
    except PutError as error:
        if not condition_failed(error):
            raise
        return SettlementPeriod.get(period.period_id, consistent_read=True)
    logger.info("settlement period frozen", extra={"period_id": period.period_id, "parties": len(names)})
    return item


def _frozen(period_id: str) -> SettlementPeriod:
    try:
        return SettlementPeriod.get(period_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("settlement_not_found", f"period {period_id} has not been settled (or started)") from None


def party_names(item: SettlementPeriod) -> list[str]:
    return [party for page in exports.get_json(item.pages_key) for party in page["parties"]]


# --- statements ---------------------------------------------------------------------------------------

def party_days(party: str, period: Period) -> list[str]:
    """The days of the period the party's statement is for: a channel's by its rule of each day; a supplier's
    (always monthly) all of them."""
    if party.startswith("channel."):
        try:
            return channel_days(Channel.get(party.split(".", 1)[1]), period)
        except DoesNotExist:
            return []
    return period.days()


def claim_days(party: str, period: Period, sid: str, days: list[str] | None = None) -> list[str]:
    """The days this statement settles (``days``, by default all the period's): each day is claimed once (a
    conditional put); one claimed by another statement of the party stays with it. Usually every day is free
    or already this statement's (a re-run): one transaction, no read."""
    days = period.days() if days is None else days
    if not days:
        return []
    keys = [f"{party}#{day}" for day in days]
    free_or_mine = SettledDay.party_day.does_not_exist() | (SettledDay.statement_id == sid)
    tx = LabelledTransaction()
    for key in keys:
        tx.put(key, SettledDay(key, statement_id=sid), condition=free_or_mine)
    try:
        tx.commit()
        return list(days)
    except (Refused, Contended):
        pass  # another statement holds some of them: day by day
    owner = {}
    for key in keys:
        try:
            SettledDay(key, statement_id=sid).save(condition=free_or_mine)
            owner[key] = sid
        except PutError as error:
            if not condition_failed(error):
                raise
            owner[key] = SettledDay.get(key, consistent_read=True).statement_id
    return [key.rsplit("#", 1)[1] for key in keys if owner[key] == sid]


def compute(period: Period, party: str, days: list[str]
            ) -> tuple[statements.Statement, statements.ChannelMargin | None]:
    """The party's statement over ``days`` from the books, and for a channel its part of the platform margin."""
    first = days[0] if days else period.first_day.isoformat()
    if party.startswith("channel."):
        code = party.split(".", 1)[1]
        billed = [books.movement(e) for e in books.read(books.BILLED, party, days)]
        returned = [books.movement(e) for e in books.read(books.RETURNED, party, days)]
        statement = statements.channel_statement(first, billed, returned, fees.fee_for(code, days))
        return statement, statements.channel_margin(code, statement, billed, returned)
    payable = [books.movement(e) for e in books.read(books.PAYABLE, party, days)]
    refunded = [books.movement(e) for e in books.read(books.REFUNDED, party, days)]
    return statements.supplier_statement(payable, refunded), None


def settle_party(period: Period, party: str) -> Statement:
    """The party's statement for the period: the one already written, or computed, exported and recorded."""
    sid = statement_id(period.period_id, party)
    existing = _statement(sid)
    if existing is not None:
        return existing
    days = claim_days(party, period, sid, party_days(party, period))
    return _record(period, party, days, *compute(period, party, days))


def _statement(sid: str) -> Statement | None:
    try:
        return Statement.get(sid, consistent_read=True)
    except DoesNotExist:
        return None


def _record(period: Period, party: str, days: list[str], computed: statements.Statement,
            margin: statements.ChannelMargin | None = None) -> Statement:
    """Export (and a channel's margin file) then record, once. Both keys name their content, so the record's
    keys hold exactly the bytes it was computed with, whatever another run wrote. A record already there with
    other bytes would mean a statement changed after it closed: refused loudly (``StatementMismatch``), and
    neither it nor its export is touched."""
    data = computed.render()
    digest = hashlib.sha256(data).hexdigest()
    key = export_key(period.period_id, party, digest)
    exports.put(key, data, "text/csv; charset=utf-8")
    margin_at = None
    if margin is not None:
        body = exports.json_bytes(margin.as_dict())
        margin_at = margin_key(period.period_id, margin.channel, hashlib.sha256(body).hexdigest())
        exports.put(margin_at, body, "application/json")
    item = Statement(statement_id(period.period_id, party), period_id=period.period_id, party=party, days=days,
                     totals=computed.totals, export_key=key, sha256=digest, byte_length=len(data),
                     margin_key=margin_at)
    try:
        item.save(condition=Statement.statement_id.does_not_exist())
    except PutError as error:
        if not condition_failed(error):
            raise
        item = Statement.get(item.statement_id, consistent_read=True)
        if item.sha256 != digest:
            count("StatementMismatch")
            raise RuntimeError(f"statement {item.statement_id} was closed with other content") from None
    return item


def settle_page(event: dict) -> dict:
    """A Map iteration: the statements of one page of parties."""
    period = period_of(event["period_id"])
    done = [settle_party(period, party).statement_id for party in event["parties"]]
    return {"statements": done}


def settle_platform(event: dict) -> dict:
    """After every channel's statement: the platform's margin statement from their margin files."""
    period = period_of(event["period_id"])
    sid = statement_id(period.period_id, PLATFORM)
    existing = _statement(sid)
    if existing is None:
        channel_parties = [p for p in party_names(_frozen(period.period_id)) if p.startswith("channel.")]
        recorded = _batch([statement_id(period.period_id, p) for p in channel_parties])
        if len(recorded) != len(channel_parties):
            raise RuntimeError(f"{len(channel_parties) - len(recorded)} channel statements missing")
        margins = [statements.ChannelMargin.from_dict(exports.get_json(
            s.margin_key or f"{exports.PREFIX}{period.period_id}/margin/{s.party.split('.', 1)[1]}.json"))
            for s in sorted(recorded, key=lambda s: s.party)]  # (no margin_key: recorded before keys named content)
        _record(period, PLATFORM, period.days(), statements.platform_statement(margins))
    return {"statement_id": sid}


def close(event: dict) -> dict:
    """Every statement is written: the period is settled, with its totals (read from the statements)."""
    period_id = event["period_id"]
    item = _frozen(period_id)
    names = party_names(item) + [PLATFORM]
    found = {s.party: s for s in _batch([statement_id(period_id, p) for p in names])}
    missing = [p for p in names if p not in found]
    if missing:
        raise RuntimeError(f"statements missing for {len(missing)} parties, e.g. {missing[0]}")
    due = lambda prefix: sum(int(s.totals["amount_due"]) for p, s in found.items() if p.startswith(prefix))  # noqa: E731
    totals = {"channels_due": due("channel."), "suppliers_due": due("supplier."),
              "margin": int(found[PLATFORM].totals["margin"]), "statements": len(found)}
    if item.state != SETTLED:
        try:
            item.update([SettlementPeriod.state.set(SETTLED), SettlementPeriod.settled_at.set(now_iso()),
                         SettlementPeriod.totals.set(totals)], condition=SettlementPeriod.state == FREEZING)
        except UpdateError as error:
            if not condition_failed(error):
                raise
            return {"period_id": period_id, "state": SETTLED, "totals": totals}  # a concurrent run closed it
        count("PeriodsSettled")
        logger.info("settlement period settled", extra={"period_id": period_id, "totals": totals})
    return {"period_id": period_id, "state": SETTLED, "totals": totals}


def _batch(ids: list[str]) -> list[Statement]:
    found: list[Statement] = []
    for start in range(0, len(ids), 100):
        found += list(Statement.batch_get(ids[start:start + 100], consistent_read=True))
    return found


# --- starting runs ------------------------------------------------------------------------------------

def _start(period_id: str, name: str) -> str | None:
    """Start an execution; None if one of that name has ended (Step Functions keeps names 90 days; a start while
    it runs answers the same execution)."""
    try:
        answer = _sfn().start_execution(stateMachineArn=config.SETTLEMENT_STATE_MACHINE_ARN, name=name,
                                        input=json.dumps({"period_id": period_id}))
    except Exception as error:  # noqa: BLE001 - only "already exists" is an answer; anything else is raised
        if getattr(error, "response", {}).get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            return None
        raise
    return answer["executionArn"]


def start(period_id: str, actor: str, now: float | None = None) -> dict:
    """Ops start (or re-run) a period's settlement: a re-run writes no statement twice and changes none."""
    period = period_of(period_id)
    if not period.settleable(time.time() if now is None else now):
        raise Conflict("settlement_period_not_ended", f"settlement period {period_id} has not ended (or ended "
                                                      f"less than {periods.SETTLE_AFTER_SECONDS // 60} minutes ago)")
    arn = _start(period_id, f"settle-{period_id}-{int(time.time())}-{secrets.token_hex(3)}")
    audit.row(f"settlement#{period_id}", actor, "settlement_started", "execution", None, arn).save()
    return {"period_id": period_id, "execution_arn": arn}


def start_due(now: float | None = None) -> list[str]:
    """The schedule: every period of the last week that may be settled and is not, started once."""
    now = time.time() if now is None else now
    started = []
    for period in periods.recently_settleable(now):
        try:
            if SettlementPeriod.get(period.period_id).state == SETTLED:
                continue
        except DoesNotExist:
            pass
        if _start(period.period_id, f"settle-{period.period_id}") is not None:
            started.append(period.period_id)
    if started:
        logger.info("settlement started", extra={"periods": started})
    return started


def settleable(now: float | None = None, days: int = 62) -> list[dict]:
    """Ops: the settlement periods (months and ISO weeks) that ended within the last ``days`` days and may be
    settled now, newest first, each with its run's state (``not_started``, ``freezing`` or ``settled``)."""
    found = periods.recently_settleable(time.time() if now is None else now, days)
    known = {p.period_id: p for p in SettlementPeriod.batch_get([p.period_id for p in found])} if found else {}
    return [{"period_id": p.period_id, "kind": p.kind, "first_day": p.first_day.isoformat(),
             "last_day": p.last_day.isoformat(),
             "state": known[p.period_id].state if p.period_id in known else "not_started"}
            for p in reversed(found)]


def view(period_id: str) -> dict:
    """Ops: the period's run and its statements (no links: ``exports.fetch`` one)."""
    item = _frozen(period_of(period_id).period_id)
    totals = item.totals.as_dict() if item.totals is not None else None
    names = party_names(item) + [PLATFORM]
    found = sorted(_batch([statement_id(period_id, p) for p in names]), key=lambda s: s.statement_id)
    return {"period_id": period_id, "kind": item.kind, "state": item.state, "parties": int(item.parties),
            "runs": int(item.runs), "frozen_at": item.frozen_at, "settled_at": item.settled_at, "totals": totals,
            "statements": [exports.view(s) for s in found]}
