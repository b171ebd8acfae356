"""The running settlement period's provisional statement: a channel reads its own (signed
``GET /partner/{code}/statements/current``) and a supplier its own (``GET /supplier/statements/current``); both
are the final statement's computation, marked provisional and never exported; once the period closes, the final
statement settled on moto's Step Functions has exactly the provisional lines and totals. Also: ops list the
settlement periods that can be settled (``GET /ops/settlement``, ``tools.ops settle`` with no argument)."""
from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime

import requests

from checkout_helpers import PRICE, SETTLEMENT, make_shop, ok
from chalicelib.settlement.models import Statement
from chalicelib.supply.models import Goods
from chalicelib.core.clock import business_day
from chalicelib.settlement import exports, periods, provisional, runs
from chalicelib.orders import parcels as parcels_mod
from helpers import assert_error, supplier_client, wait_for
from test_settlement import World, redate, signed_get
from tools import ops as ops_cli
from tools.sign import signed_request

YEAR = random.Random().randrange(2001, 2020)
MONTH = random.Random().randrange(1, 13)
PAST = f"{YEAR}-{MONTH:02d}"  # a month of its own, no other run's


def inside(period_id: str) -> float:
    """A moment in the middle of the period (its 10th day, noon business time)."""
    period = periods.parse(period_id)
    return period.starts_at + 9 * 86_400 + 4 * 3600


def printed(out: str) -> dict:
    """What the CLI printed (indented JSON), among the app's own log lines (it serves from this process)."""
    return json.JSONDecoder().raw_decode(out[out.index("{\n"):])[0]


def rows(lines: list[dict], columns: list[str]) -> list[list[str]]:
    return [[str(line[c]) for c in columns] for line in lines]


class History:
    """One channel, its supplier: three orders today, two shipped, one of them refunded, one cancelled."""

    def __init__(self, system, ops) -> None:
        self.world = World.__new__(World)  # only its helpers (order, ship, refund) with this shop's supplier
        self.world.ops = ops
        self.shop = make_shop(system, ops, "hosted")
        self.supplier_id = Goods.get(self.shop.goods_id).supplier_id
        self.supplier = requests.Session()
        self.supplier.headers["X-Api-Key"] = self.shop.supplier_key
        self.world.sup = {self.supplier_id: supplier_client(system, self.shop.supplier_key)}
        self.member = self.shop.member()
        ok(self.shop.grant(self.member, 100 * PRICE), 201)
        shipped, refunded, cancelled = (self.world.order(self.shop, self.member, self.shop.goods_id, qty)
                                        for qty in (2, 1, 3))
        self.world.ship(shipped)
        self.world.ship(refunded)
        self.world.refund(refunded)
        ok(requests.post(f"{self.shop.base_url}/api/{self.shop.code}/parcels/{cancelled.parcel_id}/cancel",
                         headers=self.shop.auth(self.member), timeout=30))

    @property
    def parties(self) -> list[str]:
        return [f"channel.{self.shop.code}", f"supplier.{self.supplier_id}"]


def test_each_side_reads_its_running_period_provisionally_and_it_closes_to_the_same_statement(system, ops):
    h = History(system, ops)
    channel_party, supplier_party = h.parties

    # Over HTTP, today: the running month, line by line, marked provisional, with no export or link.
    mine = ok(signed_get(h.shop, f"/partner/{h.shop.code}/statements/current"))
    month = periods.containing(business_day(mine["as_of"]), periods.MONTHLY).period_id
    assert (mine["provisional"], mine["period_id"], mine["party"]) == (True, month, channel_party)
    assert "download_url" not in mine and "sha256" not in mine
    kinds = sorted(line["kind"] for line in mine["lines"])
    assert kinds == ["fee", "order", "order", "order", "refund", "refund"], mine["lines"]
    assert mine["totals"]["order_amount"] == 6 * PRICE and mine["totals"]["refund_amount"] == -4 * PRICE
    assert mine["totals"]["amount_due"] == mine["totals"]["money"] == 2 * PRICE + mine["totals"]["fee_money"]
    supplier = ok(h.supplier.get(f"{system.base_url}/supplier/statements/current", timeout=30))
    assert (supplier["provisional"], supplier["party"]) == (True, supplier_party)
    assert sorted(line["kind"] for line in supplier["lines"]) == ["clawback", "payable", "payable"]
    assert supplier["totals"]["amount_due"] == 2 * SETTLEMENT  # 3 units shipped, 1 refunded (it bears it)
    # Nothing was written for either: no statement to fetch, nothing listed.
    assert ok(signed_get(h.shop, f"/partner/{h.shop.code}/statements"))["statements"] == []
    assert_error(signed_get(h.shop, f"/partner/{h.shop.code}/statements/{month}.{channel_party}"), 404,
                 "statement_not_found")
    assert ok(h.supplier.get(f"{system.base_url}/supplier/statements", timeout=30))["statements"] == []

    # The same books moved to a past month; provisional while "now" is inside it, then the real run.
    assert redate(h.parties, f"{PAST}-05", f"{PAST}-05") == 8  # 3 billed, 2 returned, 2 payable, 1 refunded
    early = {party: provisional.current(party, now=inside(PAST)) for party in h.parties}
    assert all(s["period_id"] == PAST and s["provisional"] for s in early.values())
    assert Statement.count(f"{PAST}.{channel_party}") == 0  # computing it wrote nothing
    started = ok(ops.post(f"/ops/settlement/{PAST}"), 202)
    World.finished(h.world, started)
    for party, shown in early.items():
        final = Statement.get(runs.statement_id(PAST, party))
        exported = list(csv.reader(io.StringIO(exports.get(final.export_key).decode())))
        assert exported[0] == shown["columns"]
        assert exported[1:-1] == rows(shown["lines"], shown["columns"])  # the same lines, in the same order
        assert {k: int(v) for k, v in final.totals.as_dict().items()} == shown["totals"]
        assert shown["totals"]["amount_due"] != 0


def test_a_caller_reads_only_its_own_running_statement(system, ops):
    shop = make_shop(system, ops, "hosted")
    other = make_shop(system, ops, "hosted")
    url, headers = signed_request(shop.base_url, shop.secret, "GET", f"/partner/{other.code}/statements/current")
    assert requests.get(url, headers=headers, timeout=30).status_code == 401  # another channel's secret
    assert_error(requests.get(f"{system.base_url}/supplier/statements/current", timeout=30), 401, "invalid_api_key")
    sandbox = make_shop(system, ops, "hosted", sandbox=True)
    member = sandbox.member()
    ok(sandbox.grant(member, 10 * PRICE), 201)
    placed = sandbox.place(requests.Session(), member)
    assert placed.status == 201
    wait_for(lambda: parcels_mod.of_order(placed.order_id), lambda found: len(found) == 1, timeout=60)  # split
    tried = ok(signed_get(sandbox, f"/partner/{sandbox.code}/statements/current"))
    assert "sandbox" in tried["note"] and [line["kind"] for line in tried["lines"]] == ["fee"]  # nothing booked


def test_ops_list_the_settlement_periods_that_can_be_settled(system, ops, capsys):
    now = datetime.fromisoformat("2026-03-10T12:00:00+08:00").timestamp()
    listed = runs.settleable(now=now)
    weeks = [p["period_id"] for p in listed if p["kind"] == "weekly"]
    assert weeks == [f"2026-W{n:02d}" for n in range(10, 1, -1)]  # Sundays 8 March back to 11 January
    months = [p["period_id"] for p in listed if p["kind"] == "monthly"]
    assert months == ["2026-02", "2026-01"]  # ended and settleable; March runs
    assert {p["state"] for p in listed} <= {"not_started", "freezing", "settled"}
    assert all(periods.parse(p["period_id"]).settleable(now) for p in listed)
    served = ok(ops.get("/ops/settlement"))["periods"]
    assert served == runs.settleable()
    assert ops_cli.main(["--base-url", system.base_url, "--token", system.ops_token, "settle"]) == 0
    assert printed(capsys.readouterr().out) == {"periods": served}
    assert ops_cli.main(["--base-url", system.base_url, "--token", system.ops_token, "settle", "DEMO"]) == 1
    refused = printed(capsys.readouterr().out)["error"]
    assert refused["code"] == "invalid_settlement_period" and "quota period" in refused["message"]


def test_the_cli_names_quota_periods_apart_from_settlement_periods(system, ops, capsys):
    shop = make_shop(system, ops, "hosted")
    cli = ["--base-url", system.base_url, "--token", system.ops_token]
    assert ops_cli.main([*cli, "quota", shop.code]) == 0
    assert printed(capsys.readouterr().out)["period_id"] == shop.period_id
    opened = {"period_id": "Q2", "starts_at": shop.ends_at, "ends_at": shop.ends_at + 3600}
    assert ops_cli.main([*cli, "quota-period-open", shop.code, json.dumps(opened)]) == 0
    assert printed(capsys.readouterr().out)["period_id"] == "Q2"
    assert ops_cli.main([*cli, "quota-period-open", shop.code, json.dumps(opened)]) == 1
    refused = printed(capsys.readouterr().out)["error"]
    assert refused["code"] == "period_exists" and "quota period Q2" in refused["message"]  # the code is kept
