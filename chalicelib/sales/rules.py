"""Flash-sale rules, pure: the sale's state at a time, how many shards, what a checkout may take, and where
a cancelled unit goes. Nothing here reads a table or knows HTTP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

UPCOMING, RUNNING, ENDED = "upcoming", "running", "ended"
MAX_SHARDS = 32
MAX_ALLOTMENT = 1_000_000  # units one sale may set aside
# What one shard (its own partition) may take: every attempt reads one shard strongly consistent (1 RCU of the
# partition's 3,000/s: half of it, for leftovers read across shards), and at the start, before the allotment is
# gone, every attempt may pay and write it (2 WCU of the partition's 1,000/s: 80 %).
ATTEMPTS_PER_SHARD = 1_500
WRITES_PER_SHARD = 400
MAX_LIMIT = 99  # units one member may buy: the checkout's per-line bound


def state(now: float, starts_at: int, ends_at: int) -> str:
    """Upcoming before ``starts_at``, running until ``ends_at`` (exclusive), then ended."""
    if now < starts_at:
        return UPCOMING
    return RUNNING if now < ends_at else ENDED


def shards_for(expected_rate: int) -> int:
    """Shards for an expected checkout rate (attempts per second on this sale), 1 to ``MAX_SHARDS``: enough for
    its reads, and for its writes while every attempt still finds a unit."""
    rate = max(expected_rate, 1)
    return max(1, min(MAX_SHARDS, max(-(-rate // ATTEMPTS_PER_SHARD), -(-rate // WRITES_PER_SHARD))))


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares as even as possible, the remainder one unit each to the first shares."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def spread(units: int, remaining: Mapping[int, int]) -> dict[int, int]:
    """A raise over the shards as evenly as possible, the odd units to the emptiest; no zero entries."""
    order = sorted(remaining, key=lambda i: (remaining[i], i))
    return {i: share for i, share in zip(order, split(units, len(order))) if share}


@dataclass(frozen=True)
class Attempt:
    """What one checkout of ``qty`` units sees of the sale at ``now``: its window, what the shards read hold
    (``remaining`` by shard; one shard or all of them), what the member already bought and the limit."""

    now: float
    starts_at: int
    ends_at: int
    remaining: Mapping[int, int]
    all_shards: bool
    bought: int
    member_limit: int
    qty: int


def refusal(a: Attempt) -> str | None:
    """The refusal code this attempt earns before anything is written, or None.

    Sold out is only said on every shard read (``all_shards``): one shard short means read the others."""
    phase = state(a.now, a.starts_at, a.ends_at)
    if phase == UPCOMING:
        return "sale_not_started"
    if phase == ENDED:
        return "sale_ended"
    if a.bought + a.qty > a.member_limit:
        return "sale_limit_reached"
    if a.all_shards and sum(a.remaining.values()) < a.qty:
        return "sale_sold_out"
    return None


def give_back_to(now: float, ends_at: int, closed: bool) -> str:
    """A cancelled sale unit goes back to the allotment while the sale runs, to the SKU's stock after it."""
    return "allotment" if now < ends_at and not closed else "stock"
