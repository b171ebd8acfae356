"""Confirming a spend: the channel's payment password, or a one-time SMS code.

Every attempt is *reserved* by a conditional write before it is checked:
the member is not locked, and the window (``WINDOW_SECONDS``) has tried
fewer than ``MAX_FAILURES`` distinct passwords or codes, or already this
one. So a burst of parallel guesses gets no more tries than a patient
guesser, while a burst of retries of one order (one password) takes one
slot. A wrong answer keeps its slot and the one that fills the window locks
the member for ``LOCK_SECONDS``; a right answer clears the window; a failure
that is not the member's (the channel's API down) gives the slot back.
Sending a code only ever touches the code fields, so no send can erase a
lock or a count, and sends are rate-limited per member and per channel (SMS
pumping costs money).

A one-time code is stored only as a keyed hash, expires after
``OTP_SECONDS``, and is consumed inside the checkout transaction, so it pays
for one order only. Tried passwords and codes are kept only as truncated
keyed fingerprints, for one window at most.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import size

from chalicelib.channels.models import Channel
from chalicelib.core import config, ratelimit
from chalicelib.core.errors import DomainError, Unauthorized, Unprocessable
from chalicelib.core.tx import LabelledTransaction, condition_failed, write_retrying
from chalicelib.members.models import Member, PaymentGuard
from chalicelib.core.tx import AGAIN, Commit, PlainWrite, Refused, retrying
from chalicelib.members import sms
from chalicelib.partners import breaker, channel_api

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
WINDOW_SECONDS = 15 * 60  # attempts are counted per fixed window of this length
OTP_SECONDS = 5 * 60
OTP_SENDS_PER_MEMBER_HOUR = 5
OTP_SENDS_PER_CHANNEL_HOUR = 2000
_RESERVE_TRIES = 4
PASSWORD_API = "password/verify"  # the channel's payment-password API (``channel_api``)


class Locked(DomainError):
    status = 429


def blank_guard(member_id: str) -> PaymentGuard:
    """The state of a member who has no guard item yet."""
    return PaymentGuard(member_id, failures=0, locked_until=0, otp_attempts=0)


def _guard(member_id: str) -> PaymentGuard:
    try:
        return PaymentGuard.get(member_id, consistent_read=True)
    except DoesNotExist:
        return blank_guard(member_id)


def _locked(guard: PaymentGuard, now: float) -> bool:
    return int(guard.locked_until or 0) > now


def _keyed(member_id: str, text: str) -> str:
    return hmac.new(config.session_key().encode(), f"{member_id}:{text}".encode(), hashlib.sha256).hexdigest()


def _otp_hash(member_id: str, code: str) -> str:
    return _keyed(member_id, code)


def _fingerprint(member_id: str, kind: str, secret: str) -> str:
    """What identifies one tried password or code within a window, without keeping it."""
    return _keyed(member_id, f"tried:{kind}:{secret}")[:16]


def _locked_error() -> Locked:
    return Locked("payment_locked", "too many wrong attempts; try again later")


def _busy_error() -> Locked:
    return Locked("payment_busy", "too many payment confirmations at once; try again in a moment")


def _reserve(member_id: str, fingerprint: str, now: float) -> int:
    """Take this attempt's slot atomically, before it is checked; how many slots the window has taken.

    Two conditional updates: join the current window, or open a new one. Neither holds when the member
    is locked, or the window's slots are all taken by other passwords or codes (some may be in flight)."""
    window = int(now) // WINDOW_SECONDS * WINDOW_SECONDS
    unlocked = PaymentGuard.locked_until.does_not_exist() | (PaymentGuard.locked_until <= int(now))
    room = (size(PaymentGuard.tried) < MAX_FAILURES) | PaymentGuard.tried.contains(fingerprint)
    attempts = (
        ([PaymentGuard.tried.add({fingerprint})],
         unlocked & (PaymentGuard.attempts_window == window) & (PaymentGuard.tried.does_not_exist() | room)),
        ([PaymentGuard.tried.set({fingerprint}), PaymentGuard.attempts_window.set(window),
          PaymentGuard.failures.set(0)],
         unlocked & (PaymentGuard.attempts_window.does_not_exist() | (PaymentGuard.attempts_window < window))),
    )
    guard = PaymentGuard(member_id)

    def take_slot() -> None:
        for actions, condition in attempts:
            try:
                write_retrying(lambda: guard.update(actions, condition=condition))
                return
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        raise Refused(["window"])

    def judged(refused: Refused) -> object:
        current = _guard(member_id)
        if _locked(current, now):
            raise _locked_error()
        if int(current.attempts_window or 0) == window and len(current.tried or ()) >= MAX_FAILURES:
            raise _busy_error()
        return AGAIN  # another request opened the window between our two writes: join it

    return retrying(lambda _: None, lambda _: Commit(PlainWrite(take_slot), lambda: len(guard.tried or ()), judged),
                    _RESERVE_TRIES, exhausted=_no_slot)


def _no_slot() -> int:
    raise _busy_error()


def _release(member_id: str, fingerprint: str) -> None:
    """Give back a slot that was not the member's to lose (the channel failed to answer)."""
    write_retrying(lambda: PaymentGuard(member_id).update([PaymentGuard.tried.delete({fingerprint})]))


def _wrong(member_id: str, taken: int, now: float, otp: bool, code: str, message: str) -> DomainError:
    """A wrong answer keeps its slot; one that comes when the window's slots are all taken locks the member."""
    actions = [PaymentGuard.failures.add(1)] + ([PaymentGuard.otp_attempts.add(1)] if otp else [])
    if taken >= MAX_FAILURES:
        actions += [PaymentGuard.locked_until.set(int(now) + LOCK_SECONDS), PaymentGuard.tried.remove()]
    write_retrying(lambda: PaymentGuard(member_id).update(actions))
    return Unauthorized(code, message)


def _right(member_id: str) -> None:
    write_retrying(lambda: PaymentGuard(member_id).update([PaymentGuard.tried.remove(), PaymentGuard.failures.set(0)]))


def send_otp(channel: Channel, member: Member, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    if channel.payment_auth != "otp":
        raise Unprocessable("otp_not_enabled", "this channel confirms payments with its own payment password")
    if not member.mobile:
        raise Unprocessable("no_mobile", "no mobile number is known for this member; enter again from your app")
    if _locked(_guard(member.member_id), now):
        raise _locked_error()
    ratelimit.hit(f"otp-send#member#{member.member_id}", OTP_SENDS_PER_MEMBER_HOUR, 3600, now,
                  code="otp_send_limited", message="too many codes sent to you this hour; try again later")
    ratelimit.hit(f"otp-send#channel#{channel.code}", OTP_SENDS_PER_CHANNEL_HOUR, 3600, now,
                  code="otp_send_limited", message="too many codes sent in this channel this hour; try again later")
    code = f"{secrets.randbelow(10**6):06d}"
    # Only the code's own fields: a lock or a failure count written meanwhile survives the send.
    write_retrying(lambda: PaymentGuard(member.member_id).update([
        PaymentGuard.otp_hash.set(_otp_hash(member.member_id, code)),
        PaymentGuard.otp_expires_at.set(int(now) + OTP_SECONDS),
        PaymentGuard.otp_attempts.set(0)]))
    sms.send(member.mobile, f"Your {channel.name} payment code is {code}. It expires in 5 minutes.")
    return {"sent_to": f"***{member.mobile[-4:]}", "expires_in": OTP_SECONDS}


@dataclass
class Proof:
    """A verified confirmation; an OTP proof is spent by the transaction it is bound to.

    A right answer still holds its attempt slot until the spend is decided. When the window holds other
    attempts too (``taken`` > 1: a wrong one, or one in flight), the transaction it is bound to clears the window
    (``bind``: one more item of that transaction, not one more round trip); when no transaction of it commits (the
    order was refused, or a replay answered), ``settle`` clears it instead. So a right answer never ends up
    counted as a wrong one. When the window holds only this right answer's own fingerprint, nothing is written:
    the same password joins the window again without taking a slot, and until the window ends (at most
    ``WINDOW_SECONDS``) it holds one of its slots, so a member who just paid has ``MAX_FAILURES`` - 1 wrong tries
    left in it — stricter, never looser. A one-time code's guard is in the transaction anyway: it is cleared."""

    member_id: str
    guard: PaymentGuard | None = None
    otp_hash: str | None = None
    taken: int = 1  # the window's slots taken when this answer reserved its own
    cleared: bool = False

    def bind(self, tx: LabelledTransaction) -> None:
        clear = [PaymentGuard.tried.remove(), PaymentGuard.failures.set(0)]
        if self.guard is not None and self.otp_hash:
            tx.update("otp", self.guard, [PaymentGuard.otp_hash.remove(), *clear],
                      condition=PaymentGuard.otp_hash == self.otp_hash)
        elif self.taken > 1:
            tx.update("guard", PaymentGuard(self.member_id), clear)

    def committed(self) -> None:
        """The transaction this proof was bound to committed: its slot is cleared, or needed no clearing."""
        self.cleared = True

    def settle(self) -> None:
        if not self.cleared and (self.otp_hash or self.taken > 1):
            _right(self.member_id)


def _confirm_otp(member: Member, otp: str | None, now: float, guard: PaymentGuard | None) -> Proof:
    if not otp:
        raise Unprocessable("validation_error", "this channel confirms payments with a one-time code", "otp")
    guard = _guard(member.member_id) if guard is None else guard
    if _locked(guard, now):
        raise _locked_error()
    if not guard.otp_hash or int(guard.otp_expires_at or 0) <= now:
        raise Unauthorized("otp_expired", "request a new code")
    taken = _reserve(member.member_id, _fingerprint(member.member_id, "otp", otp), now)
    if not hmac.compare_digest(guard.otp_hash, _otp_hash(member.member_id, otp)):
        raise _wrong(member.member_id, taken, now, True, "wrong_otp", "the code is not right")
    return Proof(member.member_id, guard, guard.otp_hash, taken)


def _confirm_password(channel: Channel, member: Member, password: str | None, now: float,
                      breaker_state: breaker.State | None = None, calls: list[dict] | None = None) -> Proof:
    if not password:
        raise Unprocessable("validation_error", "enter your payment password", "password")
    fingerprint = _fingerprint(member.member_id, "password", password)
    taken = _reserve(member.member_id, fingerprint, now)
    try:
        answer = channel_api.call(channel, PASSWORD_API, {"member_id": member.external_id, "password": password},
                                  breaker_state, calls)
        if not isinstance(answer.get("valid"), bool):
            # The channel failed to answer (an error status, a refused signature): not the member's wrong password.
            raise channel_api.PartnerError("channel_api_bad_response",
                                        f"channel {channel.code} could not verify the password ({answer['_status']})",
                                        correlation_id=answer["_correlation_id"])
    except BaseException:
        _release(member.member_id, fingerprint)
        raise
    if answer["valid"] is not True:
        raise _wrong(member.member_id, taken, now, False, "wrong_password", "the payment password is not right")
    return Proof(member.member_id, taken=taken)


def confirm(channel: Channel, member: Member, password: str | None, otp: str | None,
            now: float | None = None, guard: PaymentGuard | None = None,
            breaker_state: breaker.State | None = None, calls: list[dict] | None = None) -> Proof:
    """Verify before any spend: the channel's password API, or the member's current one-time code.

    ``guard`` is the member's guard and ``breaker_state`` the password API's breaker as the caller already
    read them (the guard strongly consistent, ``blank_guard`` when absent), to spare reads; ``calls``: where the
    password call's figures go when it succeeds (``channel_api.call``'s ``deferred``); the returned proof must
    be ``settle``d once the spend is decided."""
    now = time.time() if now is None else now
    if channel.payment_auth == "otp":
        return _confirm_otp(member, otp, now, guard)
    return _confirm_password(channel, member, password, now, breaker_state, calls)
