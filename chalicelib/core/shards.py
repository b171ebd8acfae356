"""Sharded counters: a figure kept as the sum of a few items (quota shards, prepaid balance shards, grant room),
so one hot figure is not capped by one item's write ceiling. Which shards pay for an amount is decided here (pure);
each debit is then a conditional write on the shards it takes from."""
from __future__ import annotations

import random
from typing import Mapping


def take(available: Mapping[int, int], points: int, rnd: random.Random | None = None) -> dict[int, int] | None:
    """Which shards pay for ``points``: shard → amount, or None when even their total cannot.

    One shard picked at random among those that cover it alone (spreads the writes); when none
    does but the total does, the fullest shards in turn, so an order is never refused while the
    period as a whole still has room. A debit is at least 1: a negative one would add to the counter.
    """
    if points < 1:
        raise ValueError(f"a quota debit is at least 1 point, not {points}")
    rnd = rnd or random
    whole = [i for i, amount in available.items() if amount >= points]
    if whole:
        return {rnd.choice(whole): points}
    if sum(available.values()) < points:
        return None
    takes, need = {}, points
    for i in sorted(available, key=lambda i: (-available[i], i)):
        used = min(available[i], need)
        if used > 0:
            takes[i] = used
            need -= used
        if need == 0:
            break
    return takes
