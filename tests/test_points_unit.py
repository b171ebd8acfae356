"""Pure points arithmetic: which lots pay for a spend, and what has expired (no I/O)."""
from __future__ import annotations

import random

import pytest

from chalicelib.core.errors import Conflict
from chalicelib.checkout.points import allocate, dead_lots, expiring_soon, spendable

NOW = 1_800_000_000


def lots(**spec: tuple[int, int]) -> dict[str, dict]:
    return {g: {"left": left, "expires_at": at} for g, (left, at) in spec.items()}


def test_allocate_takes_soonest_expiry_first():
    w = lots(a=(500, NOW + 300), b=(1000, NOW + 100), c=(700, NOW + 200))
    assert allocate(w, 1200, NOW) == {"b": 1000, "c": 200}
    assert allocate(w, 1000, NOW) == {"b": 1000}
    assert allocate(w, 2200, NOW) == {"b": 1000, "c": 700, "a": 500}


def test_allocate_ties_break_by_grant_id():
    w = lots(z=(100, NOW + 10), y=(100, NOW + 10))
    assert allocate(w, 150, NOW) == {"y": 100, "z": 50}


def test_allocate_skips_expired_and_empty_lots():
    w = lots(old=(5000, NOW), gone=(5000, NOW - 1), empty=(0, NOW + 10), ok=(300, NOW + 1))
    assert allocate(w, 300, NOW) == {"ok": 300}
    with pytest.raises(Conflict) as refused:
        allocate(w, 301, NOW)
    assert refused.value.code == "insufficient_points"


def test_expiry_boundary_matches_the_database_condition():
    """A lot is spendable while ``expires_at > now`` — the same test the checkout transaction makes."""
    w = lots(edge=(100, NOW))
    assert spendable(w, NOW - 0.001) == 100 and spendable(w, NOW) == 0
    assert dead_lots(w, NOW) == {"edge": 100} and dead_lots(w, NOW - 1) == {}
    with pytest.raises(Conflict):
        allocate(w, 1, NOW)
    assert allocate(w, 1, NOW - 0.5) == {"edge": 1}


def test_allocate_nothing_and_empty_wallet():
    assert allocate({}, 0, NOW) == {}
    with pytest.raises(Conflict):
        allocate({}, 1, NOW)


def test_dead_lots_are_the_expired_and_the_spent_ones():
    w = lots(a=(0, NOW - 10), b=(40, NOW - 10), c=(50, NOW + 10), d=(0, NOW + 10))
    assert dead_lots(w, NOW) == {"a": 0, "b": 40, "d": 0}


def test_expiring_soon_is_sorted_and_windowed():
    w = lots(a=(10, NOW + 3 * 86400), b=(20, NOW + 86400), c=(30, NOW + 8 * 86400), d=(0, NOW + 10),
             e=(5, NOW - 1))
    assert expiring_soon(w, NOW) == [{"points": 20, "expires_at": NOW + 86400},
                                     {"points": 10, "expires_at": NOW + 3 * 86400}]


def test_values_read_back_from_dynamodb_as_decimals_work():
    from decimal import Decimal
    w = {"a": {"left": Decimal(700), "expires_at": Decimal(NOW + 5)}}
    assert allocate(w, 700, NOW) == {"a": 700} and spendable(w, NOW) == 700


@pytest.mark.parametrize("seed", range(300))
def test_allocate_properties(seed):
    rnd = random.Random(seed)
    w = {f"g{i}": {"left": rnd.choice([0, rnd.randint(1, 5000)]), "expires_at": NOW + rnd.randint(-50, 50)}
         for i in range(rnd.randint(0, 8))}
    now = NOW + rnd.choice([0, 0.5, -0.5])
    available = spendable(w, now)
    want = rnd.randint(0, available + 2000)
    if want > available:
        with pytest.raises(Conflict):
            allocate(w, want, now)
        return
    take = allocate(w, want, now)
    assert sum(take.values()) == want
    for g, used in take.items():
        assert 0 < used <= w[g]["left"] and w[g]["expires_at"] > now
    # Soonest expiry first: a lot is only touched once every sooner lot (in sort order) is used up.
    order = sorted((g for g in w if w[g]["left"] > 0 and w[g]["expires_at"] > now),
                   key=lambda g: (w[g]["expires_at"], g))
    touched = [g for g in order if g in take]
    assert touched == order[:len(touched)]
    assert all(take[g] == w[g]["left"] for g in touched[:-1])
    # Dead lots hold exactly the points that are not spendable.
    gone = dead_lots(w, now)
    assert sum(gone.values()) + available == sum(l["left"] for l in w.values())
