"""Channel redemption quota per settlement period.

Ops open a period with its quota and raise it (never lower it: orders already
taken could exceed a lowered limit); every change is audited. The current
period's quota item is the one checkout debits with ``remaining >= n``.
"""
from __future__ import annotations

import time

from pynamodb.exceptions import DoesNotExist

from chalicelib import audit, channels
from chalicelib.errors import Conflict, NotFound, Unprocessable
from chalicelib.models import Channel, LabelledTransaction, Quota, Refused, commit_retrying, now_iso
from chalicelib.pricing import points_for


def open_period(code: str, period_id: str, starts_at: int, ends_at: int, quota_points: int | None,
                actor: str) -> Quota:
    channel = channels.get(code)
    if ends_at <= starts_at:
        raise Unprocessable("validation_error", "ends_at must be after starts_at", "ends_at")
    limit = int(channel.redemption_quota) if quota_points is None else quota_points
    quota = Quota(code, period_id, starts_at=starts_at, ends_at=ends_at, limit=limit, remaining=limit,
                  reserved=0, spent=0, grant_room=limit, granted=0)
    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.put("period", quota, condition=Quota.period_id.does_not_exist())
        tx.update("channel", channel, [Channel.current_period.set(period_id), Channel.updated_at.set(now_iso())],
                  condition=Channel.code.exists())
        tx.put("audit", audit.row(f"channel#{code}", actor, "period_opened", "current_period",
                                  channel.current_period, {"period_id": period_id, "quota": limit,
                                                           "starts_at": starts_at, "ends_at": ends_at}))
        return tx

    try:
        commit_retrying(build)
    except Refused:
        raise Conflict("period_exists", f"channel {code} already has period {period_id}", "period_id") from None
    return quota


def get(code: str, period_id: str) -> Quota:
    try:
        return Quota.get(code, period_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("period_not_found", f"channel {code} has no period {period_id}") from None


def current(channel: Channel) -> Quota:
    if not channel.current_period:
        raise Conflict("period_not_open", f"channel {channel.code} has no open settlement period")
    return get(channel.code, channel.current_period)


def raise_quota(code: str, period_id: str, points: int, actor: str) -> Quota:
    quota = get(code, period_id)
    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("quota", quota, [Quota.limit.add(points), Quota.remaining.add(points),
                                   Quota.grant_room.add(points)], condition=Quota.ends_at > int(time.time()))
        tx.put("audit", audit.row(f"channel#{code}", actor, "quota_raised", f"quota.{period_id}",
                                  int(quota.limit), int(quota.limit) + points))
        return tx

    try:
        commit_retrying(build)
    except Refused:
        raise Conflict("period_ended", f"period {period_id} has ended; open a new one") from None
    return get(code, period_id)


def view(quota: Quota, channel: Channel) -> dict:
    """Quota in points and, at the channel's rate, in money (fen)."""
    rate = int(channel.points_per_yuan)
    as_money = lambda points: -(-int(points) * 100 // rate)  # noqa: E731
    now = time.time()
    return {
        "channel_code": quota.channel_code, "period_id": quota.period_id,
        "starts_at": int(quota.starts_at), "ends_at": int(quota.ends_at),
        "open": int(quota.starts_at) <= now < int(quota.ends_at),
        "limit": int(quota.limit), "remaining": int(quota.remaining), "reserved": int(quota.reserved),
        "spent": int(quota.spent), "granted": int(quota.granted), "grant_room": int(quota.grant_room),
        "limit_money": as_money(quota.limit), "remaining_money": as_money(quota.remaining),
        "points_per_yuan": rate, "one_yuan_in_points": points_for(100, rate),
    }
