"""An order's points shared out to its lines and grouped into one parcel per supplier (no I/O).

Each line's weight is the points checkout charged for it (``points`` per unit × ``qty``), so a line is
allocated exactly what the member paid for it and a refund of that line can never give back more. The
general rule still holds for any total (a future order-level discount): largest remainder, so the parts
are whole points that sum exactly to the total, none negative; equal remainders go to the earlier line
(deterministic: the same order always splits the same way).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights``: whole numbers summing exactly to ``total``.

    With all weights zero the total is split evenly (earlier parts take the remainder)."""
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("a total and its weights cannot be negative")
    if not weights:
        if total:
            raise ValueError("a positive total needs at least one part")
        return []
    weights = list(weights) if sum(weights) else [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    short = total - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:short]:
        shares[i] += 1
    return shares


def line_points(total: int, lines: Sequence[Mapping[str, Any]]) -> list[int]:
    """Points allocated to each order line, weighted by what the line was charged."""
    return largest_remainder(total, [int(l["points"]) * int(l["qty"]) for l in lines])


@dataclass
class ParcelPlan:
    """One supplier's share of an order: its number (1.. by supplier id), lines, points and amount."""

    n: int
    supplier_id: str
    lines: list[dict] = field(default_factory=list)
    points: int = 0
    amount: int = 0


LINE_FIELDS = ("goods_id", "sku_id", "qty", "price", "settlement_price", "title", "spec")


def plan(total: int, lines: Sequence[Mapping[str, Any]]) -> list[ParcelPlan]:
    """The order's parcels: one per supplier, numbered in supplier id order, each line with its frozen
    prices and allocated ``points`` (the line's total, not per unit)."""
    shares = line_points(total, lines)
    parcels: dict[str, ParcelPlan] = {}
    for n, supplier in enumerate(sorted({str(l["supplier_id"]) for l in lines}), start=1):
        parcels[supplier] = ParcelPlan(n, supplier)
    for line, share in zip(lines, shares):
        parcel = parcels[str(line["supplier_id"])]
        parcel.lines.append({**{k: line.get(k) for k in LINE_FIELDS}, "points": share})
        parcel.points += share
        parcel.amount += int(line["price"]) * int(line["qty"])
    return list(parcels.values())


def shard_shares(parcel_points: Sequence[int], takes: Mapping[int, int]) -> list[dict[int, int]]:
    """Which quota shards each parcel's points were taken from, so a parcel gives back to exactly those.

    The order's points are laid end to end once in parcel order and once in shard order; each parcel owns
    the overlap of its stretch with each shard's. Both sides sum exactly: every parcel gets its points, and
    all parcels together give each shard back exactly what the order took from it."""
    if sum(parcel_points) != sum(takes.values()) or any(p < 0 for p in parcel_points):
        raise ValueError("the parcels' points must be the order's points taken from the shards")
    spans = []
    at = 0
    for shard, used in sorted(takes.items()):
        spans.append((shard, at, at + int(used)))
        at += int(used)
    shares: list[dict[int, int]] = []
    at = 0
    for points in parcel_points:
        start, end = at, at + points
        share = {shard: min(end, hi) - max(start, lo) for shard, lo, hi in spans if min(end, hi) > max(start, lo)}
        shares.append(share)
        at = end
    return shares
