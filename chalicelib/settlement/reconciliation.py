"""Reconciliation rules: a channel's ledger of point movements matched against ours (pure: no I/O).

The channel sends, for one settlement period, one row per movement of its members' points for our orders:
``order_id, member_id, points, kind, at`` — ``kind`` is ``deduct`` (points taken for an order) or ``refund``
(points given back for part of one), ``member_id`` its own member id, ``at`` an ISO-8601 time with an offset.
Ours are the settlement books of the same period (``settlement.books``): a ``deduct`` per order billed in it
(the sum of its parcels' points), a ``refund`` per parcel whose points went back in it (cancelled or refunded).

Matching is per (order, kind), rows in ledger order:

1. a row with the same points as one of ours still unmatched is **matched** (its member must be the order's,
   else it is ``member_differs``);
2. the rows left are paired with ours left, in order: **amount_differs**;
3. a row still left is **duplicated** when the ledger already had that movement — the same points for that
   order and kind on an earlier line, or any second deduct of an order we deducted once — else
   **missing_ours** (with why, when our records say: another period, not confirmed, released…);
4. ours still left are **missing_theirs**.

Every difference is listed once, with its reason; every row is either matched or in exactly one difference,
and so is each of our movements. The result is the same whatever order our movements come in, and its JSON
(``document``) is the same bytes every time.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping

DEDUCT, REFUND = "deduct", "refund"
KINDS = (DEDUCT, REFUND)
COLUMNS = ("order_id", "member_id", "points", "kind", "at")
MATCHED, MISSING_THEIRS, MISSING_OURS = "matched", "missing_theirs", "missing_ours"
AMOUNT_DIFFERS, DUPLICATED, MEMBER_DIFFERS = "amount_differs", "duplicated", "member_differs"
DIFFERENCES = (MISSING_THEIRS, MISSING_OURS, AMOUNT_DIFFERS, DUPLICATED, MEMBER_DIFFERS)

MAX_ROWS = 100_000
MAX_POINTS = 10**12
MAX_ERRORS = 50  # errors listed when a ledger is refused (the count says how many there were)
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MEMBER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")  # as the entry link takes a member id
POINTS = re.compile(r"[1-9][0-9]{0,11}")  # 1 to MAX_POINTS - 1 (999,999,999,999): twelve digits at most
AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class Row:
    """One movement as the channel recorded it; ``line`` is where it is in the file (the header is line 1)."""

    line: int
    order_id: str
    member_id: str
    points: int
    kind: str
    at: str


@dataclass(frozen=True)
class Movement:
    """One movement of ours: ``ref`` is the order id (a deduct) or the parcel id (a refund); ``member_id`` is the
    member as the channel knows it (None when no ledger row could need it)."""

    order_id: str
    kind: str
    points: int
    ref: str
    at: str
    member_id: str | None = None


class LedgerInvalid(Exception):
    """The ledger is refused as a whole: nothing of it is matched or stored."""

    def __init__(self, errors: list[dict], rows: int) -> None:
        super().__init__(f"{len(errors)} errors in {rows} rows")
        self.errors = errors
        self.rows = rows

    def listed(self) -> list[dict]:
        return self.errors[:MAX_ERRORS]


# --- reading a ledger -----------------------------------------------------------------------------------

def _row(line: int, values: Mapping[str, object], errors: list[dict], numbers: bool = False) -> Row | None:
    """The row, or None with its errors added (each field checked, so a file's errors are all listed).
    ``numbers``: ``points`` is a JSON number (JSON lines), not text (CSV)."""
    found: dict[str, object] = {}
    for name in COLUMNS:
        value = values.get(name)
        if name == "points" and numbers:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                errors.append({"line": line, "field": name, "reason": "must be a whole number"})
                continue
            value = None if value is None else str(value)  # then the same rule as CSV's text
        if not isinstance(value, str):
            errors.append({"line": line, "field": name, "reason": "missing" if value is None else "must be text"})
            continue
        rule, why = {"order_id": (ORDER_ID, "1 to 64 characters of A-Z a-z 0-9 _ -"),
                     "member_id": (MEMBER_ID, "1 to 64 characters, no control characters"),
                     "points": (POINTS, f"a whole number from 1 to {MAX_POINTS - 1}"),
                     "kind": (re.compile("deduct|refund"), "deduct or refund"),
                     "at": (AT, "an ISO-8601 time with an offset, e.g. 2026-01-31T23:59:59+08:00")}[name]
        if not rule.fullmatch(value):
            errors.append({"line": line, "field": name, "reason": why})
            continue
        if name == "at":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                errors.append({"line": line, "field": name, "reason": "not a real time"})
                continue
        found[name] = value
    if len(found) != len(COLUMNS):
        return None
    return Row(line, str(found["order_id"]), str(found["member_id"]), int(str(found["points"])),
               str(found["kind"]), str(found["at"]))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LedgerInvalid([{"line": 0, "field": "file", "reason": "not UTF-8"}], 0) from None


def parse_csv(data: bytes, max_rows: int = MAX_ROWS) -> list[Row]:
    """A CSV ledger: a header naming exactly ``COLUMNS`` (any order), then one row per movement."""
    reader = csv.reader(io.StringIO(_text(data), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or sorted(h.strip() for h in header) != sorted(COLUMNS):
            raise LedgerInvalid([{"line": 1, "field": "header", "reason": f"the columns are {','.join(COLUMNS)}"}], 0)
        names = [h.strip() for h in header]
        rows: list[Row] = []
        errors: list[dict] = []
        count = 0
        for values in reader:
            count += 1
            line = reader.line_num
            if count > max_rows:
                raise LedgerInvalid([{"line": line, "field": "file", "reason": f"at most {max_rows} rows"}], count)
            if len(values) != len(names):
                errors.append({"line": line, "field": "row", "reason": f"{len(values)} fields, not {len(names)}"})
                continue
            row = _row(line, dict(zip(names, values)), errors)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        raise LedgerInvalid([{"line": reader.line_num, "field": "file", "reason": f"not CSV: {exc}"}], 0) from None
    if errors:
        raise LedgerInvalid(errors, count)
    return rows


def parse_json_lines(data: bytes, max_rows: int = MAX_ROWS) -> list[Row]:
    """JSON lines: one object per line with exactly the keys ``COLUMNS`` (``points`` a number); the first object is
    line 1. A final newline is allowed, blank lines are not."""
    text = _text(data)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > max_rows:
        raise LedgerInvalid([{"line": max_rows + 1, "field": "file", "reason": f"at most {max_rows} rows"}],
                            len(lines))
    rows: list[Row] = []
    errors: list[dict] = []
    for number, raw in enumerate(lines, start=1):
        try:
            values = json.loads(raw)
        except (ValueError, RecursionError):
            errors.append({"line": number, "field": "row", "reason": "not a JSON object"})
            continue
        if not isinstance(values, dict):
            errors.append({"line": number, "field": "row", "reason": "not a JSON object"})
            continue
        unknown = sorted(set(values) - set(COLUMNS))
        if unknown:
            errors.append({"line": number, "field": "row", "reason": f"unknown keys: {', '.join(unknown)[:200]}"})
            continue
        row = _row(number, values, errors, numbers=True)
        if row is not None:
            rows.append(row)
    if errors:
        raise LedgerInvalid(errors, len(lines))
    return rows


def ledger_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def result_id(channel_code: str, period_id: str, sha256: str) -> str:
    """The same ledger for the same channel and period always names the same result."""
    return "R" + hashlib.sha256(f"{channel_code}\n{period_id}\n{sha256}".encode()).hexdigest()[:31].upper()


# --- matching ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    type: str
    order_id: str
    kind: str
    reason: str
    line: int | None = None  # the ledger row's
    theirs: int | None = None
    ours: int | None = None
    ref: str | None = None  # our movement's (order or parcel id)
    member_id: str | None = None  # the ledger row's

    def sort_key(self) -> tuple:
        return (DIFFERENCES.index(self.type), self.order_id, KINDS.index(self.kind), self.line or 0, self.ref or "")

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Result:
    matched: int = 0
    differences: list[Difference] = field(default_factory=list)
    totals: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((MATCHED, *DIFFERENCES), 0)
        counts[MATCHED] = self.matched
        for d in self.differences:
            counts[d.type] += 1
        return counts


def missing_candidates(ours: Iterable[Movement], theirs: Iterable[Row]) -> set[tuple[str, str]]:
    """(order id, kind) the ledger names and we have nothing of: ``reconcile`` may need to say why."""
    have = {(m.order_id, m.kind) for m in ours}
    return {(r.order_id, r.kind) for r in theirs if (r.order_id, r.kind) not in have}


def _totals(ours: list[Movement], theirs: list[Row], matched: list[Row]) -> dict:
    totals = {}
    for kind in KINDS:
        mine = [m.points for m in ours if m.kind == kind]
        rows = [r.points for r in theirs if r.kind == kind]
        agreed = [r.points for r in matched if r.kind == kind]
        totals[kind] = {"ours": {"count": len(mine), "points": sum(mine)},
                        "theirs": {"count": len(rows), "points": sum(rows)},
                        "matched": {"count": len(agreed), "points": sum(agreed)},
                        "difference": sum(rows) - sum(mine)}
    return totals


def reconcile(ours: Iterable[Movement], theirs: Iterable[Row],
              why_missing: Mapping[tuple[str, str], str] | None = None) -> Result:
    """Match the ledger's rows against our movements (rules in the module's docstring). ``why_missing`` says, per
    (order id, kind), why we have none of it (``missing_candidates`` lists which ones may be asked)."""
    ours = sorted(ours, key=lambda m: (m.order_id, m.kind, m.ref))
    theirs = sorted(theirs, key=lambda r: r.line)
    why_missing = why_missing or {}
    mine: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    rows: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for m in ours:
        mine[(m.order_id, m.kind)].append(m)
    for r in theirs:
        rows[(r.order_id, r.kind)].append(r)
    result = Result()
    agreed: list[Row] = []
    for key in sorted(set(mine) | set(rows), key=lambda k: (k[0], KINDS.index(k[1]))):
        order_id, kind = key
        left = list(mine.get(key, []))
        had_ours = bool(left)
        unmatched: list[Row] = []
        for row in rows.get(key, []):
            same = next((m for m in left if m.points == row.points), None)
            if same is None:
                unmatched.append(row)
                continue
            left.remove(same)
            if same.member_id is not None and same.member_id != row.member_id:
                result.differences.append(Difference(
                    MEMBER_DIFFERS, order_id, kind, "the order is another member's", row.line, row.points,
                    same.points, same.ref, row.member_id))
            else:
                result.matched += 1
                agreed.append(row)
        seen: dict[int, int] = {}  # points → the first line that had them, for "duplicated"
        for row in rows.get(key, []):
            seen.setdefault(row.points, row.line)
        for row in unmatched:
            if left:
                m = left.pop(0)
                reason = f"{row.points} points in the ledger, {m.points} in ours"
                if m.member_id is not None and m.member_id != row.member_id:
                    reason += "; and the order is another member's"
                result.differences.append(Difference(AMOUNT_DIFFERS, order_id, kind, reason, row.line, row.points,
                                                     m.points, m.ref, row.member_id))
            elif seen[row.points] != row.line:
                result.differences.append(Difference(
                    DUPLICATED, order_id, kind, f"the same {kind} as line {seen[row.points]}", row.line, row.points,
                    member_id=row.member_id))
            elif kind == DEDUCT and had_ours:
                result.differences.append(Difference(
                    DUPLICATED, order_id, kind, "a second deduct of an order deducted once", row.line, row.points,
                    member_id=row.member_id))
            else:
                reason = why_missing.get(key) if not had_ours else None
                result.differences.append(Difference(
                    MISSING_OURS, order_id, kind, reason or f"no such {kind} in our books for this period",
                    row.line, row.points, member_id=row.member_id))
        for m in left:
            result.differences.append(Difference(
                MISSING_THEIRS, order_id, kind, f"our {kind} is not in the ledger", ours=m.points, ref=m.ref))
    result.differences.sort(key=Difference.sort_key)
    result.totals = _totals(ours, theirs, agreed)
    return result


def document(result: Result, header: Mapping[str, object]) -> bytes:
    """The result as one JSON document, the same bytes for the same inputs: ``header`` (ids, period, source…),
    counts, totals and every difference in order."""
    body = {**header, "counts": result.counts, "totals": result.totals,
            "differences": [d.as_dict() for d in result.differences]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
