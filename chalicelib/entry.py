"""Channel entry: a signed link (or a one-time code) becomes a member session.

Checks run cheapest-first and a nonce is only spent once the signature is
proven, so a forged request can neither create a member nor burn a nonce.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from pynamodb.exceptions import PutError

from chalicelib import channels, members, partners, sessions
from chalicelib.errors import BadRequest, Forbidden, Unauthorized
from chalicelib.models import Channel, Member, Nonce, condition_failed
from chalicelib.signing import WINDOW_SECONDS, check_envelope, check_signature

TARGET = re.compile(r"^/(?!/)[A-Za-z0-9/_.~\-?=&%]*$")


@dataclass(frozen=True)
class Entry:
    member: Member
    token: str
    redirect: str


def active_channel(code: str) -> Channel:
    channel = channels.get(code)
    if channel.status != channels.ACTIVE:
        raise Forbidden("channel_suspended", f"channel {code} is suspended")
    return channel


def spend_nonce(channel_code: str, nonce: str, timestamp: int) -> None:
    """Single use within the window, by a conditional write; TTL clears it afterwards."""
    try:
        Nonce(f"{channel_code}#{nonce}", expires_at=datetime.fromtimestamp(timestamp + 2 * WINDOW_SECONDS + 60, timezone.utc)).save(
            condition=Nonce.key.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            raise Unauthorized("nonce_replayed", "this nonce was already used", "nonce") from None
        raise


def verify(channel: Channel, params: Mapping[str, str], now: float | None = None) -> None:
    """Everything the contract demands of a signed request, nonce spent last."""
    now = time.time() if now is None else now
    timestamp = check_envelope(params, now)
    check_signature(params, channels.accepted_secrets(channel, now))
    spend_nonce(channel.code, params["nonce"], timestamp)


def store_path(channel_code: str, target: str | None) -> str:
    """The store page to open: ``target`` only when it is a plain path inside the store."""
    home = f"/store/{channel_code}"
    return f"{home}#{target}" if target and TARGET.match(target) else home


def _optional_int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        raise BadRequest("invalid_field", "points must be a whole number", "points") from None


def enter(channel_code: str, params: Mapping[str, str], now: float | None = None) -> Entry:
    channel = active_channel(channel_code)
    if params.get("code") and channel.entry_mode == "code":
        identity = partners.exchange_code(channel, params["code"])
        external_id = identity["member_id"]
        profile = {k: identity.get(k) for k in ("nickname", "mobile")}
        points = identity.get("points")
    else:
        if not params.get("member_id"):
            raise BadRequest("missing_field", "the signed field member_id is missing", "member_id")
        verify(channel, params, now)
        external_id = params["member_id"]
        profile = {k: params.get(k) for k in ("nickname", "mobile")}
        points = params.get("points")
    member = members.enter(channel.code, external_id, remote_points=_optional_int(points),
                           nickname=profile["nickname"] or None, mobile=profile["mobile"] or None)
    token, _ = sessions.issue(member.member_id, channel.code, now)
    return Entry(member, token, store_path(channel.code, params.get("target")))
