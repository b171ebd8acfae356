"""Channel redemption quota per settlement period, split across shard items.

Ops open a period with its quota (``channels.open_period``: a change of the channel) and
raise it (never lower it: orders already taken could exceed a lowered limit); every change is audited.
This module never imports ``channels``: the channel is handed to it, read. A period's quota
lives in 1 to ``MAX_SHARDS`` shard items whose values sum exactly to it (every
unit of quota is in exactly one shard), so a hot channel's checkouts spread their
writes over several items (each its own partition key, ``Quota.key``) instead of one item's or one
partition's write ceiling. Checkout and
grants debit the shard(s) chosen by ``shards.take`` with ``remaining >= n`` /
``grant_room >= n`` on each.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from pynamodb.exceptions import DoesNotExist

from chalicelib.channels.models import Channel
from chalicelib.channels.pricing import points_for
from chalicelib.checkout.models import Quota
from chalicelib.core import audit
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.core.tx import LabelledTransaction, Refused, batch_read, commit_retrying

MAX_SHARDS = 32


def shard_key(period_id: str, shard: int) -> str:
    """Shard 0 is keyed by the period id itself (a one-shard period is one item, as before); shard i by ``id#i``."""
    return period_id if shard == 0 else f"{period_id}#{shard}"


def _shard_number(period_id: str, key: str) -> int | None:
    if key == period_id:
        return 0
    suffix = key[len(period_id) + 1:] if key.startswith(period_id + "#") else ""
    return int(suffix) if suffix.isdigit() else None


@dataclass(frozen=True)
class Period:
    """A period's quota: its shard items by shard number, and their totals."""

    channel_code: str
    period_id: str
    shards: dict[int, Quota]

    def _sum(self, field: str) -> int:
        return sum(int(getattr(q, field) or 0) for q in self.shards.values())

    @property
    def starts_at(self) -> int:
        return int(self.shards[0].starts_at)

    @property
    def ends_at(self) -> int:
        return int(self.shards[0].ends_at)

    limit = property(lambda self: self._sum("limit"))
    remaining = property(lambda self: self._sum("remaining"))
    reserved = property(lambda self: self._sum("reserved"))
    spent = property(lambda self: self._sum("spent"))
    granted = property(lambda self: self._sum("granted"))
    grant_room = property(lambda self: self._sum("grant_room"))

    @property
    def selling(self) -> bool:
        return all(q.selling is not False for q in self.shards.values())

    @property
    def pricing_versions(self) -> set[int]:
        """The channel pricing versions the shards carry (one, unless a re-price committed between reads)."""
        return {int(q.pricing_version or 0) for q in self.shards.values()}

    def by_shard(self, field: str) -> dict[int, int]:
        return {i: int(getattr(q, field)) for i, q in self.shards.items()}


def pricing_version(channel: Channel) -> int:
    return int(channel.pricing_version or 0)


def priced_at(version: int):
    """The condition a debited shard carries: the channel's prices are still those of ``version``."""
    if version == 0:  # never re-priced since the field exists: absent on the shards, or 0
        return Quota.pricing_version.does_not_exist() | (Quota.pricing_version == 0)
    return Quota.pricing_version == version


def shard_keys(channel: Channel) -> list[str] | None:
    """The current period's shard keys when the channel item knows how many there are, else None."""
    if not channel.current_period or not channel.quota_shards:
        return None
    return [shard_key(channel.current_period, i) for i in range(int(channel.quota_shards))]


def of_items(code: str, period_id: str, items: list[Quota]) -> Period | None:
    """A period from its shard items as read by key; None unless every shard is there."""
    found = {_shard_number(period_id, q.period_id): q for q in items}
    found.pop(None, None)
    if 0 not in found or len(found) != len(items) or sorted(found) != list(range(len(found))):
        return None
    return Period(code, period_id, dict(sorted(found.items())))


def reprice(tx: LabelledTransaction, channel: Channel, actions: Sequence = (), condition=None) -> None:
    """In a transaction that changes what the channel sells at which price: raise its pricing version on the
    channel and on every shard of its current period, and refuse (label ``channel``) if the period changed
    since ``channel`` was read. Checkouts priced before it then fail their shard condition and read again.
    ``actions`` and ``condition``: the channel's own further changes and guard, in the same update of it."""
    guard = same_period(channel) if condition is None else condition & same_period(channel)
    tx.update("channel", channel, [Channel.pricing_version.add(1), Channel.updated_at.set(now_iso()), *actions],
              condition=guard)
    for key in current_keys(channel):
        tx.update(f"reprice:{key}", Quota.item(channel.code, key), [Quota.pricing_version.add(1)],
                  condition=Quota.shard_id.exists())


def current_keys(channel: Channel) -> list[str]:
    """The current period's shard keys: from the channel item, or from shard 0 for channels from before the count."""
    if not channel.current_period:
        return []
    return shard_keys(channel) or [q.period_id for q in get(channel.code, channel.current_period).shards.values()]


def same_period(channel: Channel):
    """Condition on the channel item: its current period is still the one ``channel`` was read with."""
    if channel.current_period:
        return Channel.current_period == channel.current_period
    return Channel.code.exists() & Channel.current_period.does_not_exist()


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares as even as possible, the remainder one unit each to the first shares."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]




def get(code: str, period_id: str, shards: int | None = None) -> Period:
    """Every shard of the period, read by key and consistently: in one BatchGetItem when the count is known
    (``shards``, from the channel item), else shard 0 first (it carries the count), then the others."""
    count = shards
    if not count:
        try:
            first = Quota.get(Quota.key(code, period_id), consistent_read=True)
        except DoesNotExist:
            raise NotFound("period_not_found", f"channel {code} has no quota period {period_id}") from None
        count = int(first.shards)
    keys = [(Quota.key(code, shard_key(period_id, i)),) for i in range(0 if shards else 1, count)]
    items = batch_read({Quota: keys}, consistent=(Quota,))[Quota] if keys else []
    period = of_items(code, period_id, items if shards else [first, *items])
    if period is None or len(period.shards) != count:
        raise NotFound("period_not_found", f"channel {code} has no quota period {period_id}")
    return period


def current(channel: Channel) -> Period:
    if not channel.current_period:
        raise Conflict("period_not_open", f"channel {channel.code} has no open quota period")
    return get(channel.code, channel.current_period, int(channel.quota_shards or 0) or None)


def spread(points: int, remaining: Mapping[int, int]) -> dict[int, int]:
    """A raise over the shards as evenly as possible, the remainder to the emptiest shards; no zero entries."""
    order = sorted(remaining, key=lambda i: (remaining[i], i))
    shares = split(points, len(order))
    return {i: share for i, share in zip(order, shares) if share}


def raise_quota(code: str, period_id: str, points: int, actor: str) -> Period:
    period = get(code, period_id)
    adds = spread(points, period.by_shard("remaining"))

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        now = int(time.time())
        for i, add in adds.items():
            tx.update(f"quota:{i}", period.shards[i], [Quota.limit.add(add), Quota.remaining.add(add),
                                                       Quota.grant_room.add(add)], condition=Quota.ends_at > now)
        audit.add(tx, f"channel#{code}", actor, "quota_raised", f"quota.{period_id}", period.limit,
                  period.limit + points)
        return tx

    try:
        commit_retrying(build)
    except Refused:
        raise Conflict("period_ended", f"quota period {period_id} has ended; open a new one") from None
    return get(code, period_id)


def view(period: Period, channel: Channel) -> dict:
    """Quota in points (totals over the shards) and, at the channel's rate, in money (fen)."""
    rate = int(channel.points_per_yuan)
    as_money = lambda points: -(-int(points) * 100 // rate)  # noqa: E731
    now = time.time()
    limit, remaining = period.limit, period.remaining
    return {
        "channel_code": period.channel_code, "period_id": period.period_id,
        "starts_at": period.starts_at, "ends_at": period.ends_at,
        "open": period.starts_at <= now < period.ends_at,
        "limit": limit, "remaining": remaining, "reserved": period.reserved,
        "spent": period.spent, "granted": period.granted, "grant_room": period.grant_room,
        "shards": len(period.shards), "selling": period.selling,
        "limit_money": as_money(limit), "remaining_money": as_money(remaining),
        "points_per_yuan": rate, "one_yuan_in_points": points_for(100, rate),
    }
