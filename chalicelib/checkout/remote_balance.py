"""A remote channel's member balance, as the channel's own wallet states it (``points/balance``).

The channel keeps the points (remote mode), so the balance a member sees must be the channel's, not the
figure the entry link carried. The answer is kept on the member for at most ``MAX_AGE`` seconds; after money
moved (a payment, a cancel, a refund request) the store asks for a fresh one, which is asked of the channel
at once (at most ``FRESH_PER_MINUTE`` times a minute per member, so a page cannot turn the channel's wallet
into a load test; beyond that the cache, at most ``MAX_AGE`` old, answers). An answer asked before one
already stored never overwrites it (conditional on ``remote_points_at``). When the channel cannot answer, the
last figure known is shown with the time it was true (``stale``), never a guess.
"""
from __future__ import annotations

import time

from pynamodb.exceptions import UpdateError

from chalicelib.channels.models import Channel
from chalicelib.members.models import Member
from chalicelib.core.observability import logger
from chalicelib.core import ratelimit

BALANCE = "points/balance"
MAX_AGE = 5.0
FRESH_PER_MINUTE = 30


def must_ask(cached_at: float | None, now: float, fresh: bool) -> bool:
    """Whether the channel is asked now: nothing asked yet, the answer is ``MAX_AGE`` old, or a fresh one is
    wanted (after money moved)."""
    return fresh or not cached_at or now - cached_at >= MAX_AGE


def current(channel: Channel, member: Member, fresh: bool = False, now: float | None = None) -> dict:
    """``{"balance", "as_of", "stale"}``: the channel's figure and when it was asked (Unix seconds; None for
    the entry link's figure, never asked)."""
    now = time.time() if now is None else now
    cached_at = float(member.remote_points_at) if member.remote_points_at is not None else None
    if fresh:
        try:
            ratelimit.hit(f"remote-balance#{member.member_id}", FRESH_PER_MINUTE, 60, now)
        except ratelimit.RateLimited:
            fresh = False
    if not must_ask(cached_at, now, fresh):
        return _view(member.remote_points, cached_at, stale=False)
    points = _ask(channel, member)
    if points is None:
        return _view(member.remote_points, cached_at, stale=True)
    _keep(member, points, now)
    return _view(points, now, stale=False)


def _view(points, as_of: float | None, stale: bool) -> dict:
    return {"balance": int(points) if points is not None else None,
            "as_of": int(as_of) if as_of is not None else None, "stale": stale}


def _ask(channel: Channel, member: Member) -> int | None:
    """The channel's answer, or None when it gave none we can use (down, slow, refused, malformed)."""
    from chalicelib.partners import channel_api

    try:
        answer = channel_api.call(channel, BALANCE, {"member_id": member.external_id})
    except channel_api.PartnerError as error:
        logger.warning("remote balance not answered", extra={"channel": channel.code, "code": error.code})
        return None
    points = answer.get("points")
    if answer["_status"] != 200 or isinstance(points, bool) or not isinstance(points, int) or points < 0:
        logger.warning("remote balance refused or malformed", extra={"channel": channel.code,
                                                                     "status": answer["_status"]})
        return None
    return points


def _keep(member: Member, points: int, asked_at: float) -> None:
    try:
        member.update([Member.remote_points.set(points), Member.remote_points_at.set(asked_at)],
                      condition=Member.remote_points_at.does_not_exist() | (Member.remote_points_at < asked_at))
    except UpdateError:
        pass  # a later answer is stored already: it stands
