"""Channel entry: a signed link (or a one-time code) becomes a member session.

Checks run cheapest-first and a nonce is only spent once the signature is
proven, so a forged request can neither create a member nor burn a nonce.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from pynamodb.exceptions import PutError

from chalicelib.billing import metering
from chalicelib.channels import channels
from chalicelib.channels.models import Channel, Nonce
from chalicelib.channels.signing import WINDOW_SECONDS, check_envelope, check_signature, pairs_of, unique_params
from chalicelib.core import web
from chalicelib.core.errors import BadRequest, DomainError, Forbidden, NotFound, Unauthorized
from chalicelib.core.tx import condition_failed
from chalicelib.members import members, sessions
from chalicelib.members.models import Member
from chalicelib.partners import channel_api
from chalicelib.partners.kit import sandbox_log

TARGET = re.compile(r"^/(?!/)[A-Za-z0-9/_.~\-?=&%]*$")


@dataclass(frozen=True)
class Entry:
    member: Member
    token: str
    redirect: str


def active_channel(code: str) -> Channel:
    channel = channels.get(code)
    refuse_suspended(channel)
    return channel


def refuse_suspended(channel: Channel) -> None:
    if channel.status != channels.ACTIVE:
        raise Forbidden("channel_suspended", f"channel {channel.code} is suspended")


# No channel has it: a request naming an unknown channel is checked against it, and so fails exactly as a
# request with a wrong signature does.
_NOBODYS_SECRET = secrets.token_urlsafe(32)


def named_channel(code: str) -> Channel | None:
    """The channel a signed request names, or None for an unknown code. Callers must not tell the two apart
    before the signature is proven (``verify``): an unsigned caller learns nothing of which codes exist."""
    try:
        return channels.get(code)
    except NotFound:
        return None


def spend_nonce(channel_code: str, nonce: str, timestamp: int) -> None:
    """Single use within the window, by a conditional write; TTL clears it afterwards."""
    try:
        Nonce(f"{channel_code}#{nonce}", expires_at=datetime.fromtimestamp(timestamp + 2 * WINDOW_SECONDS + 60, timezone.utc)).save(
            condition=Nonce.key.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            raise Unauthorized("nonce_replayed", "this nonce was already used", "nonce") from None
        raise


def verify(channel: Channel | None, params: Mapping[str, str], now: float | None = None,
           method: str | None = None, path: str | None = None) -> Channel:
    """Everything the contract demands of a signed request, nonce spent last; the channel, proven.

    Keys and repeated keys are refused before any signature is looked at (``params`` may be a
    multi-valued mapping: every value counts). An entry link signs its query alone; a server-to-server
    call (``method`` and ``path`` given) signs them too, so neither authorises the other. An unknown
    channel (None) fails as a wrong signature does, and a suspended one is told only to a caller whose
    signature is proven: who cannot sign learns nothing of which channel codes exist. A request
    accepted with a rotated-in secret is the channel's proof that it has it (our calls switch to it)."""
    now = time.time() if now is None else now
    params = unique_params(pairs_of(params))
    timestamp = check_envelope(params, now)
    accepted = channels.accepted_secrets(channel, now) if channel is not None else [_NOBODYS_SECRET]
    secret = check_signature(params, accepted, method, path)
    assert channel is not None  # nobody's secret never verifies
    refuse_suspended(channel)
    spend_nonce(channel.code, params["nonce"], timestamp)
    channels.record_proof(channel, secret, now)
    return channel


def store_path(channel_code: str, target: str | None) -> str:
    """The store page to open: ``target`` only when it is a plain path inside the store."""
    home = f"/store/{channel_code}"
    return f"{home}#{target}" if target and TARGET.match(target) else home


# What an entry may carry (README, "Input bounds"), checked before any write: a member id becomes part of
# a key (DynamoDB: under 2,048 bytes) and points a stored number (DynamoDB: 38 digits).
FIELDS = {
    "member_id": (web.MEMBER_ID, web.MEMBER_ID_RULE),
    "nickname": (re.compile(r"[^\x00-\x1f\x7f]{0,64}"), "at most 64 characters, no control characters"),
    "mobile": (re.compile(r"(\+?[0-9 -]{5,20})?"), "5 to 20 digits, spaces or dashes, optionally after +"),
    "points": (re.compile(r"([0-9]{1,15})?"), "a whole number from 0 to 999,999,999,999,999"),
    "target": (re.compile(r"[\s\S]{0,512}"), "at most 512 characters"),
    "code": (re.compile(r"[\x21-\x7e]{0,256}"), "at most 256 printable ASCII characters"),
}


def check_fields(values: Mapping[str, object], error: type[DomainError] = BadRequest,
                 code: str = "invalid_field") -> None:
    """Refuse any known field outside its bound, naming it."""
    for name, (pattern, bound) in FIELDS.items():
        value = values.get(name)
        if value is not None and not pattern.fullmatch(str(value)):
            raise error(code, f"{name} must be {bound}", name)


def _check_link(channel: Channel | None, params: Mapping[str, str], now: float | None) -> None:
    check_fields(params)
    if not params.get("member_id"):
        raise BadRequest("missing_field", "the signed field member_id is missing", "member_id")
    verify(channel, params, now)


def _optional_int(value: object) -> int | None:
    return int(value) if value not in (None, "") else None


def enter(channel_code: str, params: Mapping[str, str], now: float | None = None) -> Entry:
    channel = named_channel(channel_code)
    if channel is None:  # refused as a signed link whose signature does not match: unknown and unsigned alike
        _check_link(None, params, now)
    with sandbox_log.logged(channel, "GET", sandbox_log.ENTRY_ROUTE):  # what the guide's checklist ticks
        check_fields(params)
        if params.get("code") and channel.entry_mode == "code":
            refuse_suspended(channel)  # unsigned, so told at once; a suspended channel's API is never called
            identity = channel_api.exchange_code(channel, params["code"])
            check_fields({k: identity.get(k) for k in ("member_id", "nickname", "mobile", "points")},
                         channel_api.PartnerError, "channel_api_bad_response")
            external_id = identity["member_id"]
            profile = {k: identity.get(k) for k in ("nickname", "mobile")}
            points = identity.get("points")
        else:
            _check_link(channel, params, now)
            external_id = params["member_id"]
            profile = {k: params.get(k) for k in ("nickname", "mobile")}
            points = params.get("points")
    member = members.enter(channel.code, external_id, remote_points=_optional_int(points),
                           nickname=profile["nickname"] or None, mobile=profile["mobile"] or None)
    token, _ = sessions.issue(member.member_id, channel.code, now)
    metering.entry(channel.code, member.member_id, now)
    return Entry(member, token, store_path(channel.code, params.get("target")))
