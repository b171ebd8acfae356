"""Confirming a spend: the channel's payment password (with lock-out), or a one-time SMS code."""
from __future__ import annotations

import json
import random
import time

from checkout_helpers import PASSWORD, Shop, assert_error, burst, make_shop, ok, summary, uid
from chalicelib.members.models import PaymentGuard
from chalicelib.members.payment_auth import MAX_FAILURES


def hosted_member(shop: Shop, points: int = 20 * 1200, mobile: str | None = None) -> str:
    member = shop.member(mobile=mobile)
    ok(shop.grant(member, points), 201)
    return member


def verify_calls(shop: Shop) -> int:
    return sum(n for k, n in shop.fake.calls.items() if k.startswith("password/verify"))


# --- the channel's payment password --------------------------------------------------------

def test_wrong_password_then_lock_even_with_the_right_one(system, ops):
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop)
    s = ops.session
    for i in range(4):
        a = shop.place(s, member, body=shop.body(password="wrong-1"))
        assert (a.status, a.code) == (401, "wrong_password"), a.body
    # A right password resets the count.
    assert shop.place(s, member).status == 201
    for i in range(5):
        a = shop.place(s, member, body=shop.body(password=f"wrong-{i}"))
        assert (a.status, a.code) == (401, "wrong_password"), a.body
    calls = verify_calls(shop)
    locked = shop.place(s, member)
    assert (locked.status, locked.code) == (429, "payment_locked"), locked.body
    assert verify_calls(shop) == calls, "a locked member's password must not even be tried"
    assert shop.wallet(member)["spent"] == 1200
    assert shop.quota()["spent"] == 1200


def test_a_right_answer_alone_in_its_window_is_written_nowhere_but_keeps_its_slot(system, ops):
    """The order's transaction clears the window only when it holds other attempts; a right password that was
    the window's only attempt is left in it (nothing more written for the order), so the window then has one
    slot less for wrong guesses: stricter, never looser."""
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop)
    s = ops.session
    assert shop.place(s, member).status == 201
    guard = PaymentGuard.get(shop.member_ids[member], consistent_read=True)
    assert len(guard.tried) == 1 and not int(guard.failures or 0)
    assert shop.place(s, member).status == 201  # the same password again takes no new slot
    for i in range(MAX_FAILURES - 1):
        a = shop.place(s, member, body=shop.body(password=f"wrong-{i}"))
        assert (a.status, a.code) == (401, "wrong_password"), a.body
    locked = shop.place(s, member)
    assert (locked.status, locked.code) == (429, "payment_locked"), locked.body
    assert shop.wallet(member)["spent"] == 2 * 1200


def test_lock_engages_under_a_concurrent_guessing_burst(system, ops):
    """50 wrong guesses at once get exactly the five tries a patient guesser gets; then the member is locked,
    the right password included. (Before attempts were reserved, every guess in flight reached the channel.)"""
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop)
    guesses = burst(system.base_url, [lambda s, i=i: shop.place(s, member, body=shop.body(password=f"{i:06d}"))
                                      for i in range(50)], 50)
    counts = summary(guesses)
    assert set(counts) <= {(401, "wrong_password"), (429, "payment_locked"), (429, "payment_busy")}, counts
    assert counts[(401, "wrong_password")] == MAX_FAILURES, counts
    assert verify_calls(shop) == MAX_FAILURES, shop.fake.calls
    a = shop.place(ops.session, member)
    assert (a.status, a.code) == (429, "payment_locked"), a.body
    assert verify_calls(shop) == MAX_FAILURES, "a locked member's password must not even be tried"
    assert shop.wallet(member)["spent"] == 0


def test_channel_password_api_failure_is_not_a_wrong_password(system, ops):
    """The channel's password API failing (500) or refusing our signature is its fault: 502, nothing counted."""
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop)
    shop.fake.password_status = 500
    for _ in range(6):
        a = shop.place(ops.session, member)
        assert a.status == 502 and a.code and a.code.startswith("channel_api"), (a.status, a.body)
    shop.fake.password_status = None
    shop.fake.secret = "rotated-without-telling-us"
    for _ in range(6):
        a = shop.place(ops.session, member)
        assert a.status == 502 and a.code and a.code.startswith("channel_api"), (a.status, a.body)
    shop.fake.secret = shop.secret
    guard = PaymentGuard.get(shop.member_ids[member]) if PaymentGuard.count(shop.member_ids[member]) else None
    assert guard is None or (int(guard.failures or 0), int(guard.locked_until or 0)) == (0, 0)
    a = shop.place(ops.session, member)
    assert a.status == 201, a.body


def test_missing_password_is_a_validation_error(system, ops):
    shop = make_shop(system, ops, "hosted")
    member = hosted_member(shop)
    r = ops.session.post(f"{system.base_url}/api/{shop.code}/orders", json={"lines": shop.body()["lines"]},
                         headers={**shop.auth(member), "Idempotency-Key": uid("key-")})
    assert_error(r, 422, "validation_error")
    r = ops.session.post(f"{system.base_url}/api/{shop.code}/otp", headers=shop.auth(member))
    assert_error(r, 422, "otp_not_enabled")


# --- one-time SMS codes -----------------------------------------------------------------------

def mobile() -> str:
    return "139" + "".join(random.choice("0123456789") for _ in range(8))


def send_otp(shop: Shop, member: str, number: str) -> str:
    ok(shop.ops.session.post(f"{shop.base_url}/api/{shop.code}/otp", headers=shop.auth(member)))
    with open(shop.system.sms_outbox, encoding="utf-8") as outbox:
        texts = [json.loads(line) for line in outbox if line.strip()]
    text = [t["text"] for t in texts if t["to"] == number][-1]
    return text.split("code is ")[1][:6]


def otp_shop(system, ops) -> Shop:
    return make_shop(system, ops, "hosted", payment_auth="otp")


def test_otp_wrong_code_is_counted_and_a_code_pays_once(system, ops):
    shop = otp_shop(system, ops)
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    a = shop.place(ops.session, member, body=shop.body(otp=wrong))
    assert (a.status, a.code) == (401, "wrong_otp"), a.body
    guard = PaymentGuard.get(shop.member_ids[member])
    assert (int(guard.failures), int(guard.otp_attempts)) == (1, 1)

    paid = shop.place(ops.session, member, body=shop.body(otp=code))
    assert paid.status == 201, paid.body
    again = shop.place(ops.session, member, body=shop.body(otp=code))  # a new key, the spent code
    assert (again.status, again.code) == (401, "otp_expired"), again.body
    assert shop.wallet(member)["spent"] == 1200
    # The same key with the spent code is the same order, not a second payment.
    assert shop.place(ops.session, member, key=paid.key, body=shop.body(otp=code)).status == 200


def test_expired_otp_is_refused(system, ops):
    shop = otp_shop(system, ops)
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    # Five minutes pass (the clock is moved on the stored code rather than waited for).
    PaymentGuard(shop.member_ids[member]).update([PaymentGuard.otp_expires_at.set(int(time.time()) - 1)])
    a = shop.place(ops.session, member, body=shop.body(otp=code))
    assert (a.status, a.code) == (401, "otp_expired"), a.body
    assert shop.wallet(member)["spent"] == 0
    code = send_otp(shop, member, number)
    assert shop.place(ops.session, member, body=shop.body(otp=code)).status == 201


def test_five_wrong_codes_lock_the_member(system, ops):
    shop = otp_shop(system, ops)
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    for i in range(5):
        wrong = f"{(int(code) + 1 + i) % 10**6:06d}"
        a = shop.place(ops.session, member, body=shop.body(otp=wrong))
        assert (a.status, a.code) == (401, "wrong_otp"), a.body
    a = shop.place(ops.session, member, body=shop.body(otp=code))
    assert (a.status, a.code) == (429, "payment_locked"), a.body
    r = ops.session.post(f"{system.base_url}/api/{shop.code}/otp", headers=shop.auth(member))
    assert_error(r, 429, "payment_locked")
    assert shop.wallet(member)["spent"] == 0


def test_one_otp_pays_for_one_order_under_concurrency(system, ops):
    """100 orders at once, each with its own key and the same valid code: exactly one is paid."""
    shop = otp_shop(system, ops)
    number = mobile()
    member = hosted_member(shop, mobile=number)
    code = send_otp(shop, member, number)
    attempts = burst(system.base_url, [lambda s: shop.place(s, member, body=shop.body(otp=code))
                                       for _ in range(100)], 50)
    counts = summary(attempts)
    assert counts.get((201, None)) == 1, counts
    # Attempts are reserved before the code is compared: those that find every attempt of the window in
    # flight are told to retry (payment_busy), never paid twice.
    assert set(counts) <= {(201, None), (409, "otp_used"), (401, "otp_expired"), (429, "payment_busy")}, counts
    assert shop.wallet(member)["spent"] == 1200 == shop.quota()["spent"]
    assert len(shop.orders()) == 1


def test_otp_needs_a_known_mobile(system, ops):
    shop = otp_shop(system, ops)
    member = hosted_member(shop)  # entered without a mobile number
    r = ops.session.post(f"{system.base_url}/api/{shop.code}/otp", headers=shop.auth(member))
    assert_error(r, 422, "no_mobile")
    a = shop.place(ops.session, member, body=shop.body(password=PASSWORD))
    assert (a.status, a.code) == (422, "validation_error"), a.body
