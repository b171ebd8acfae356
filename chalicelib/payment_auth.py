"""Confirming a spend: the channel's payment password, or a one-time SMS code.

Failed attempts are counted per member; at ``MAX_FAILURES`` the member is
locked out for ``LOCK_SECONDS``. A one-time code is stored only as a keyed
hash, expires after ``OTP_SECONDS``, and is consumed inside the checkout
transaction, so it pays for one order only.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist

from chalicelib import config, partners, sms
from chalicelib.errors import DomainError, Unauthorized, Unprocessable
from chalicelib.models import Channel, LabelledTransaction, Member, PaymentGuard

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
OTP_SECONDS = 5 * 60
OTP_MAX_ATTEMPTS = 5


class Locked(DomainError):
    status = 429


def _guard(member_id: str) -> PaymentGuard:
    try:
        return PaymentGuard.get(member_id, consistent_read=True)
    except DoesNotExist:
        return PaymentGuard(member_id, failures=0, locked_until=0, otp_attempts=0)


def _otp_hash(member_id: str, code: str) -> str:
    return hmac.new(config.session_key().encode(), f"{member_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _fail(guard: PaymentGuard, now: float, code: str, message: str) -> DomainError:
    # Count atomically and decide on the count the write returns: a count read before the call goes stale
    # when guesses run concurrently, and the lock would never see its threshold.
    guard.update([PaymentGuard.failures.add(1)])
    if int(guard.failures or 0) >= MAX_FAILURES:
        guard.update([PaymentGuard.locked_until.set(int(now) + LOCK_SECONDS), PaymentGuard.failures.set(0)])
    return Unauthorized(code, message)


def send_otp(channel: Channel, member: Member, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    if channel.payment_auth != "otp":
        raise Unprocessable("otp_not_enabled", "this channel confirms payments with its own payment password")
    if not member.mobile:
        raise Unprocessable("no_mobile", "no mobile number is known for this member; enter again from your app")
    guard = _guard(member.member_id)
    if int(guard.locked_until or 0) > now:
        raise Locked("payment_locked", "too many wrong attempts; try again later")
    code = f"{secrets.randbelow(10**6):06d}"
    PaymentGuard(member.member_id, failures=int(guard.failures or 0), locked_until=int(guard.locked_until or 0),
                 otp_hash=_otp_hash(member.member_id, code), otp_expires_at=int(now) + OTP_SECONDS,
                 otp_attempts=0).save()
    sms.send(member.mobile, f"Your {channel.name} payment code is {code}. It expires in 5 minutes.")
    return {"sent_to": f"***{member.mobile[-4:]}", "expires_in": OTP_SECONDS}


@dataclass(frozen=True)
class Proof:
    """A verified confirmation; an OTP proof is spent by the transaction it is bound to."""

    guard: PaymentGuard | None = None
    otp_hash: str | None = None

    def bind(self, tx: LabelledTransaction) -> None:
        if self.guard is not None and self.otp_hash:
            tx.update("otp", self.guard, [PaymentGuard.otp_hash.remove(), PaymentGuard.failures.set(0)],
                      condition=PaymentGuard.otp_hash == self.otp_hash)


def confirm(channel: Channel, member: Member, password: str | None, otp: str | None,
            now: float | None = None) -> Proof:
    """Verify before any spend: the channel's password API, or the member's current one-time code."""
    now = time.time() if now is None else now
    guard = _guard(member.member_id)
    if int(guard.locked_until or 0) > now:
        raise Locked("payment_locked", "too many wrong attempts; try again later")
    if channel.payment_auth == "otp":
        if not otp:
            raise Unprocessable("validation_error", "this channel confirms payments with a one-time code", "otp")
        if not guard.otp_hash or int(guard.otp_expires_at or 0) <= now:
            raise Unauthorized("otp_expired", "request a new code")
        if int(guard.otp_attempts or 0) >= OTP_MAX_ATTEMPTS:
            raise Unauthorized("otp_expired", "too many wrong codes; request a new code")
        if not hmac.compare_digest(guard.otp_hash, _otp_hash(member.member_id, otp)):
            guard.update([PaymentGuard.otp_attempts.add(1)])
            raise _fail(guard, now, "wrong_otp", "the code is not right")
        return Proof(guard, guard.otp_hash)
    if not password:
        raise Unprocessable("validation_error", "enter your payment password", "password")
    answer = partners.call(channel, "password/verify", {"member_id": member.external_id, "password": password})
    if not isinstance(answer.get("valid"), bool):
        # The channel failed to answer (an error status, a refused signature): not the member's wrong password.
        raise partners.PartnerError("channel_api_bad_response",
                                    f"channel {channel.code} could not verify the password ({answer['_status']})")
    if answer["valid"] is not True:
        raise _fail(guard, now, "wrong_password", "the payment password is not right")
    if int(guard.failures or 0):
        guard.update([PaymentGuard.failures.set(0)])
    return Proof()
