"""The flash-sale capacity model (``bench/capacity.py``) at a small size: a real burst through the counting proxy
on the session's system, its figures sane, under every limit at a small target; at the default one the hottest
quota shard and sale shard under their write limit (each quota shard its own partition key, so a sale's paid orders
spread over the channel's quota shards as over the sale's), and the sale buffer keeps Step Functions starts under
theirs. The other keys at the default target depend on how many attempts reach them before the sell-out is known
and on how many units each of this burst's few members buys, which a burst this small on a shared machine does not
fix: the full run in the README measures them."""
from __future__ import annotations

from bench import capacity
from chalicelib.sales import rules


def test_a_small_burst_is_measured_and_judged_against_the_limits(system):
    shards = rules.shards_for(10_000)  # sized for the default target, the quota's as the sale's
    figures = capacity.measure(system, attempts=60, members=20, allotment=shards, shards=shards, workers=16,
                               sequential=3, quota_shards=shards)
    assert (figures.attempts, figures.paid) == (60, shards)
    assert set(figures.outcomes) <= {"201", "409 sale_sold_out", "409 sale_limit_reached"}
    assert figures.sfn_starts == 0  # a sale's paid orders start from the buffer, not from the request
    assert any(k.startswith("sale-shards:") for k in figures.writes)
    assert not any(k.startswith("stock:") for k in figures.writes)  # a sale line never writes the Stock item
    quota_keys = {k for k in figures.writes if k.startswith("quota-shards:")}
    assert len(quota_keys) > 1  # the quota debits land on several partition keys, one per shard taken
    assert sum(figures.writers[k] for k in quota_keys) >= figures.paid  # every paid order debited one
    rows, cost = capacity.model(figures, rate=50, units=10, memory_mb=1024, cache_seconds=1.0)
    assert capacity.over(rows) == [], rows
    assert 0 < cost["usd"]["total"] < 10 and cost["transitions_per_order"] == capacity.happy_path_transitions() == 5
    rows, _ = capacity.model(figures, rate=10_000, units=2_000, memory_mb=1024, cache_seconds=1.0)
    writes = {r["figure"]: r for r in rows if r["figure"].startswith("write key")}
    for table in capacity.SHARDED_TABLES:  # the hot path's shared items: the quota's shards, the sale's
        row = writes[f"write key {table}:(hottest of {shards}) WCU/s (selling peak)"]
        assert 0 < row["value"] < row["limit"], row
    failed = capacity.over(rows)
    assert not any(f.startswith("Step Functions") for f in failed), failed  # the buffer keeps starts paced
