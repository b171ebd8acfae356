"""The payment lockout against a concurrent attacker, and the limits on sending codes (SMS pumping).

Every test fires real HTTP requests at once at the running app; the counts are read back from what the
channel's password API received, what the SMS outbox holds and the stored guard.
"""
from __future__ import annotations

import json
import time

import pytest

from checkout_helpers import Shop, burst, make_shop, summary
from chalicelib.members import payment_auth
from chalicelib.members.models import PaymentGuard
from chalicelib.members.payment_auth import MAX_FAILURES, OTP_SENDS_PER_MEMBER_HOUR, WINDOW_SECONDS
from test_payment_auth import hosted_member, mobile, send_otp


def clear_of_boundary(period: int, margin: float = 5.0) -> None:
    """Attempts and sends are counted in fixed clock windows: keep a test inside one of them."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.5)


def outbox_to(shop: Shop, number: str) -> list[dict]:
    with open(shop.system.sms_outbox, encoding="utf-8") as outbox:
        return [m for m in (json.loads(line) for line in outbox if line.strip()) if m["to"] == number]


def otp_post(shop: Shop, member: str):
    def call(session):
        r = session.post(f"{shop.base_url}/api/{shop.code}/otp", headers=shop.auth(member), timeout=60)
        return r.status_code, (r.json().get("error") or {}).get("code") if r.status_code != 200 else None
    return call


def guard_of(shop: Shop, member: str) -> PaymentGuard:
    return PaymentGuard.get(shop.member_ids[member], consistent_read=True)


def test_otp_guess_burst_gets_no_more_tries_than_a_patient_guesser(system, ops):
    clear_of_boundary(WINDOW_SECONDS)
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    wrong = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(50)]
    guesses = burst(system.base_url, [lambda s, w=w: shop.place(s, member, body=shop.body(otp=w)) for w in wrong], 50)
    counts = summary(guesses)
    assert counts.get((401, "wrong_otp")) == MAX_FAILURES, counts
    assert set(counts) <= {(401, "wrong_otp"), (429, "payment_locked"), (429, "payment_busy"),
                           (401, "otp_expired")}, counts
    a = shop.place(ops.session, member, body=shop.body(otp=code))
    assert (a.status, a.code) == (429, "payment_locked"), a.body
    assert shop.wallet(member)["spent"] == 0


def test_a_lock_survives_a_send(system, ops):
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    for i in range(MAX_FAILURES):
        a = shop.place(ops.session, member, body=shop.body(otp=f"{(int(code) + 1 + i) % 10**6:06d}"))
        assert (a.status, a.code) == (401, "wrong_otp"), a.body
    locked_until = int(guard_of(shop, member).locked_until)
    assert locked_until > time.time()
    r = ops.session.post(f"{system.base_url}/api/{shop.code}/otp", headers=shop.auth(member))
    assert (r.status_code, r.json()["error"]["code"]) == (429, "payment_locked"), r.text
    assert int(guard_of(shop, member).locked_until) == locked_until


def test_sends_racing_guesses_never_reset_the_count(system, ops):
    """Guesses and new codes at once: a send only replaces the code, so the guesses still get five tries in
    all and the member ends locked. (A send used to rewrite the whole guard from a stale read.)"""
    clear_of_boundary(WINDOW_SECONDS)  # divides the hour: clear of both
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    number = mobile()
    member = hosted_member(shop, mobile=number)
    send_otp(shop, member, number)
    tasks = []
    for i in range(40):
        tasks.append(otp_post(shop, member) if i % 2 else
                     (lambda s, i=i: shop.place(s, member, body=shop.body(otp=f"{i:06d}"))))
    results = burst(system.base_url, tasks, 40)
    wrong = sum(1 for r in results if getattr(r, "code", None) == "wrong_otp")
    assert wrong <= MAX_FAILURES, [getattr(r, "code", r) for r in results]
    # However the race fell, guessing on from here ends in the lock within the same five tries.
    for i in range(MAX_FAILURES + 1):
        a = shop.place(ops.session, member, body=shop.body(otp=f"{900000 + i:06d}"))
        if a.code == "payment_locked":
            break
        assert a.code == "wrong_otp", a.body
        wrong += 1
    assert (a.status, a.code) == (429, "payment_locked"), a.body
    assert wrong == MAX_FAILURES
    assert int(guard_of(shop, member).locked_until) > time.time()


def test_code_sends_are_limited_per_member_under_a_burst(system, ops):
    clear_of_boundary(3600)
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    number = mobile()
    member = hosted_member(shop, mobile=number)
    results = burst(system.base_url, [otp_post(shop, member) for _ in range(30)], 30)
    counts: dict = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    assert counts == {(200, None): OTP_SENDS_PER_MEMBER_HOUR, (429, "otp_send_limited"): 30 - OTP_SENDS_PER_MEMBER_HOUR}
    assert len(outbox_to(shop, number)) == OTP_SENDS_PER_MEMBER_HOUR


@pytest.fixture
def channel_send_limit(monkeypatch):
    """A small per-channel hourly limit for this test (the app runs in this process and reads it per call)."""
    monkeypatch.setattr(payment_auth, "OTP_SENDS_PER_CHANNEL_HOUR", 12)
    return 12


def test_code_sends_are_limited_per_channel_under_a_burst(system, ops, channel_send_limit):
    clear_of_boundary(3600)
    shop = make_shop(system, ops, "hosted", payment_auth="otp")
    numbers = {hosted_member(shop, mobile=n): n for n in (mobile() for _ in range(8))}
    tasks = [otp_post(shop, m) for m in numbers for _ in range(OTP_SENDS_PER_MEMBER_HOUR)]
    results = burst(system.base_url, tasks, len(tasks))
    sent = sum(1 for r in results if r == (200, None))
    assert sent == channel_send_limit, results
    assert set(results) == {(200, None), (429, "otp_send_limited")}
    assert sum(len(outbox_to(shop, n)) for n in numbers.values()) == channel_send_limit


def test_a_burst_of_orders_with_the_right_password_is_not_held_back(system, ops):
    """Slots are per distinct password: 30 orders at once with the member's own password all pay."""
    clear_of_boundary(WINDOW_SECONDS)
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop, points=30 * 1200)
    paid = burst(system.base_url, [lambda s: shop.place(s, member) for _ in range(30)], 30)
    assert summary(paid) == {(201, None): 30}, summary(paid)
    assert shop.wallet(member)["spent"] == 30 * 1200
