"""The statement rules (``settlement.statements``), property-tested with random parcels: every statement's lines
sum exactly to its totals; the same inputs in any order, or given twice, give the same bytes; the amounts
match an independent calculation (exact fractions, half-up rounding by ``decimal``)."""
from __future__ import annotations

import csv
import io
import random
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.channels import settlement_rules
from chalicelib.core.clock import business_day
from chalicelib.settlement import periods
from chalicelib.settlement.statements import (
    PLATFORM, SUPPLIER, Item, Movement, channel_margin, channel_statement, money, platform_statement,
    supplier_statement,
)

FIRST_DAY = "2026-02-01"
DAYS = ["2026-01-30", "2026-01-31", "2026-02-01", "2026-02-14", "2026-02-28"]


def half_up(value: Fraction) -> int:
    """Independent of ``money``: decimal's own ROUND_HALF_UP on the exact fraction (sign kept outside)."""
    sign = -1 if value < 0 else 1
    exact = Decimal(abs(value.numerator)) / Decimal(value.denominator)
    return sign * int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


items = st.builds(Item, goods_id=st.sampled_from(["G1", "G2", "G3"]), sku_id=st.sampled_from(["a", "b"]),
                  qty=st.integers(1, 99), price=st.integers(1, 10**7), settlement_price=st.integers(0, 10**7),
                  points=st.integers(0, 10**9))


@st.composite
def movement(draw, n: int) -> Movement:
    lines = draw(st.lists(items, min_size=1, max_size=4, unique_by=lambda i: (i.goods_id, i.sku_id)))
    return Movement(f"O{n}-1", f"O{n}", draw(st.sampled_from(DAYS[2:])), tuple(lines), draw(st.integers(1, 1000)),
                    billed_day=draw(st.sampled_from(DAYS)), after_shipment=draw(st.booleans()),
                    borne_by=draw(st.sampled_from([SUPPLIER, PLATFORM])))


movements = st.integers(0, 6).flatmap(lambda k: st.tuples(*[movement(n) for n in range(k)])).map(list)


def rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def check_sums(statement) -> None:
    """Every summed column: the lines add up to the totals and to the export's total row."""
    parsed = rows(statement.render())
    body, total = parsed[:-1], parsed[-1]
    assert total["kind"] == "total" and len(body) == statement.totals["lines"]
    for column in ("amount", "points", "money", "revenue", "cost", "margin", "loss"):
        if column in statement.columns:
            assert sum(int(r[column]) for r in body) == statement.totals[column] == int(total[column])


@settings(max_examples=60, deadline=None)
@given(billed=movements, returned=movements, fee=st.integers(0, 10**6), seed=st.integers())
def test_channel_statement_sums_orders_and_is_stable(billed, returned, fee, seed):
    returned = [Movement(m.parcel_id.replace("-1", "-2"), *list(m.__dict__.values())[1:]) for m in returned]
    statement = channel_statement(FIRST_DAY, billed, returned, fee)
    check_sums(statement)
    shuffled_b, shuffled_r = billed[:], returned[:]
    random.Random(seed).shuffle(shuffled_b)
    random.Random(seed + 1).shuffle(shuffled_r)
    again = channel_statement(FIRST_DAY, shuffled_b + billed, shuffled_r, fee)  # any order, and given twice
    assert again.render() == statement.render()
    expected = fee + sum(half_up(Fraction(i.points * 100, m.points_per_yuan)) for m in billed for i in m.items) \
        - sum(half_up(Fraction(i.points * 100, m.points_per_yuan)) for m in returned for i in m.items)
    assert statement.totals["amount_due"] == expected
    assert statement.totals["adjustment_money"] == -sum(
        half_up(Fraction(i.points * 100, m.points_per_yuan)) for m in returned if m.billed_day < FIRST_DAY
        for i in m.items)


@settings(max_examples=60, deadline=None)
@given(payable=movements, returned=movements, seed=st.integers())
def test_supplier_statement_pays_shipped_less_what_it_bears(payable, returned, seed):
    statement = supplier_statement(payable, returned)
    check_sums(statement)
    random.Random(seed).shuffle(payable)
    assert all(line[3] in {m.parcel_id for m in returned if m.supplier_bears}
               for line in statement.lines if line[0] == "clawback")  # a refund the platform bears: not here
    assert supplier_statement(payable, returned).render() == statement.render()
    expected = sum(i.settlement_price * i.qty for m in payable for i in m.items) - sum(
        i.settlement_price * i.qty for m in returned if m.after_shipment and m.borne_by == SUPPLIER for i in m.items)
    assert statement.totals["amount_due"] == expected


@settings(max_examples=60, deadline=None)
@given(billed=movements, returned=movements, fee=st.integers(0, 10**6))
def test_platform_margin_is_revenue_less_cost_with_losses_listed(billed, returned, fee):
    channel = channel_statement(FIRST_DAY, billed, returned, fee)
    margin = channel_margin("bank-a", channel, billed, returned)
    statement = platform_statement([margin, channel_margin("air-c", channel_statement(FIRST_DAY, [], [], 0), [], [])])
    check_sums(statement)
    cost = sum(i.settlement_price * i.qty for m in billed for i in m.items) - sum(
        i.settlement_price * i.qty for m in returned if not m.after_shipment or m.borne_by == SUPPLIER
        for i in m.items)
    assert statement.totals["revenue"] == channel.totals["amount_due"]
    assert statement.totals["margin"] == channel.totals["amount_due"] - cost
    losses = [(m.parcel_id, i.goods_id, i.sku_id) for m in billed for i in m.items if i.price < i.settlement_price]
    assert sorted((r[4], r[5], r[6]) for r in statement.lines if r[0] == "loss") == sorted(losses)
    assert statement.totals["loss"] == sum((i.settlement_price - i.price) * i.qty
                                           for m in billed for i in m.items if i.price < i.settlement_price)
    assert channel_margin("bank-a", channel, billed, returned).as_dict() == margin.as_dict()


def test_money_rounds_once_half_up_and_returns_cancel_exactly():
    assert money(1, 3) == 33 and money(2, 3) == 67 and money(1, 200) == 1 and money(1, 201) == 0
    assert money(-1, 200) == -1 and money(150, 100) == 150
    line = Item("G1", "a", 3, 100, 80, 301)
    order = Movement("O1-1", "O1", FIRST_DAY, (line,), 300)
    refund = Movement("O1-1", "O1", "2026-02-03", (line,), 300, billed_day=FIRST_DAY, after_shipment=True)
    statement = channel_statement(FIRST_DAY, [order], [refund], 0)
    assert [(l[0], l[10]) for l in statement.lines] == [("order", 100), ("refund", -100), ("fee", 0)]
    assert statement.totals["amount_due"] == 0


def test_a_return_of_an_earlier_period_is_an_adjustment_here():
    line = Item("G1", "a", 1, 500, 400, 500)
    late = Movement("O9-1", "O9", "2026-02-02", (line,), 100, billed_day="2026-01-31")
    statement = channel_statement(FIRST_DAY, [], [late], 0)
    assert statement.lines[0][0] == "adjustment" and statement.lines[0][-1] == "2026-01-31"
    assert statement.totals["adjustment_money"] == -500 == statement.totals["amount_due"]


def test_periods_are_months_and_iso_weeks_of_business_days():
    jan = periods.parse("2026-01")
    assert (jan.days()[0], jan.days()[-1], len(jan.days())) == ("2026-01-01", "2026-01-31", 31)
    assert jan.starts_at == 1767225600 - 8 * 3600  # 2026-01-01 00:00 at UTC+8
    week = periods.parse("2026-W01")
    assert (week.first_day.isoformat(), week.last_day.isoformat()) == ("2025-12-29", "2026-01-04")
    assert business_day(jan.ends_at - 1) == "2026-01-31" and business_day(jan.ends_at) == "2026-02-01"
    assert not jan.settleable(jan.ends_at + periods.SETTLE_AFTER_SECONDS - 1)
    assert jan.settleable(jan.ends_at + periods.SETTLE_AFTER_SECONDS)
    assert [p.period_id for p in periods.recently_settleable(periods.parse("2026-02").starts_at + 2 * 3600)] \
        == ["2026-W04", "2026-01"]
    for bad in ("2026-13", "2026-1", "2026-W54", "2025-W53", "26-01", "2026-01 "):
        try:
            periods.parse(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_channel_rule_holds_by_day_and_changes_from_the_next_day():
    """``settlement_rules.rule_on`` / ``with_change`` / ``days_of_kind``: each day has one rule, so each day is in one
    period of each kind's run at most, and exactly one overall."""
    assert settlement_rules.rule_on(None, periods.WEEKLY, "2026-03-01") == periods.WEEKLY  # never changed
    rules = settlement_rules.with_change(None, periods.MONTHLY, periods.WEEKLY, "2026-03-18")
    assert rules == {settlement_rules.SINCE_START: periods.MONTHLY, "2026-03-18": periods.WEEKLY}
    assert [settlement_rules.rule_on(rules, periods.WEEKLY, d) for d in ("2026-03-17", "2026-03-18")] == [
        periods.MONTHLY, periods.WEEKLY]
    assert settlement_rules.with_change(rules, periods.WEEKLY, periods.MONTHLY, "2026-03-18") == {
        settlement_rules.SINCE_START: periods.MONTHLY}  # undone the same day: nothing left behind
    back = settlement_rules.with_change(rules, periods.WEEKLY, periods.MONTHLY, "2026-04-08")
    month = periods.parse("2026-03")
    for period in (month, periods.parse("2026-04")):
        weeks = {periods.containing(d, periods.WEEKLY) for d in period.days()}
        monthly = periods.days_of_kind(back, periods.MONTHLY, period)
        weekly = [d for w in weeks for d in periods.days_of_kind(back, periods.MONTHLY, w) if d in period.days()]
        assert sorted(monthly + weekly) == period.days()  # every day once, in one kind or the other
    assert periods.days_of_kind(back, periods.MONTHLY, month)[-1] == "2026-03-17"
    assert periods.days_of_kind(back, periods.MONTHLY, periods.parse("2026-04"))[0] == "2026-04-08"
