"""Property-style tests of the points allocation: random orders, every split exact, never negative."""
from __future__ import annotations

import random

import pytest

from chalicelib.orders.allocation import largest_remainder, line_points, plan, shard_shares


def _random_lines(rng: random.Random) -> list[dict]:
    lines = []
    for i in range(rng.randint(1, 20)):
        price = rng.randint(0, 500_000)
        lines.append({"goods_id": f"g{i}", "sku_id": f"s{i}", "qty": rng.randint(1, 99), "price": price,
                      "points": rng.choice([0, price // 10, rng.randint(0, 10**6)]),
                      "settlement_price": rng.randint(0, price + 1), "supplier_id": f"sup{rng.randint(1, 5)}",
                      "title": f"t{i}", "spec": "x"})
    return lines


@pytest.mark.parametrize("seed", range(400))
def test_every_random_split_is_exact_and_never_negative(seed: int) -> None:
    rng = random.Random(seed)
    weights = [rng.choice([0, rng.randint(0, 10), rng.randint(0, 10**9)]) for _ in range(rng.randint(1, 30))]
    total = rng.choice([0, 1, rng.randint(0, 100), rng.randint(0, 10**12)])
    shares = largest_remainder(total, weights)
    assert sum(shares) == total
    assert all(s >= 0 for s in shares)
    assert len(shares) == len(weights)
    if sum(weights):
        for share, weight in zip(shares, weights):  # each part within one point of its exact share
            assert abs(share - total * weight / sum(weights)) < 1
            if weight == 0:
                assert share == 0
    assert shares == largest_remainder(total, weights)  # deterministic


@pytest.mark.parametrize("seed", range(200))
def test_random_orders_split_into_parcels_that_sum_to_the_order(seed: int) -> None:
    rng = random.Random(1000 + seed)
    lines = _random_lines(rng)
    charged = sum(l["points"] * l["qty"] for l in lines)
    # the order's points as checkout charges them, and any other total (a discount, a rounding change)
    for total in (charged, rng.randint(0, charged + 10**6)):
        parcels = plan(total, lines)
        assert sum(p.points for p in parcels) == total
        assert sum(p.amount for p in parcels) == sum(l["price"] * l["qty"] for l in lines)
        assert [p.n for p in parcels] == list(range(1, len(parcels) + 1))
        assert [p.supplier_id for p in parcels] == sorted({l["supplier_id"] for l in lines})
        assert sum(len(p.lines) for p in parcels) == len(lines)
        for p in parcels:
            assert p.points == sum(l["points"] for l in p.lines)
            assert all(l["points"] >= 0 for l in p.lines)
    # as charged, each line gets exactly what the member paid for it: a refund can never exceed that
    assert line_points(charged, lines) == [l["points"] * l["qty"] for l in lines]


def test_ties_go_to_the_earlier_line() -> None:
    assert largest_remainder(1, [1, 1, 1]) == [1, 0, 0]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder(5, [0, 0]) == [3, 2]  # no weight at all: evenly, earlier first
    assert largest_remainder(10, [1, 2]) == [3, 7]  # 3.33 / 6.67: the larger remainder takes the point


def test_lines_keep_frozen_prices_and_group_per_supplier() -> None:
    lines = [{"goods_id": "a", "sku_id": "1", "qty": 2, "price": 300, "points": 30, "settlement_price": 200,
              "supplier_id": "s2", "title": "A", "spec": "red"},
             {"goods_id": "b", "sku_id": "1", "qty": 1, "price": 100, "points": 10, "settlement_price": 80,
              "supplier_id": "s1", "title": "B", "spec": "big"}]
    first, second = plan(70, lines)
    assert (first.n, first.supplier_id, first.points, first.amount) == (1, "s1", 10, 100)
    assert second.lines == [{"goods_id": "a", "sku_id": "1", "qty": 2, "price": 300, "settlement_price": 200,
                             "title": "A", "spec": "red", "points": 60}]


def test_negative_or_impossible_input_is_refused() -> None:
    with pytest.raises(ValueError):
        largest_remainder(-1, [1])
    with pytest.raises(ValueError):
        largest_remainder(1, [1, -1])
    with pytest.raises(ValueError):
        largest_remainder(1, [])
    assert largest_remainder(0, []) == []


@pytest.mark.parametrize("seed", range(200))
def test_each_parcel_gives_back_to_the_shards_its_points_came_from(seed: int) -> None:
    rng = random.Random(5000 + seed)
    takes = {shard: rng.randint(0, 10**6) for shard in rng.sample(range(32), rng.randint(1, 32))}
    total = sum(takes.values())
    parcels = largest_remainder(total, [rng.randint(0, 100) for _ in range(rng.randint(1, 10))])
    shares = shard_shares(parcels, takes)
    assert [sum(s.values()) for s in shares] == parcels
    for shard, used in takes.items():
        assert sum(s.get(shard, 0) for s in shares) == used
    assert all(v > 0 for s in shares for v in s.values())
    with pytest.raises(ValueError):
        shard_shares([p + 1 for p in parcels], takes)
