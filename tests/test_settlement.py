"""Settlement on the local stack, for real: orders placed over HTTP in two channels with goods of three
suppliers, shipped, cancelled and refunded through the API; the ``settlement`` state machine run on moto's
Step Functions (a Distributed Map over the pages file in S3, the app's own Lambdas); statements fetched the way
each party fetches them (signed channel call, supplier key, ops) and their exports downloaded by the presigned
links. Totals are checked against a calculation made here from the parcels themselves.

Time: everything in the test happens today, so the book entries a step wrote are moved to a day of a past
period (``redate``) — what the passing of time would have done — before that period is settled. Each run of
this module uses its own random past months, so it never meets another run's frozen periods.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import boto3
import pytest
import requests

from checkout_helpers import SETTLEMENT, make_shop, ok, uid
from chalicelib.channels import settlement_rules
from chalicelib.channels.models import Channel
from chalicelib.core.clock import business_day, next_day
from chalicelib.orders import parcels as parcels_mod
from chalicelib.orders.models import Parcel
from chalicelib.settlement import books, exports, periods, runs
from chalicelib.settlement.models import BookEntry, SettledDay, SettlementPeriod, Statement
from chalicelib.supply.models import Goods
from helpers import assert_error, approve, publish, supplier_api, supplier_client, wait_for
from tools import ops as ops_cli
from tools.sign import signed_request

YEAR = random.Random().randrange(2001, 2020)
MONTH = random.Random().randrange(1, 12)
P1, P2 = f"{YEAR}-{MONTH:02d}", f"{YEAR}-{MONTH + 1:02d}"
X, Y = f"{P1}-15", f"{P2}-03"  # the days this module's two batches of events are moved to
LOSS_PRICE, C_SETTLEMENT, C_BASE = 1500, 2000, 2500
B_PRICE, B_RATE = 1234, 30  # channel B: 1234 fen at 30 points per yuan is 371 points, worth 1236.67 fen


def half_up(points: int, rate: int) -> int:
    """Independent of the code under test: exact fraction, then decimal's ROUND_HALF_UP."""
    exact = Fraction(points * 100, rate)
    return int((Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def signed_get(shop, path: str) -> requests.Response:
    url, headers = signed_request(shop.base_url, shop.secret, "GET", path)
    return requests.get(url, headers=headers, timeout=30)


def redate(parties: list[str], to_day: str, billed_to: str) -> int:
    """Move every book entry of ``parties`` written today (or since the module started) to ``to_day``, and
    a return's ``billed_day`` of today to ``billed_to``: as if they had happened then."""
    today = {business_day(STARTED), business_day(time.time())}
    moved = 0
    for party in parties:
        events = books.CHANNEL_EVENTS if party.startswith("channel.") else books.SUPPLIER_EVENTS
        for event in events:
            for day in today:
                for shard in range(books.SHARDS):
                    for entry in list(BookEntry.query(books.book(event, party, day, shard),
                                                      BookEntry.entry.between(day, day + "#~"))):
                        BookEntry(books.book(event, party, to_day, shard), f"{to_day}#{entry.parcel_id}",
                                  parcel_id=entry.parcel_id, order_id=entry.order_id, lines=entry.lines,
                                  points_per_yuan=entry.points_per_yuan,
                                  billed_day=billed_to if entry.billed_day in today else entry.billed_day,
                                  after_shipment=entry.after_shipment, borne_by=entry.borne_by).save()
                        entry.delete()
                        moved += 1
    return moved


STARTED = time.time()


class World:
    """Channel A (100 points per yuan) and channel B (30), suppliers SA, SB (theirs) and SC (goods in both, sold
    at a loss in B, refunds after shipment borne by the platform), members with points, and a sandbox channel."""

    def __init__(self, system, ops) -> None:
        self.ops = ops
        self.a = make_shop(system, ops, "hosted")
        self.b = make_shop(system, ops, "hosted")
        ok(ops.patch(f"/ops/channels/{self.b.code}", json={"points_per_yuan": B_RATE}))
        ok(ops.put(f"/ops/channels/{self.b.code}/pool/{self.b.goods_id}",
                   json={"prices": {self.b.sku_id: {"price": B_PRICE}}}))
        self.sc_api, self.sc = supplier_api(system, ops)
        self.gc = approve(ops, publish(self.sc_api, skus=[{"sku_id": "S1", "spec": "1 kg",
                                                            "settlement_price": C_SETTLEMENT, "stock": 100}]),
                          {"S1": C_BASE})["goods_id"]
        ok(ops.put(f"/ops/channels/{self.a.code}/pool/{self.gc}", json={"prices": {}}))
        ok(ops.put(f"/ops/channels/{self.b.code}/pool/{self.gc}",
                   json={"prices": {"S1": {"price": LOSS_PRICE, "allow_loss": True}}}))
        ok(ops.put(f"/ops/suppliers/{self.sc}/refunds-borne-by", json={"borne_by": "platform"}))
        self.sa = Goods.get(self.a.goods_id).supplier_id
        self.sb = Goods.get(self.b.goods_id).supplier_id
        self.sup = {self.sa: supplier_client(system, self.a.supplier_key),
                    self.sb: supplier_client(system, self.b.supplier_key), self.sc: self.sc_api}
        self.ma, self.mb = self.a.member(), self.b.member()
        ok(self.a.grant(self.ma, 100_000), 201)
        ok(self.b.grant(self.mb, 100_000), 201)
        self.sandbox = make_shop(system, ops, "hosted", sandbox=True)
        self.ms = self.sandbox.member()
        ok(self.sandbox.grant(self.ms, 100_000), 201)

    @property
    def parties(self) -> list[str]:
        return [f"channel.{self.a.code}", f"channel.{self.b.code}", f"supplier.{self.sa}", f"supplier.{self.sb}",
                f"supplier.{self.sc}"]

    def order(self, shop, member: str, goods_id: str, qty: int) -> Parcel:
        body = {"lines": [{"goods_id": goods_id, "sku_id": "S1", "qty": qty}], "password": "246810"}
        attempt = shop.place(requests.Session(), member, body=body)
        assert attempt.status == 201, attempt
        found = wait_for(lambda: parcels_mod.of_order(attempt.order_id), lambda ps: len(ps) == 1, timeout=60)
        return found[0]

    def ship(self, parcel: Parcel) -> None:
        ok(self.sup[parcel.supplier_id].post(f"/supplier/parcels/{parcel.parcel_id}/ship",
                                              json={"carrier": "SF Express", "tracking_no": uid("SF")}))

    def refund(self, parcel: Parcel) -> None:
        assert ok(self.ops.post(f"/ops/parcels/{parcel.parcel_id}/refund", json={"reason": "damaged"}))[
            "state"] == "refunded"

    def settle(self, period_id: str) -> dict:
        return self.finished(ok(self.ops.post(f"/ops/settlement/{period_id}"), 202))

    def finished(self, started: dict, timeout: float = 180) -> dict:
        """Wait for the run's execution to succeed; the period as ops see it."""
        sfn = boto3.client("stepfunctions")
        done = wait_for(lambda: sfn.describe_execution(executionArn=started["execution_arn"]),
                        lambda d: d["status"] != "RUNNING", timeout=timeout, interval=0.5)
        assert done["status"] == "SUCCEEDED", done
        return ok(self.ops.get(f"/ops/settlement/{started['period_id']}"))


@pytest.fixture(scope="module")
def world(system, ops, request):
    request.getfixturevalue("monkeypatch_module").setenv("FULFILMENT_SECONDS_OVERRIDE", "3600,3600")
    world = World(system, ops)
    yield world
    sfn = boto3.client("stepfunctions")  # the orders' fulfilment executions wait an hour: stop them
    for execution in sfn.list_executions(stateMachineArn=runs.config.FULFILMENT_STATE_MACHINE_ARN,
                                         statusFilter="RUNNING")["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def rate_of(world: World, parcel: Parcel) -> int:
    return B_RATE if parcel.channel_code == world.b.code else 100


def money(world: World, parcel: Parcel) -> int:
    return sum(half_up(int(line["points"]), rate_of(world, parcel)) for line in parcel.lines)


def cost(parcel: Parcel) -> int:
    return sum(int(line["settlement_price"]) * int(line["qty"]) for line in parcel.lines)


def download(link: dict) -> bytes:
    data = requests.get(link["download_url"], timeout=30).content
    assert hashlib.sha256(data).hexdigest() == link["sha256"] and len(data) == link["bytes"]
    return data


@pytest.fixture(scope="module")
def first_period(world: World) -> dict:
    """Period 1: six orders; four shipped; one cancelled before shipment; one refunded after (SB bears it)."""
    w = world
    o1 = w.order(w.a, w.ma, w.a.goods_id, 2)
    o2 = w.order(w.a, w.ma, w.gc, 1)
    o3 = w.order(w.a, w.ma, w.a.goods_id, 1)
    o4 = w.order(w.b, w.mb, w.b.goods_id, 3)
    o5 = w.order(w.b, w.mb, w.gc, 1)  # below settlement price, accepted by ops
    o6 = w.order(w.b, w.mb, w.b.goods_id, 1)
    sandbox = w.order(w.sandbox, w.ms, w.sandbox.goods_id, 1)
    for parcel in (o1, o2, o4, o5):
        w.ship(parcel)
    ok(requests.post(f"{w.a.base_url}/api/{w.a.code}/parcels/{o3.parcel_id}/cancel", headers=w.a.auth(w.ma),
                     timeout=30))
    w.refund(o4)
    assert not list(BookEntry.query(books.book(books.BILLED, f"channel.{w.sandbox.code}", business_day(time.time()),
                                               books.shard_of(sandbox.parcel_id))))  # never booked
    assert redate(w.parties, X, X) == 6 + 4 + 2 + 1  # billed, payable, returned (o3, o4), refunded (o4)
    view = w.settle(P1)
    return {"parcels": {"o1": o1, "o2": o2, "o3": o3, "o4": o4, "o5": o5, "o6": o6}, "view": view}


def statements_of(view: dict) -> dict[str, dict]:
    return {s["party"]: s for s in view["statements"]}


def test_first_period_statements_match_an_independent_calculation(world: World, first_period: dict) -> None:
    w, p, view = world, first_period["parcels"], first_period["view"]
    assert view["state"] == "settled" and view["kind"] == "monthly"
    found = statements_of(view)
    assert set(w.parties) <= set(found) and "platform" in found
    assert f"channel.{w.sandbox.code}" not in found  # sandbox channels are never settled
    a, b = found[f"channel.{w.a.code}"]["totals"], found[f"channel.{w.b.code}"]["totals"]
    # channel A: o1, o2, o3 billed; o3 cancelled before shipment comes off
    assert a["order_money"] == money(w, p["o1"]) + money(w, p["o2"]) + money(w, p["o3"])
    assert a["refund_money"] == -money(w, p["o3"]) and a["adjustment_money"] == 0
    assert a["amount_due"] == a["money"] == money(w, p["o1"]) + money(w, p["o2"]) and a["fee_money"] == 0
    # channel B: at 30 points per yuan each line's points are worth a rounded amount, once per line
    assert money(w, p["o4"]) == half_up(3 * 371, B_RATE) == 3710 and money(w, p["o6"]) == half_up(371, B_RATE) == 1237
    assert b["amount_due"] == money(w, p["o5"]) + money(w, p["o6"])
    assert b["points"] == 371 + int(p["o5"].points)
    # suppliers: what was shipped, at settlement prices; SB bears o4's refund
    sa, sb, sc = (found[f"supplier.{s}"]["totals"] for s in (w.sa, w.sb, w.sc))
    assert sa["amount_due"] == cost(p["o1"]) == 2 * SETTLEMENT
    assert (sb["payable_amount"], sb["clawback_amount"], sb["amount_due"]) == (3 * SETTLEMENT, -3 * SETTLEMENT, 0)
    assert sc["amount_due"] == cost(p["o2"]) + cost(p["o5"]) == 2 * C_SETTLEMENT
    # platform margin per channel: revenue - cost of the goods billed and not returned unpaid
    margin = found["platform"]["totals"]
    revenue = a["amount_due"] + b["amount_due"]
    costs = cost(p["o1"]) + cost(p["o2"]) + cost(p["o5"]) + cost(p["o6"])  # o3 cancelled, o4 clawed back
    assert (margin["revenue"], margin["cost"], margin["margin"]) == (revenue, costs, revenue - costs)
    platform = download(ok(w.ops.get(f"/ops/statements/{found['platform']['statement_id']}")))
    losses = [row.split(",") for row in platform.decode().splitlines() if row.startswith("loss,")]
    assert [(r[1], r[4], int(r[13])) for r in losses if r[1] in (w.a.code, w.b.code)] == [
        (w.b.code, p["o5"].parcel_id, C_SETTLEMENT - LOSS_PRICE)]
    assert view["totals"]["channels_due"] >= revenue  # other channels of the test run may owe too


def test_each_party_fetches_only_its_own_statements(world: World, first_period: dict) -> None:
    w, found = world, statements_of(first_period["view"])
    mine, theirs = found[f"channel.{w.a.code}"], found[f"channel.{w.b.code}"]
    listed = ok(signed_get(w.a, f"/partner/{w.a.code}/statements"))["statements"]
    assert [s["statement_id"] for s in listed] == [mine["statement_id"]]
    fetched = ok(signed_get(w.a, f"/partner/{w.a.code}/statements/{mine['statement_id']}"))
    assert fetched["sha256"] == mine["sha256"] and fetched["expires_in"] == exports.LINK_SECONDS
    rows = download(fetched).decode().splitlines()
    assert rows[0] == ",".join(("kind", "day", "order_id", "parcel_id", "goods_id", "sku_id", "qty", "unit_price",
                                "amount", "points", "money", "billed_on"))
    assert "settlement_price" not in rows[0] and rows[-1].startswith("total,")
    assert int(rows[-1].split(",")[10]) == mine["totals"]["amount_due"]
    for other in (theirs["statement_id"], found[f"supplier.{w.sa}"]["statement_id"], f"{P1}.platform", "nope"):
        assert_error(signed_get(w.a, f"/partner/{w.a.code}/statements/{other}"), 404, "statement_not_found")
    unsigned = requests.get(f"{w.a.base_url}/partner/{w.a.code}/statements", timeout=30)
    assert unsigned.status_code in (400, 401)
    own = found[f"supplier.{w.sb}"]
    sup = w.sup[w.sb]
    assert [s["statement_id"] for s in ok(sup.get("/supplier/statements"))["statements"]] == [own["statement_id"]]
    text = download(ok(sup.get(f"/supplier/statements/{own['statement_id']}"))).decode()
    assert w.b.code not in text and "unit_price" not in text  # nothing of the channel's side
    assert_error(sup.get(f"/supplier/statements/{found[f'supplier.{w.sa}']['statement_id']}"), 404,
                 "statement_not_found")
    assert_error(requests.get(f"{w.a.base_url}/ops/statements/{own['statement_id']}", timeout=30), 401,
                 "ops_auth_required")


def test_a_re_run_changes_nothing_and_writes_the_same_bytes(world: World, first_period: dict, system,
                                                           capsys: pytest.CaptureFixture) -> None:
    w, before = world, statements_of(first_period["view"])
    assert ops_cli.main(["--base-url", system.base_url, "--token", system.ops_token, "settle", P1]) == 0
    again = statements_of(w.finished(json.loads(capsys.readouterr().out)))
    assert again == before  # same ids, totals, SHA-256, lengths, creation times: nothing rewritten
    assert SettlementPeriod.get(P1).runs == 2
    for party in w.parties + ["platform"]:
        stored = Statement.get(before[party]["statement_id"])
        assert hashlib.sha256(exports.get(stored.export_key)).hexdigest() == stored.sha256
        computed = runs.compute(periods.parse(P1), party, list(stored.days))[0] if party != "platform" else None
        if computed is not None:  # recomputed from the books now: byte for byte what was exported
            assert hashlib.sha256(computed.render()).hexdigest() == stored.sha256
    assert_error(w.ops.post(f"/ops/settlement/{periods.containing(business_day(time.time()), 'monthly').period_id}"),
                 409, "settlement_period_not_ended")
    assert_error(w.ops.post("/ops/settlement/2026-13"), 422, "invalid_settlement_period")


def test_next_period_adjusts_closed_one_and_survives_a_failing_step(world: World, first_period: dict,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Period 2: refunds of period-1 parcels (adjustments; SA bears its refund, the platform SC's) and a late
    shipment; one statement step raises once after writing its export, and Step Functions retries it."""
    w, p = world, first_period["parcels"]
    closed = {s["party"]: s for s in first_period["view"]["statements"]}
    w.refund(p["o1"])
    w.refund(p["o2"])
    w.ship(p["o6"])
    assert redate(w.parties, Y, X) == 2 + 1 + 2  # returned o1, o2; refunded o1, o2; payable o6
    real_put, failed = exports.put, []

    def put_failing_once(key: str, data: bytes, content_type: str) -> str:
        digest = real_put(key, data, content_type)
        if f"/supplier/{w.sa}/" in key and not failed:
            failed.append(key)
            raise RuntimeError("injected: the step dies after writing the export, before the record")
        return digest

    monkeypatch.setattr(exports, "put", put_failing_once)
    view = w.settle(P2)
    assert failed, "the injected failure never fired"
    found = statements_of(view)
    a, sa, sb, sc = (found[party]["totals"] for party in (f"channel.{w.a.code}", f"supplier.{w.sa}",
                                                          f"supplier.{w.sb}", f"supplier.{w.sc}"))
    assert a["adjustment_money"] == -(money(w, p["o1"]) + money(w, p["o2"])) == a["amount_due"]
    assert a["order_money"] == a["refund_money"] == 0
    assert (sa["clawback_amount"], sa["amount_due"]) == (-cost(p["o1"]), -cost(p["o1"]))  # SA bears it
    assert (sc["lines"], sc["amount_due"]) == (0, 0)  # the platform bears SC's refund
    assert sb["amount_due"] == cost(p["o6"])
    margin = found["platform"]["totals"]
    assert margin["cost"] == -cost(p["o1"])  # SA's refund is clawed back; SC's stays a platform cost
    for party in w.parties:  # the retried step wrote exactly what a clean computation gives
        stored = Statement.get(found[party]["statement_id"])
        assert runs.compute(periods.parse(P2), party, list(stored.days))[0].render() == exports.get(stored.export_key)
    assert [closed[party] == statements_of(ok(w.ops.get(f"/ops/settlement/{P1}")))[party] for party in closed] \
        == [True] * len(closed)  # the closed period did not move
    adjustment = download(ok(signed_get(w.a, f"/partner/{w.a.code}/statements/{found[f'channel.{w.a.code}']['statement_id']}")))
    assert [row.split(",")[11] for row in adjustment.decode().splitlines() if row.startswith("adjustment,")] == [X, X]


def test_racing_starts_settle_a_period_once(world: World, first_period: dict) -> None:
    """The schedule and ops start the same period at once, several times: every run succeeds, each party has one
    statement (its days claimed once), the same bytes whichever run wrote it."""
    w = world
    p3 = periods.containing(f"{YEAR + 1}-06-10", periods.MONTHLY)
    extra = w.order(w.a, w.ma, w.a.goods_id, 1)
    w.ship(extra)
    assert redate(w.parties, f"{YEAR + 1}-06-10", f"{YEAR + 1}-06-10") == 2
    later = p3.ends_at + periods.SETTLE_AFTER_SECONDS + 60  # the schedule's clock: just after it became settleable
    with ThreadPoolExecutor(5) as pool:
        scheduled = [pool.submit(runs.start_due, later) for _ in range(3)]
        by_ops = [pool.submit(w.ops.post, f"/ops/settlement/{p3.period_id}") for _ in range(2)]
    started = [period for f in scheduled for period in f.result()]
    assert p3.period_id in started  # one execution, named after the period: a same-name start answers it again
    sfn = boto3.client("stepfunctions")
    arns = [ok(f.result(), 202)["execution_arn"] for f in by_ops] + [
        sfn.describe_execution(executionArn=runs.config.SETTLEMENT_STATE_MACHINE_ARN.replace(
            ":stateMachine:", ":execution:") + f":settle-{p3.period_id}")["executionArn"]]
    for arn in arns:
        w.finished({"execution_arn": arn, "period_id": p3.period_id})
    view = ok(w.ops.get(f"/ops/settlement/{p3.period_id}"))
    assert view["state"] == "settled" and view["runs"] == 3
    a = statements_of(view)[f"channel.{w.a.code}"]
    assert a["totals"]["order_money"] == money(w, extra) and a["first_day"] == f"{YEAR + 1}-06-01"
    assert {SettledDay.get(f"channel.{w.a.code}#{day}").statement_id for day in p3.days()} == {a["statement_id"]}
    assert runs.start_due(later) == []  # settled: the schedule leaves it


def test_a_day_is_settled_by_one_statement_even_when_a_channel_changes_its_rule(world: World) -> None:
    """A monthly statement and a weekly one racing for the days they share (a channel moved between rules):
    each day goes to exactly one of them; a re-claim by the same statement keeps its days."""
    party = f"channel.{uid('rule-')}"
    month = periods.parse(f"{YEAR + 2}-03")
    week = periods.containing(month.days()[-1], periods.WEEKLY)  # the week that ends the month (or spills over)
    with ThreadPoolExecutor(2) as pool:
        got_month, got_week = pool.map(lambda p: runs.claim_days(party, p, f"{p.period_id}.{party}"), (month, week))
    shared = set(month.days()) & set(week.days())
    assert shared and set(got_month) | set(got_week) >= shared and not set(got_month) & set(got_week)
    assert set(got_month) == set(month.days()) - (shared & set(got_week))
    assert runs.claim_days(party, month, f"{month.period_id}.{party}") == got_month


def test_a_rule_change_mid_month_leaves_no_booked_day_unsettled(world: World, system, ops) -> None:
    """A monthly channel moves to weekly from the third Monday of a month (issue 16, item 4). The month's run
    settles its days before the change, the weeks' runs the days from it: every parcel booked in the month is
    in exactly one of the channel's statements (as the channel lists and downloads them, signed) and in
    exactly one of its supplier's; no day is in two statements."""
    shop = make_shop(system, ops, "hosted")
    supplier = Goods.get(shop.goods_id).supplier_id
    sup = supplier_client(system, shop.supplier_key)
    member = shop.member()
    ok(shop.grant(member, 100_000), 201)
    month = periods.parse(f"{YEAR + 3}-{MONTH:02d}")
    first_monday = next(day for day in month.days() if date.fromisoformat(day).isoweekday() == 1)
    switch = (date.fromisoformat(first_monday) + timedelta(days=14)).isoformat()

    def shift(day: str, n: int) -> str:
        return (date.fromisoformat(day) + timedelta(days=n)).isoformat()
    booked = {}
    for day in (month.days()[1], shift(switch, -1), switch, shift(switch, 8)):
        parcel = world.order(shop, member, shop.goods_id, 1)
        ok(sup.post(f"/supplier/parcels/{parcel.parcel_id}/ship", json={"carrier": "SF Express", "tracking_no": uid("SF")}))
        assert redate([f"channel.{shop.code}", f"supplier.{supplier}"], day, day) == 2
        booked[parcel.parcel_id] = day

    changed = ok(ops.patch(f"/ops/channels/{shop.code}", json={"settlement_period": "weekly"}))
    tomorrow = next_day(business_day(time.time()))
    assert changed["settlement_rules"] == [{"from": settlement_rules.SINCE_START, "kind": "monthly"},
                                           {"from": tomorrow, "kind": "weekly"}]  # from the next business day
    # ... and that day came: the change as it would stand had it been made the day before the switch
    Channel.get(shop.code).update([Channel.settlement_rules.set({settlement_rules.SINCE_START: "monthly", switch: "weekly"})])

    weeks = [periods.containing(switch, periods.WEEKLY), periods.containing(shift(switch, 8), periods.WEEKLY)]
    for period in [month] + weeks:
        world.settle(period.period_id)

    listed = ok(signed_get(shop, f"/partner/{shop.code}/statements"))["statements"]
    assert sorted((s["period_id"], s["first_day"], s["last_day"]) for s in listed) == sorted(
        [(month.period_id, month.days()[0], shift(switch, -1))]
        + [(w.period_id, max(w.days()[0], switch), w.days()[-1]) for w in weeks])
    seen: list[str] = []
    for listed_one in listed:
        fetched = ok(signed_get(shop, f"/partner/{shop.code}/statements/{listed_one['statement_id']}"))
        rows = download(fetched).decode().splitlines()
        seen += [row.split(",")[3] for row in rows if row.startswith("order,")]
        for row in rows:
            if row.startswith("order,"):
                assert listed_one["first_day"] <= row.split(",")[1] <= listed_one["last_day"]
    assert sorted(seen) == sorted(booked)  # each booked parcel once, in the statement of its day
    days = [set(Statement.get(s["statement_id"]).days) for s in listed]
    assert sum(len(d) for d in days) == len(set().union(*days))  # no day in two statements

    supplier_side = ok(sup.get("/supplier/statements"))["statements"]
    assert [s["period_id"] for s in supplier_side] == [month.period_id]  # suppliers stay monthly
    rows = download(ok(sup.get(f"/supplier/statements/{supplier_side[0]['statement_id']}"))).decode().splitlines()
    assert sorted(row.split(",")[3] for row in rows if row.startswith("payable,")) == sorted(booked)


def test_a_losing_run_with_other_inputs_never_changes_a_recorded_export(world: World, first_period: dict,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of a period computed from different inputs (issue 16, item 10): the one that records second
    finds the record and is refused (``StatementMismatch``), and what the channel downloads through its signed
    link is still the recorded bytes, SHA-256 and all; the channel's margin file too."""
    w = world
    recorded = statements_of(first_period["view"])[f"channel.{w.a.code}"]
    party, period = f"channel.{w.a.code}", periods.parse(P1)
    stored = Statement.get(recorded["statement_id"])
    before = download(ok(signed_get(w.a, f"/partner/{w.a.code}/statements/{recorded['statement_id']}")))
    margin_before = exports.get(stored.margin_key)
    monkeypatch.setattr(runs.fees, "fee_for", lambda code, days: 1)  # its plan read differently: other bytes
    statement, margin = runs.compute(period, party, list(stored.days))
    assert hashlib.sha256(statement.render()).hexdigest() != stored.sha256
    with pytest.raises(RuntimeError, match="closed with other content"):
        runs._record(period, party, list(stored.days), statement, margin)
    fetched = ok(signed_get(w.a, f"/partner/{w.a.code}/statements/{recorded['statement_id']}"))
    assert (fetched["sha256"], fetched["bytes"]) == (stored.sha256, stored.byte_length)
    assert download(fetched) == before  # download() checks the bytes against the recorded SHA-256 and length
    assert exports.get(Statement.get(recorded["statement_id"]).margin_key) == margin_before
