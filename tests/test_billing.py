"""Billing plans (``billing.billing``): each plan's fee from the metered counters, the statement's fee line over
any period (additive: periods and plan changes never bill a day twice or miss one), plan changes audited and
effective the next day, and a prepaid balance that never goes below zero under a burst of signed calls."""
from __future__ import annotations

import calendar
import random
import threading
from datetime import date, timedelta

import pytest
import requests

from checkout_helpers import BURST_TIMEOUT, PASSWORD, PRICE, SETTLEMENT, assert_error, burst, make_shop, ok, summary, uid
from chalicelib.billing import billing, metering
from chalicelib.billing.billing import Plan, Usage, fee_for, plan_fee
from chalicelib.billing.models import BillingPlan, ChannelDay, PrepaidAccount
from chalicelib.channels import channels
from chalicelib.channels.signing import request_headers
from chalicelib.core.clock import business_day, midnight
from helpers import race


def quota_call(shop) -> requests.Response:
    """One signed server-to-server call from the shop's channel (its quota read)."""
    path = f"/partner/{shop.code}/quota"
    return requests.get(shop.base_url + path, headers=request_headers("GET", path, b"", shop.secret), timeout=60)


def plan_from_today(shop, plan: Plan) -> None:
    """A plan in force today: the new channel's first plan, which takes effect at once."""
    assert billing.set_plan(channels.get(shop.code), plan, "ops:test").effective_from == today()


def balance(shop) -> int:
    """The channel's prepaid balance: the sum over its shards, read strongly consistent."""
    return billing.prepaid_view(shop.code)["balance"]


def today() -> str:
    return business_day()


def tomorrow() -> str:
    return (date.fromisoformat(today()) + timedelta(days=1)).isoformat()


# --- pure fee rules ----------------------------------------------------------------------------------------

def test_plan_fee_per_kind():
    usage = Usage(calls=40, members=7, orders=3, calls_before=90, first_day=9, days=5, month_days=30)
    assert plan_fee(Plan("per_call", call_price=3), usage) == 120
    assert plan_fee(Plan("per_member", member_price=250), usage) == 1750
    assert plan_fee(Plan("none"), usage) == 0
    assert plan_fee(Plan("prepaid", call_price=3, order_price=50), usage) == 0  # paid in advance, debit by debit
    # package of 100 calls a month at 3,000 fen, 5 fen beyond: 90 used before, 40 now → 30 over
    package = Plan("package", monthly_fee=3000, included_calls=100, overage_price=5)
    assert plan_fee(package, usage) == 3000 * 14 // 30 - 3000 * 9 // 30 + 30 * 5


@pytest.mark.parametrize("seed", range(20))
def test_package_fee_is_additive_over_any_cut_of_a_month(seed):
    """However the month is cut into runs (periods, plan changes), the runs' fees sum to the month's."""
    rnd = random.Random(seed)
    n = rnd.choice([28, 29, 30, 31])
    calls = [rnd.randrange(0, 40) for _ in range(n)]
    plan = Plan("package", monthly_fee=rnd.randrange(1, 10**7), included_calls=rnd.randrange(1, 600),
                overage_price=rnd.randrange(1, 50))
    whole = plan_fee(plan, Usage(calls=sum(calls), first_day=0, days=n, month_days=n))
    assert whole == plan.monthly_fee + max(0, sum(calls) - plan.included_calls) * plan.overage_price
    cuts = sorted(rnd.sample(range(1, n), rnd.randrange(0, 8)))
    total = 0
    for start, end in zip([0] + cuts, cuts + [n]):
        total += plan_fee(plan, Usage(calls=sum(calls[start:end]), calls_before=sum(calls[:start]),
                                      first_day=start, days=end - start, month_days=n))
    assert total == whole


def test_plans_are_checked():
    with pytest.raises(Exception) as refused:
        billing.check_plan("per_call", {"call_price": 0})
    assert refused.value.code == "invalid_plan" and refused.value.field == "call_price"
    with pytest.raises(Exception) as refused:
        billing.check_plan("per_call", {"call_price": 2, "member_price": 5})
    assert refused.value.field == "member_price"
    with pytest.raises(Exception) as refused:
        billing.check_plan("prepaid", {"alert_below": 100})
    assert refused.value.code == "invalid_plan"
    assert billing.check_plan("package", {"monthly_fee": 0, "included_calls": 10, "overage_price": 1}).included_calls == 10


# --- the statement's fee line over stored counters -------------------------------------------------------------

def seed_days(code: str, counters: dict[str, dict[str, int]]) -> None:
    """Counters as metering leaves them, spread over its shards (the test's own channel code, nothing else)."""
    for day, amounts in counters.items():
        for i, (name, n) in enumerate(amounts.items()):
            ChannelDay(f"{code}#{i % metering.SHARDS}", day).update([getattr(ChannelDay, name).add(n)])


def test_fee_line_follows_the_plan_of_each_day_and_splits_exactly():
    """Two months, three plans: the fee of the whole span equals an independent day-by-day calculation and the
    sum over any periods that tile it; a period given in Unix seconds bills the days whose midnight it holds."""
    code = uid("fee-")
    rnd = random.Random(7)
    days = [date(2031, 1, 1) + timedelta(days=i) for i in range(59)]  # January and February 2031
    counters = {d.isoformat(): {"calls": rnd.randrange(0, 60), "month_members": rnd.randrange(0, 9),
                                "orders": rnd.randrange(0, 5)} for d in days}
    seed_days(code, counters)
    plans = [("2031-01-01", Plan("per_call", call_price=2)), ("2031-01-11", Plan("per_member", member_price=300)),
             ("2031-01-20", Plan("package", monthly_fee=31_000, included_calls=900, overage_price=4)),
             ("2031-02-15", Plan("prepaid", call_price=1))]
    for start, plan in plans:
        BillingPlan(code, start, kind=plan.kind, call_price=plan.call_price, member_price=plan.member_price,
                    monthly_fee=plan.monthly_fee, included_calls=plan.included_calls,
                    overage_price=plan.overage_price, set_by="ops:test").save()

    def expected(first: date, end: date) -> int:
        total = 0
        d = first
        while d < end:
            plan = [p for s, p in plans if s <= d.isoformat()][-1]
            c = counters[d.isoformat()]
            n = calendar.monthrange(d.year, d.month)[1]
            if plan.kind == "per_call":
                total += c["calls"] * plan.call_price
            elif plan.kind == "per_member":
                total += c["month_members"] * plan.member_price
            elif plan.kind == "package":
                before = sum(counters[x.isoformat()]["calls"] for x in days if x.month == d.month and x < d)
                over = max(0, before + c["calls"] - plan.included_calls) - max(0, before - plan.included_calls)
                total += plan.monthly_fee * d.day // n - plan.monthly_fee * (d.day - 1) // n + over * plan.overage_price
            d += timedelta(days=1)
        return total

    whole = fee_for(code, "2031-01-01", "2031-03-01")
    assert whole == expected(date(2031, 1, 1), date(2031, 3, 1)) > 0
    cuts = ["2031-01-01", "2031-01-07", "2031-01-20", "2031-01-31", "2031-02-09", "2031-03-01"]
    assert sum(fee_for(code, a, b) for a, b in zip(cuts, cuts[1:])) == whole
    # Unix seconds: a period from noon on the 5th to noon on the 9th holds the midnights of the 6th to the 9th
    noon = lambda d: midnight(d) + 43200  # noqa: E731
    assert fee_for(code, noon("2031-01-05"), noon("2031-01-09")) == expected(date(2031, 1, 6), date(2031, 1, 10))
    assert fee_for(code, "2031-01-05", "2031-01-05") == 0


# --- plans over HTTP ------------------------------------------------------------------------------------------

def test_plan_change_is_audited_and_takes_effect_tomorrow(system, ops):
    shop = make_shop(system, ops, "hosted")
    path = f"/ops/channels/{shop.code}/billing-plan"
    assert_error(requests.put(shop.base_url + path, json={"kind": "per_call", "call_price": 3}, timeout=30),
                 401, "ops_auth_required")
    assert_error(ops.put(path, json={"kind": "per_call"}), 422, "invalid_plan")
    assert_error(ops.put(path, json={"kind": "per_call", "call_price": -1}), 422, "validation_error")
    assert_error(ops.put(path, json={"kind": "flat", "call_price": 1}), 422, "validation_error")
    assert_error(ops.put(path, json={"kind": "per_member", "member_price": 100, "call_price": 2}), 422, "invalid_plan")

    # the channel's first plan is in force at once (its own test: below); later changes take effect tomorrow
    ok(ops.put(path, json={"kind": "none"}))
    view = ok(ops.put(path, json={"kind": "per_call", "call_price": 3}))
    assert view["current"] == {"kind": "none", "effective_from": today()}
    assert view["upcoming"] == [{"kind": "per_call", "call_price": 3, "effective_from": tomorrow()}]
    # a second change the same day replaces tomorrow's plan; both are audited, old → new
    view = ok(ops.put(path, json={"kind": "package", "monthly_fee": 50_000, "included_calls": 1000,
                                  "overage_price": 4}))
    assert [p["kind"] for p in view["upcoming"]] == ["package"]
    rows = [r for r in ok(ops.get(f"/ops/channels/{shop.code}/audit"))["audit"] if r["action"] == "billing_plan_set"]
    assert [r["actor"] for r in rows] == ["ops:local", "ops:local", "ops:local"]
    assert '"kind": "none"' in rows[1]["old"] and '"per_call"' in rows[1]["new"]
    assert '"per_call"' in rows[2]["old"] and '"package"' in rows[2]["new"]
    # today's calls are not billed by tomorrow's plan
    ok(quota_call(shop))
    assert fee_for(shop.code, today(), tomorrow()) == 0
    assert_error(ops.get("/ops/channels/nope-nope/billing-plan"), 404, "channel_not_found")


def test_per_call_plan_bills_each_signed_call(system, ops):
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("per_call", call_price=3))
    assert [r.status_code for r in race(12, lambda i: quota_call(shop))] == [200] * 12
    bad = request_headers("GET", f"/partner/{shop.code}/quota", b"", "wrong-secret")
    assert requests.get(f"{shop.base_url}/partner/{shop.code}/quota", headers=bad, timeout=30).status_code == 401
    counted = metering.days(shop.code, today(), today()).get(today(), {})
    assert counted["calls"] == 12  # the forged call is not the channel's and is not metered
    assert fee_for(shop.code, today(), tomorrow()) == 36
    assert ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["current"] == {
        "kind": "per_call", "call_price": 3, "effective_from": today()}


def test_per_member_plan_bills_monthly_unique_members(system, ops):
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("per_member", member_price=250))
    first, second = shop.member(), shop.member()
    shop.member(first)  # the same member entering again is the same active member
    counted = metering.days(shop.code, today(), today())[today()]
    assert (counted["entries"], counted["month_members"]) == (2, 2)
    assert fee_for(shop.code, today(), tomorrow()) == 500


def test_package_plan_bills_overage_beyond_the_allowance(system, ops):
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("package", monthly_fee=30_000, included_calls=3, overage_price=40))
    for _ in range(5):
        ok(quota_call(shop))
    d = date.fromisoformat(today())
    n = calendar.monthrange(d.year, d.month)[1]
    assert fee_for(shop.code, today(), tomorrow()) == 30_000 * d.day // n - 30_000 * (d.day - 1) // n + 2 * 40


# --- prepaid ----------------------------------------------------------------------------------------------

def test_top_ups_are_idempotent_and_audited(system, ops):
    shop = make_shop(system, ops, "hosted")
    path = f"/ops/channels/{shop.code}/prepaid/top-ups"
    first = ok(ops.post(path, json={"topup_id": "T-1", "amount": 5000, "note": "PO 42"}), 201)
    assert first["prepaid"]["balance"] == 5000
    again = ok(ops.post(path, json={"topup_id": "T-1", "amount": 5000}), 200)
    assert again["prepaid"] == {"balance": 5000, "topped_up": 5000, "spent": 0, "alert_below": None, "low": False}
    assert_error(ops.post(path, json={"topup_id": "T-1", "amount": 6000}), 409, "topup_id_reused")
    assert_error(ops.post(path, json={"topup_id": "T-2", "amount": 0}), 422, "validation_error")
    assert_error(ops.post(path, json={"topup_id": "T 2", "amount": 10}), 422, "validation_error")
    ok(ops.post(path, json={"topup_id": "T-2", "amount": 700}), 201)
    assert balance(shop) == 5700
    rows = [r for r in ok(ops.get(f"/ops/channels/{shop.code}/audit"))["audit"] if r["action"] == "prepaid_topped_up"]
    assert len(rows) == 2


def test_prepaid_balance_races_to_zero_and_never_below(system, ops):
    """220 signed calls at once against a balance that pays for exactly 150: 150 answer, 70 are refused with
    402 prepaid_exhausted, the balance ends at its remainder (never below zero), and ops were alerted."""
    shop = make_shop(system, ops, "hosted")
    price, paid_for, calls = 7, 150, 220
    plan_from_today(shop, Plan("prepaid", call_price=price, alert_below=price * 20))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups",
                json={"topup_id": uid("t-"), "amount": price * paid_for + 3}), 201)
    answers = race(calls, lambda i: quota_call(shop))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == paid_for and statuses.count(402) == calls - paid_for, sorted(set(statuses))
    assert_error(next(r for r in answers if r.status_code == 402), 402, "prepaid_exhausted")
    account = billing.prepaid_view(shop.code)
    assert (account["balance"], account["spent"]) == (3, price * paid_for)
    shards = [int(a.balance) for a in PrepaidAccount.batch_get([k for k, in billing.account_keys(shop.code)])]
    assert len(shards) == billing.PREPAID_SHARDS and min(shards) >= 0
    counted = metering.days(shop.code, today(), today())[today()]
    assert (counted["calls"], counted["calls_refused"]) == (paid_for, calls - paid_for)
    view = ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["prepaid"]
    assert view == {"balance": 3, "topped_up": price * paid_for + 3, "spent": price * paid_for,
                    "alert_below": price * 20, "low": True}
    # a top-up lets the channel in again
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": price}), 201)
    ok(quota_call(shop))
    assert quota_call(shop).status_code == 402


def test_prepaid_orders_are_charged_once_and_given_back_when_refused(system, ops):
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("prepaid", order_price=500))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": 1000}), 201)
    member = shop.member()
    ok(shop.grant(member, PRICE * 10), 201)  # the grant is a call: not charged (no call price)
    session = requests.Session()
    key = uid("key-")
    assert shop.place(session, member, key).status == 201
    assert shop.place(session, member, key).status == 200  # a replay is not charged again
    assert balance(shop) == 500
    wrong = shop.place(session, member, body=shop.body(password="000000"))
    assert (wrong.status, wrong.code) == (401, "wrong_password")
    assert balance(shop) == 500  # refused: given back
    assert shop.place(session, member).status == 201
    last = shop.place(session, member)
    assert (last.status, last.code) == (402, "prepaid_exhausted")
    assert balance(shop) == 0
    assert len(shop.orders()) == 2
    system.streams.drain()  # paid orders are counted from the orders stream
    counted = metering.days(shop.code, today(), today())[today()]
    assert (counted["orders"], counted["gmv"], counted["cost"]) == (2, 2 * PRICE, 2 * SETTLEMENT)
    assert counted["refused_password"] == 1


def test_prepaid_order_price_comes_back_when_the_channel_refuses_the_deduct(system, ops):
    shop = make_shop(system, ops, "remote")
    plan_from_today(shop, Plan("prepaid", order_price=300))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": 300}), 201)
    session = requests.Session()
    refused = shop.place(session, shop.member(points=0))  # the channel's wallet refuses: the order is released
    assert (refused.status, refused.body["status"]) == (201, "failed")
    assert balance(shop) == 300
    assert shop.place(session, shop.member(points=PRICE)).body["status"] == "paid"
    assert balance(shop) == 0
    system.streams.drain()  # paid orders are counted from the orders stream
    counted = metering.days(shop.code, today(), today())[today()]
    assert (counted["orders"], counted["refused_balance"]) == (1, 1)


# --- prepaid order fees: charged with the order, given back with its release (issue 16, items 1 and 8) --------

def test_failed_orders_and_their_replays_never_drain_the_prepaid_balance(system, ops):
    """A member with no points at a remote channel places ten orders the channel refuses, and replays each: the
    fee of an order is taken at most once (with the order) and given back once (with its release), so the
    balance ends where it started, and a member who can pay still gets an order charged once."""
    shop = make_shop(system, ops, "remote")
    plan_from_today(shop, Plan("prepaid", order_price=100))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": 1000}), 201)
    session, broke = requests.Session(), shop.member(points=0)
    for _ in range(10):
        key = uid("key-")
        first = shop.place(session, broke, key)
        assert (first.status, first.body["status"]) == (201, "failed"), first.body
        again = shop.place(session, broke, key)
        assert (again.status, again.body["status"]) == (200, "failed"), again.body
    assert ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["prepaid"]["balance"] == 1000
    paid = shop.place(session, shop.member(points=PRICE))
    assert (paid.status, paid.body["status"]) == (201, "paid")
    view = ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["prepaid"]
    assert (view["balance"], view["spent"]) == (900, 100)


def test_no_fee_is_kept_when_checkout_fails_with_a_server_error(system, ops):
    """The channel's password API is down: checkout answers 502 and no order exists, so no fee is kept."""
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("prepaid", order_price=100))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": 1000}), 201)
    member = shop.member()
    ok(shop.grant(member, PRICE * 2), 201)
    shop.fake.password_status = 500
    failed = shop.place(requests.Session(), member)
    assert failed.status >= 500 and failed.order_id is None, failed.body
    assert shop.orders() == []
    assert ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["prepaid"]["balance"] == 1000


def test_same_key_race_with_a_wrong_password_cannot_leave_an_order_uncharged(system, ops):
    """Two sends of one order, one with a wrong password, checked by the channel in the worst order: the wrong
    one is answered (and refused) while the right one waits, then the right one commits. The order that exists
    is charged once."""
    shop = make_shop(system, ops, "hosted")
    plan_from_today(shop, Plan("prepaid", order_price=100))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups", json={"topup_id": uid("t-"), "amount": 1000}), 201)
    member = shop.member()
    ok(shop.grant(member, PRICE * 2), 201)
    key, answers = uid("key-"), {}
    release_wrong, release_right = shop.fake.hold_password("000000"), shop.fake.hold_password(PASSWORD)

    def send(name: str, body: dict) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(
            name, shop.place(requests.Session(), member, key, body=body)))
        thread.start()
        return thread

    wrong = send("wrong", shop.body(password="000000"))
    assert shop.fake.arrived("000000")
    right = send("right", shop.body())
    assert shop.fake.arrived(PASSWORD)
    release_wrong.set()
    wrong.join(60)
    release_right.set()
    right.join(60)
    assert (answers["wrong"].status, answers["wrong"].code) == (401, "wrong_password")
    assert answers["right"].status == 201
    assert len(shop.orders()) == 1
    view = ok(ops.get(f"/ops/channels/{shop.code}/billing-plan"))["prepaid"]
    assert (view["balance"], view["spent"]) == (900, 100)


def test_a_first_plan_takes_effect_at_once_and_later_changes_the_next_day(system, ops):
    shop = make_shop(system, ops, "hosted")
    path = f"/ops/channels/{shop.code}/billing-plan"
    view = ok(ops.put(path, json={"kind": "prepaid", "call_price": 1, "order_price": 100}))
    assert view["current"] == {"kind": "prepaid", "call_price": 1, "order_price": 100, "alert_below": 0,
                               "effective_from": today()}
    assert view["upcoming"] == []
    # a prepaid channel without a balance is refused at once: the plan is in force today
    assert_error(quota_call(shop), 402, "prepaid_exhausted")
    view = ok(ops.put(path, json={"kind": "per_call", "call_price": 3}))
    assert view["current"]["kind"] == "prepaid"
    assert view["upcoming"] == [{"kind": "per_call", "call_price": 3, "effective_from": tomorrow()}]


def test_prepaid_order_prices_race_to_zero_and_never_below(system, ops):
    """200 orders at once against a balance that pays for exactly 60 (spread over the balance shards so that the
    last orders must take from several): 60 are placed and charged, 140 are refused with 402, no shard goes
    below zero, and every placed order carries the price it paid."""
    shop = make_shop(system, ops, "hosted", api_timeout=BURST_TIMEOUT)
    price, paid_for, attempts = 100, 60, 200
    plan_from_today(shop, Plan("prepaid", order_price=price))
    ok(ops.post(f"/ops/channels/{shop.code}/prepaid/top-ups",
                json={"topup_id": uid("t-"), "amount": price * paid_for + 50}), 201)
    members = shop.members(50)
    grants = burst(system.base_url, [lambda s, m=m: shop.grant(m, PRICE * 4, session=s) for m in members], 16)
    assert all(g.status_code == 201 for g in grants)
    answers = burst(system.base_url, [lambda s, m=m: shop.place(s, m) for m in members * 4], 64)
    assert summary(answers) == {(201, None): paid_for, (402, "prepaid_exhausted"): attempts - paid_for}
    assert balance(shop) == 50
    shards = [int(a.balance) for a in PrepaidAccount.batch_get([k for k, in billing.account_keys(shop.code)],
                                                                consistent_read=True)]
    assert min(shards) >= 0 and sum(shards) == 50
    orders = shop.orders()
    assert len(orders) == paid_for and all(int(o.fee) == price == sum(int(v) for v in o.fee_takes.as_dict().values())
                                           for o in orders)
