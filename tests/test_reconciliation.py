"""Reconciliation against the channel's ledger: every kind of difference reported exactly once, the same ledger
again gives the same result, a bad ledger is refused whole with nothing written, only the channel's own
signature sends or reads its ledger, and a CSV through a signed upload link is matched the same way."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from checkout_helpers import Shop, make_shop, ok
from helpers import assert_error, wait_for
from chalice.local import LambdaContext
from chalicelib.channels.signing import request_headers
from chalicelib.core.clock import business_day
from chalicelib.orders import parcels
from chalicelib.settlement.models import LedgerUpload, Reconciliation
from chalicelib.orders import refunds
from chalicelib.settlement import periods
from chalicelib.settlement import reconciliation as rec


def entry_fields() -> dict:
    from chalicelib.callers import entry

    return entry.FIELDS

PERIOD = periods.containing(business_day(time.time()), periods.MONTHLY).period_id


def signed(shop: Shop, method: str, path: str, body: bytes = b"", secret: str | None = None,
           query: dict | None = None, content_type: str = "application/x-ndjson") -> requests.Response:
    headers = request_headers(method, path, body, secret or shop.secret, query)
    if body:
        headers["Content-Type"] = content_type
    return requests.request(method, shop.base_url + path, data=body or None, headers=headers, params=query,
                            timeout=60)


def lines(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def row(order_id: str, member_id: str, points: int, kind: str = "deduct", at: str = "2026-11-20T10:00:00+08:00") -> dict:
    return {"order_id": order_id, "member_id": member_id, "points": points, "kind": kind, "at": at}


class Books:
    """A hosted shop with seven paid orders split into parcels, one of them cancelled (its points given back)."""

    def __init__(self, system, ops) -> None:
        self.shop = make_shop(system, ops, "hosted")
        self.members = [self.shop.member() for _ in range(3)]
        for m in self.members:
            ok(self.shop.grant(m, 50_000), 201)
        self.orders: list[tuple[str, str, int]] = []  # (order id, member, points)
        for i in range(7):
            member = self.members[i % 3]
            attempt = self.shop.place(requests.Session(), member, body=self.shop.body(qty=1 + i % 2))
            assert attempt.status == 201, attempt.body
            parcels.split(attempt.order_id)
            self.orders.append((attempt.order_id, member, int(attempt.body["points"])))
        oid, member, _ = self.orders[6]
        [parcel] = parcels.of_order(oid)
        refunds.cancel(self.shop.member_ids[member], self.shop.code, parcel.parcel_id)
        self.cancelled = parcel.parcel_id


@pytest.fixture(scope="module")
def books(system, ops) -> Books:
    return Books(system, ops)


def ledger_with_every_difference(books: Books, other_order: str) -> bytes:
    o = books.orders
    return lines(
        row(o[0][0], o[0][1], o[0][2]),                      # 1 matched
        # o[1]: not in the ledger                            #   missing_theirs
        row(o[2][0], o[2][1], o[2][2] + 100),                # 2 amount_differs
        row(o[3][0], o[3][1], o[3][2]),                      # 3 matched
        row(o[3][0], o[3][1], o[3][2]),                      # 4 duplicated (of line 3)
        row("ONOSUCHORDER0000001", books.members[0], 500),   # 5 missing_ours: unknown
        row(other_order, books.members[0], 1200),            # 6 missing_ours: another channel's order, as unknown
        row(o[4][0], books.members[2] + "-x", o[4][2]),      # 7 member_differs
        row(o[5][0], o[5][1], o[5][2]),                      # 8 matched
        row(o[5][0], o[5][1], 300, "refund"),                # 9 missing_ours: nothing of o[5] given back
        row(o[6][0], o[6][1], o[6][2]),                      # 10 matched
        row(o[6][0], o[6][1], o[6][2], "refund"),            # 11 matched (the cancel)
    )


def test_every_kind_of_difference_is_reported_exactly_once(system, ops, books: Books) -> None:
    other = make_shop(system, ops, "hosted")
    stranger = other.member()
    ok(other.grant(stranger, 5000), 201)
    foreign = other.place(requests.Session(), stranger)
    assert foreign.status == 201
    parcels.split(foreign.order_id)

    shop, o = books.shop, books.orders
    path = f"/partner/{shop.code}/ledgers/{PERIOD}"
    result = ok(signed(shop, "POST", path, ledger_with_every_difference(books, foreign.order_id)), 201)
    assert result["created"] is True and result["rows"] == 11 and result["sandbox"] is False
    assert result["counts"] == {"matched": 5, "missing_theirs": 1, "missing_ours": 3, "amount_differs": 1,
                                "duplicated": 1, "member_differs": 1}

    got = ok(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/{PERIOD}"))
    differences = {(d["type"], d["order_id"], d["kind"], d.get("line")): d for d in got["differences"]}
    assert len(got["differences"]) == len(differences) == 7  # each listed once
    assert set(differences) == {
        ("missing_theirs", o[1][0], "deduct", None), ("amount_differs", o[2][0], "deduct", 2),
        ("duplicated", o[3][0], "deduct", 4), ("missing_ours", "ONOSUCHORDER0000001", "deduct", 5),
        ("missing_ours", foreign.order_id, "deduct", 6), ("member_differs", o[4][0], "deduct", 7),
        ("missing_ours", o[5][0], "refund", 9)}
    assert differences[("missing_theirs", o[1][0], "deduct", None)]["ours"] == o[1][2]
    amount = differences[("amount_differs", o[2][0], "deduct", 2)]
    assert (amount["theirs"], amount["ours"]) == (o[2][2] + 100, o[2][2])
    assert "line 3" in differences[("duplicated", o[3][0], "deduct", 4)]["reason"]
    # another channel's order reads exactly like one that does not exist
    assert differences[("missing_ours", foreign.order_id, "deduct", 6)]["reason"] == \
        differences[("missing_ours", "ONOSUCHORDER0000001", "deduct", 5)]["reason"] == "no such order in this channel"
    assert differences[("missing_ours", o[5][0], "refund", 9)]["reason"] == "no part of this order has been given back"

    deducts = got["totals"]["deduct"]
    ours = sum(points for _, _, points in o)
    theirs = sum(r["points"] for r in map(json.loads, ledger_with_every_difference(books, foreign.order_id).splitlines())
                 if r["kind"] == "deduct")
    assert deducts["ours"] == {"count": 7, "points": ours}
    assert deducts["theirs"] == {"count": 9, "points": theirs} and deducts["difference"] == theirs - ours
    assert got["totals"]["refund"]["ours"] == {"count": 1, "points": o[6][2]}
    assert got["totals"]["refund"]["matched"] == {"count": 1, "points": o[6][2]}

    # ops see the same result, with the period's results listed; the whole document behind a short link
    seen = ok(ops.get(f"/ops/channels/{shop.code}/reconciliations/{PERIOD}"))
    assert seen["result_id"] == got["result_id"] and [r["result_id"] for r in seen["results"]] == [got["result_id"]]
    document = requests.get(seen["document_url"], timeout=30)
    assert document.status_code == 200
    assert rec.ledger_sha256(document.content) == seen["result_sha256"]
    assert len(json.loads(document.content)["differences"]) == 7

    # paged: two at a time, every difference once
    paged, cursor = [], None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = ok(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/{PERIOD}", query=query))
        paged += page["differences"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == got["differences"]


def test_the_same_ledger_again_gives_the_same_result(system, ops, books: Books) -> None:
    shop, o = books.shop, books.orders
    data = lines(row(o[0][0], o[0][1], o[0][2]), row(o[1][0], o[1][1], o[1][2]))
    path = f"/partner/{shop.code}/ledgers/{PERIOD}"
    first = ok(signed(shop, "POST", path, data), 201)
    kept = Reconciliation.get(f"{shop.code}#{PERIOD}", first["result_id"], consistent_read=True)
    again = ok(signed(shop, "POST", path, data), 200)
    assert again["created"] is False
    assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in first.items() if k != "created"}
    after = Reconciliation.get(f"{shop.code}#{PERIOD}", first["result_id"], consistent_read=True)
    assert after.serialize() == kept.serialize()  # not rewritten
    assert first["result_id"] == rec.result_id(shop.code, PERIOD, rec.ledger_sha256(data))
    # one byte different is another ledger, and another result
    other = ok(signed(shop, "POST", path, data + lines(row(o[2][0], o[2][1], o[2][2]))), 201)
    assert other["result_id"] != first["result_id"]


@pytest.mark.parametrize("body,line,field", [
    (b'{"order_id":"O1","member_id":"m","points":10,"kind":"deduct"}\n', 1, "at"),
    (b'{"order_id":"O1","member_id":"m","points":"10","kind":"deduct","at":"2026-11-01T00:00:00Z"}\n', 1, "points"),
    (b'{"order_id":"O1","member_id":"m","points":0,"kind":"deduct","at":"2026-11-01T00:00:00Z"}\n', 1, "points"),
    (b'{"order_id":"O1","member_id":"m","points":5,"kind":"gift","at":"2026-11-01T00:00:00Z"}\n', 1, "kind"),
    (b'{"order_id":"O/1","member_id":"m","points":5,"kind":"deduct","at":"2026-11-01T00:00:00Z"}\n', 1, "order_id"),
    (b'{"order_id":"O1","member_id":"m","points":5,"kind":"deduct","at":"2026-11-01 00:00"}\n', 1, "at"),
    (b'{"order_id":"O1","member_id":"m","points":5,"kind":"deduct","at":"2026-11-01T00:00:00Z","x":1}\n', 1, "row"),
    (b'{"order_id":"O1","member_id":"m","points":5,"kind":"deduct","at":"2026-11-01T00:00:00Z"}\n[1,2]\n', 2, "row"),
    (b'\xff\xfe\n', 0, "file"),
])
def test_a_bad_ledger_is_refused_whole_and_nothing_is_written(books: Books, body: bytes, line: int, field: str) -> None:
    shop = books.shop
    before = [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")]
    response = signed(shop, "POST", f"/partner/{shop.code}/ledgers/{PERIOD}", body)
    error = assert_error(response, 422, "invalid_ledger")
    assert [(e["line"], e["field"]) for e in error["errors"]] == [(line, field)]
    assert [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")] == before


def test_bounds_and_periods(books: Books) -> None:
    shop = books.shop
    ok_row = lines(row(books.orders[0][0], books.orders[0][1], books.orders[0][2]))
    too_big = ok_row * (256 * 1024 // len(ok_row) + 1)
    response = signed(shop, "POST", f"/partner/{shop.code}/ledgers/{PERIOD}", too_big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert_error(signed(shop, "POST", f"/partner/{shop.code}/ledgers/2026-13", ok_row), 422, "invalid_period")
    assert_error(signed(shop, "POST", f"/partner/{shop.code}/ledgers/2999-01", ok_row), 422, "period_not_started")
    assert_error(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/2025-01"), 404, "reconciliation_not_found")
    assert_error(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/{PERIOD}", query={"cursor": "x"}),
                 400, "invalid_cursor")


def test_only_the_channels_own_signature_sends_or_reads_its_ledger(system, ops, books: Books) -> None:
    shop = books.shop
    other = make_shop(system, ops, "hosted")
    data = lines(row(books.orders[0][0], books.orders[0][1], books.orders[0][2]))
    path = f"/partner/{shop.code}/ledgers/{PERIOD}"
    before = [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")]
    assert_error(signed(shop, "POST", path, data, secret=other.secret), 401, "bad_signature")
    assert_error(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/{PERIOD}", secret=other.secret),
                 401, "bad_signature")
    assert_error(signed(shop, "POST", f"{path}/upload-link", secret=other.secret), 401, "bad_signature")
    # the other channel, signing as itself, reads its own (empty) period, never this one
    assert_error(signed(other, "GET", f"/partner/{other.code}/reconciliations/{PERIOD}"), 404,
                 "reconciliation_not_found")
    # a signature for the reconciliation read does not authorise a ledger post
    headers = request_headers("GET", f"/partner/{shop.code}/reconciliations/{PERIOD}", data, shop.secret)
    response = requests.post(shop.base_url + path, data=data,
                             headers={**headers, "Content-Type": "application/x-ndjson"}, timeout=30)
    assert_error(response, 401, "bad_signature")
    assert [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")] == before


def _upload(shop: Shop, text: bytes, content_type: str = "text/csv") -> dict:
    link = ok(signed(shop, "POST", f"/partner/{shop.code}/ledgers/{PERIOD}/upload-link"), 201)
    assert link["key"].startswith(f"ledgers/{shop.code}/")
    fields = {**link["fields"], "Content-Type": content_type}  # moto does not hold a POST to its policy; S3 would
    r = requests.post(link["url"], data=fields, files={"file": ("ledger.csv", text, content_type)}, timeout=30)
    assert r.status_code in (200, 201, 204), r.text
    return wait_for(lambda: ok(signed(shop, "GET", f"/partner/{shop.code}/ledger-uploads/{link['upload_id']}")),
                    lambda u: u["status"] != "issued", timeout=60)


def test_a_csv_ledger_through_a_signed_upload_link(books: Books) -> None:
    shop, o = books.shop, books.orders
    text = "kind,order_id,member_id,points,at\n" + "".join(
        f"deduct,{oid},{member},{points},2026-11-20T10:00:00+08:00\n" for oid, member, points in o) + \
        f"refund,{o[6][0]},{o[6][1]},{o[6][2]},2026-11-21T10:00:00+08:00\n"
    upload = _upload(shop, text.encode())
    assert upload["status"] == "processed", upload
    result = ok(signed(shop, "GET", f"/partner/{shop.code}/reconciliations/{PERIOD}",
                       query={"result_id": upload["result_id"]}))
    assert result["source"] == "upload" and result["rows"] == 8
    assert result["counts"]["matched"] == 8 and result["differences"] == []
    again = _upload(shop, text.encode())  # the same file through a new link: the same result
    assert again["result_id"] == upload["result_id"]


def test_a_bad_csv_upload_is_refused_with_its_lines_and_nothing_is_kept(books: Books) -> None:
    shop, o = books.shop, books.orders
    before = [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")]
    text = ("order_id,member_id,points,kind,at\n"
            f"{o[0][0]},{o[0][1]},{o[0][2]},deduct,2026-11-20T10:00:00+08:00\n"
            f"{o[1][0]},{o[1][1]},-5,deduct,2026-11-20T10:00:00+08:00\n"
            f"{o[2][0]},{o[2][1]},{o[2][2]},deduct\n")
    upload = _upload(shop, text.encode())
    assert upload["status"] == "refused" and upload["result_id"] is None
    assert upload["refusal"]["code"] == "invalid_ledger"
    assert [(e["line"], e["field"]) for e in upload["refusal"]["errors"]] == [(3, "points"), (4, "row")]
    assert [r.result_id for r in Reconciliation.query(f"{shop.code}#{PERIOD}")] == before
    assert _upload(shop, b"order_id,points\nO1,5\n")["refusal"]["errors"][0]["field"] == "header"
    assert _upload(shop, text.encode(), "text/plain")["refusal"]["code"] == "unsupported_content_type"


def test_another_channels_upload_is_not_found(system, ops, books: Books) -> None:
    other = make_shop(system, ops, "hosted")
    link = ok(signed(books.shop, "POST", f"/partner/{books.shop.code}/ledgers/{PERIOD}/upload-link"), 201)
    assert LedgerUpload.get(link["upload_id"]).channel_code == books.shop.code
    assert_error(signed(other, "GET", f"/partner/{other.code}/ledger-uploads/{link['upload_id']}"), 404,
                 "upload_not_found")


def test_the_sample_event_for_a_key_no_link_was_issued_for_is_ignored_and_removed(system) -> None:
    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "ledger_uploaded.json").read_text())
    result = system.app.ledger_uploaded(event, LambdaContext("ledger_uploaded", 256))
    assert result == {"ignored": event["detail"]["object"]["key"], "reason": "no ledger link was issued for this key"}


def test_a_sandbox_channel_reconciles_its_test_orders_marked_as_such(system, ops) -> None:
    shop = make_shop(system, ops, "hosted", sandbox=True)
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201
    parcels.split(placed.order_id)
    data = lines(row(placed.order_id, member, int(placed.body["points"])), row("OSANDBOXUNKNOWN0001", member, 7))
    result = ok(signed(shop, "POST", f"/partner/{shop.code}/ledgers/{PERIOD}", data), 201)
    assert result["sandbox"] is True
    assert (result["counts"]["matched"], result["counts"]["missing_ours"]) == (1, 1)


# --- the matching rules alone ---------------------------------------------------------------------------------

def _r(line: int, order_id: str, points: int, kind: str = "deduct", member: str = "m") -> rec.Row:
    return rec.Row(line, order_id, member, points, kind, "2026-11-01T00:00:00Z")


def test_rules_every_row_and_movement_once_in_any_order() -> None:
    ours = [rec.Movement("A", "deduct", 100, "A", "d", "m"), rec.Movement("A", "refund", 30, "A-1", "d", "m"),
            rec.Movement("A", "refund", 20, "A-2", "d", "m"), rec.Movement("B", "deduct", 50, "B", "d", "m")]
    theirs = [_r(2, "A", 100), _r(3, "A", 30, "refund"), _r(4, "A", 30, "refund"), _r(5, "B", 50), _r(6, "B", 50),
              _r(7, "C", 9), _r(8, "C", 9)]
    result = rec.reconcile(ours, theirs)
    assert rec.reconcile(list(reversed(ours)), theirs).differences == result.differences
    assert result.matched == 3
    assert [(d.type, d.order_id, d.kind, d.line) for d in result.differences] == [
        ("missing_ours", "C", "deduct", 7), ("amount_differs", "A", "refund", 4), ("duplicated", "B", "deduct", 6),
        ("duplicated", "C", "deduct", 8)]
    lines_seen = sorted(d.line for d in result.differences) + [2, 3, 5]
    assert sorted(lines_seen) == [2, 3, 4, 5, 6, 7, 8]
    assert result.totals["refund"] == {"ours": {"count": 2, "points": 50}, "theirs": {"count": 2, "points": 60},
                                       "matched": {"count": 1, "points": 30}, "difference": 10}
    doc = rec.document(result, {"result_id": "R"})
    assert doc == rec.document(rec.reconcile(list(reversed(ours)), theirs), {"result_id": "R"})


def test_rules_csv_header_in_any_order_and_row_errors_all_listed() -> None:
    rows = rec.parse_csv(b"at,kind,points,member_id,order_id\n2026-11-01T00:00:00+08:00,refund,7,m 1,O1\n")
    assert rows == [rec.Row(2, "O1", "m 1", 7, "refund", "2026-11-01T00:00:00+08:00")]
    with pytest.raises(rec.LedgerInvalid) as bad:
        rec.parse_csv(b"order_id,member_id,points,kind,at\nO1,m,1,deduct,x\nO2,,1,deduct,2026-11-01T00:00:00Z\n")
    assert [(e["line"], e["field"]) for e in bad.value.errors] == [(2, "at"), (3, "member_id")]
    with pytest.raises(rec.LedgerInvalid):
        rec.parse_csv(b"order_id,member_id,points,kind,at\n" + b"O1,m,1,deduct,2026-11-01T00:00:00Z\n" * 3,
                      max_rows=2)


# Every pattern that bounds a number, with the bounds its own refusal text states: the pattern must admit
# exactly those (a 13-digit ledger line once passed a "1 to 999,999,999,999" check).
STATED_BOUNDS = [
    ("ledger line points", rec.POINTS, 1, rec.MAX_POINTS - 1),
    ("entry link points", entry_fields()["points"][0], 0, 999_999_999_999_999),
]


@pytest.mark.parametrize("name,pattern,low,high", STATED_BOUNDS, ids=[b[0] for b in STATED_BOUNDS])
def test_every_numeric_pattern_admits_exactly_its_stated_bounds(name, pattern, low, high) -> None:
    assert pattern.fullmatch(str(low)) and pattern.fullmatch(str(high)), name
    assert not pattern.fullmatch(str(high + 1)), f"{name} admits {high + 1}"
    assert low == 0 or not pattern.fullmatch(str(low - 1)), f"{name} admits {low - 1}"


@pytest.mark.parametrize("points,status", [(rec.MAX_POINTS - 1, 201), (rec.MAX_POINTS, 422),
                                           (rec.MAX_POINTS + 1, 422)])
def test_a_ledger_line_at_and_past_its_stated_bound(books: Books, points: int, status: int) -> None:
    shop = books.shop
    response = signed(shop, "POST", f"/partner/{shop.code}/ledgers/{PERIOD}",
                      lines(row(books.orders[0][0], books.orders[0][1], points)))
    if status == 201:
        assert ok(response, 201)["counts"]["amount_differs"] == 1, response.json()
    else:
        error = assert_error(response, 422, "invalid_ledger")
        assert [(e["line"], e["field"]) for e in error["errors"]] == [(1, "points")]
        assert "999999999999" in error["errors"][0]["reason"]
