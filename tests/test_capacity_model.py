"""The flash-sale capacity model (``bench/capacity.py``) at a small size: a real burst through the counting proxy
on the session's system, its figures sane, under every limit at a small target and over at the default one (where
the channel's quota partition is what breaks first; the sale buffer keeps Step Functions starts under theirs)."""
from __future__ import annotations

from bench import capacity


def test_a_small_burst_is_measured_and_judged_against_the_limits(system):
    figures = capacity.measure(system, attempts=60, members=20, allotment=10, shards=2, workers=16, sequential=3)
    assert (figures.attempts, figures.paid) == (60, 10)
    assert set(figures.outcomes) <= {"201", "409 sale_sold_out", "409 sale_limit_reached"}
    assert figures.sfn_starts == 0  # a sale's paid orders start from the buffer, not from the request
    assert any(k.startswith("sale-shards:") for k in figures.writes)
    assert not any(k.startswith("stock:") for k in figures.writes)  # a sale line never writes the Stock item
    rows, cost = capacity.model(figures, rate=50, units=10, memory_mb=1024, cache_seconds=1.0)
    assert capacity.over(rows) == [], rows
    assert 0 < cost["usd"]["total"] < 10 and cost["transitions_per_order"] == capacity.happy_path_transitions() == 5
    rows, _ = capacity.model(figures, rate=10_000, units=2_000, memory_mb=1024, cache_seconds=1.0)
    failed = capacity.over(rows)
    assert any(f.startswith("write key quotas:") for f in failed), failed  # the channel's quota partition
    assert not any(f.startswith("Step Functions") for f in failed), failed  # the buffer keeps starts paced
