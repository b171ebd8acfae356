"""Statement rules: what each party is owed or owes for a period, line by line (pure: no I/O).

The books are kept per parcel (``Movement``: a parcel as it was on the business day something happened to
it, its lines with the prices frozen at checkout and the points allocated to each line). Three events count:

- **billed** — the parcel was written (the order's split, seconds after payment): its channel owes for it;
- **payable** — the supplier shipped it: from then on the platform owes the supplier its settlement price
  (the supplier's part is done, and goods are usually not returned; a refund after shipment is then
  borne by the supplier or by the platform, per supplier, ``Supplier.refunds_borne_by``);
- **returned** — it was cancelled before shipment or refunded after: its points went back to the member,
  so its channel no longer owes for it; a refund after shipment borne by the supplier also comes off the
  supplier's statement (a *clawback*).

**Channel statement.** Each billed line at the channel's price, its points, and the money those points are
worth at the channel's points rate frozen on the order: ``money(points, points_per_yuan)`` fen, rounded
**once per line**, half up (half away from zero for the negative lines of a return, so a return exactly
cancels its line). Each returned line is the same line negated: a ``refund`` if the parcel was billed in
this statement's days, an ``adjustment`` if it was billed before them (an earlier period, already closed
and never changed: the correction lands here). Then the platform's service fee under the channel's billing
plan (``fees.fee_for``). ``amount_due`` = the sum of the lines' money.

**Supplier statement.** Each payable line at its frozen settlement price × qty; each clawback negated.

**Platform margin.** Per channel: revenue (the channel statement's money, fee included) − cost (settlement
prices of the goods billed, less those of returned parcels the supplier is not paid for: cancelled before
shipment, or refunded and borne by the supplier). Loss-priced sales (a channel price below the settlement
price, which ops accepted) are listed line by line.

Every statement lists its lines in one deterministic order, whatever order the inputs came in, counts a
parcel once however often it is given, and its lines sum exactly to its totals.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Iterable

SUPPLIER, PLATFORM = "supplier", "platform"
BEARERS = (SUPPLIER, PLATFORM)

CHANNEL_COLUMNS = ("kind", "day", "order_id", "parcel_id", "goods_id", "sku_id", "qty", "unit_price", "amount",
                   "points", "money", "billed_on")
SUPPLIER_COLUMNS = ("kind", "day", "order_id", "parcel_id", "goods_id", "sku_id", "qty", "settlement_price",
                    "amount")
MARGIN_COLUMNS = ("kind", "channel", "day", "order_id", "parcel_id", "goods_id", "sku_id", "qty", "unit_price",
                  "settlement_price", "revenue", "cost", "margin", "loss")
# The columns a statement's total row sums (the other numbers, unit prices and quantities, are not sums).
SUMMED = {CHANNEL_COLUMNS: ("amount", "points", "money"), SUPPLIER_COLUMNS: ("amount",),
          MARGIN_COLUMNS: ("revenue", "cost", "margin", "loss")}
# Each statement's line kinds, in the order it lists them.
KINDS = {CHANNEL_COLUMNS: ("order", "refund", "adjustment", "fee"), SUPPLIER_COLUMNS: ("payable", "clawback"),
         MARGIN_COLUMNS: ("channel", "loss")}


@dataclass(frozen=True)
class Item:
    """One parcel line as frozen at checkout; ``points`` are the line's (all its units), not per unit."""

    goods_id: str
    sku_id: str
    qty: int
    price: int
    settlement_price: int
    points: int


@dataclass(frozen=True)
class Movement:
    """A parcel as booked on ``day``. For a return, ``billed_day`` is when it was billed, ``after_shipment``
    whether it had been shipped (a refund, not a cancel) and ``borne_by`` who bears that refund."""

    parcel_id: str
    order_id: str
    day: str
    items: tuple[Item, ...]
    points_per_yuan: int
    billed_day: str = ""
    after_shipment: bool = False
    borne_by: str = SUPPLIER

    @property
    def supplier_bears(self) -> bool:
        return self.after_shipment and self.borne_by == SUPPLIER


@dataclass(frozen=True)
class Statement:
    columns: tuple[str, ...]
    lines: tuple[tuple, ...]
    totals: dict[str, int] = field(hash=False)

    def render(self) -> bytes:
        """The export: a header, the lines, then a ``total`` row; UTF-8, ``\\n`` line ends, same bytes every time."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.lines)
        summed = SUMMED[self.columns]
        writer.writerow(["total" if c == "kind" else self.totals[c] if c in summed else "" for c in self.columns])
        return out.getvalue().encode()


def money(points: int, points_per_yuan: int) -> int:
    """What ``points`` are worth in fen at ``points_per_yuan``: ``points × 100 / rate``, rounded half up
    (half away from zero when negative). The one rounding rule, applied once per statement line."""
    if points_per_yuan <= 0:
        raise ValueError("a points rate is positive")
    if points < 0:
        return -money(-points, points_per_yuan)
    return (points * 200 + points_per_yuan) // (2 * points_per_yuan)


def _once(movements: Iterable[Movement]) -> list[Movement]:
    """Each parcel once: the same parcel given twice (a page read twice) counts once; two different
    versions of one parcel are a bug upstream, never silently picked from."""
    seen: dict[str, Movement] = {}
    for movement in movements:
        earlier = seen.setdefault(movement.parcel_id, movement)
        if earlier != movement:
            raise ValueError(f"parcel {movement.parcel_id} given twice, differently")
    return list(seen.values())


def _statement(columns: tuple[str, ...], lines: list[tuple]) -> Statement:
    """Lines in kind order, then by their own values; totals per summed column, overall and per kind."""
    kinds = KINDS[columns]
    ordered = tuple(sorted(lines, key=lambda line: (kinds.index(line[0]), line)))
    totals = {"lines": len(ordered)}
    for c in SUMMED[columns]:
        at = columns.index(c)
        totals[c] = sum(line[at] for line in ordered)
        for kind in kinds:
            totals[f"{kind}_{c}"] = sum(line[at] for line in ordered if line[0] == kind)
    return Statement(columns, ordered, totals)


def channel_statement(first_day: str, billed: Iterable[Movement], returned: Iterable[Movement],
                      fee: int) -> Statement:
    """A channel's statement over days from ``first_day`` on: orders billed, returns netted (refunds of this
    statement's own days, adjustments for earlier ones), the fee; ``amount_due`` = the money column's sum."""
    lines: list[tuple] = []
    for m in _once(billed):
        for i in m.items:
            lines.append(("order", m.day, m.order_id, m.parcel_id, i.goods_id, i.sku_id, i.qty, i.price,
                          i.price * i.qty, i.points, money(i.points, m.points_per_yuan), ""))
    for m in _once(returned):
        kind = "adjustment" if m.billed_day < first_day else "refund"
        for i in m.items:
            lines.append((kind, m.day, m.order_id, m.parcel_id, i.goods_id, i.sku_id, i.qty, i.price,
                          -i.price * i.qty, -i.points, -money(i.points, m.points_per_yuan), m.billed_day))
    lines.append(("fee", "", "", "", "", "", 0, 0, 0, 0, fee, ""))
    statement = _statement(CHANNEL_COLUMNS, lines)
    statement.totals["amount_due"] = statement.totals["money"]
    return statement


def supplier_statement(payable: Iterable[Movement], returned: Iterable[Movement]) -> Statement:
    """A supplier's statement: parcels it shipped at settlement prices, less refunds after shipment that it
    bears (``returned`` may hold others: a refund the platform bears does not touch the supplier)."""
    lines: list[tuple] = []
    for m in _once(payable):
        for i in m.items:
            lines.append(("payable", m.day, m.order_id, m.parcel_id, i.goods_id, i.sku_id, i.qty,
                          i.settlement_price, i.settlement_price * i.qty))
    for m in _once(returned):
        if m.supplier_bears:
            for i in m.items:
                lines.append(("clawback", m.day, m.order_id, m.parcel_id, i.goods_id, i.sku_id, i.qty,
                              i.settlement_price, -i.settlement_price * i.qty))
    statement = _statement(SUPPLIER_COLUMNS, lines)
    statement.totals["amount_due"] = statement.totals["amount"]
    return statement


@dataclass(frozen=True)
class ChannelMargin:
    """One channel's contribution to the platform margin: its figures and its loss-priced lines."""

    channel: str
    revenue: int
    cost: int
    losses: tuple[tuple, ...]

    def as_dict(self) -> dict:
        return {"channel": self.channel, "revenue": self.revenue, "cost": self.cost,
                "losses": [list(line) for line in self.losses]}

    @classmethod
    def from_dict(cls, data: dict) -> "ChannelMargin":
        return cls(data["channel"], int(data["revenue"]), int(data["cost"]),
                   tuple(tuple(line) for line in data["losses"]))


def channel_margin(channel: str, statement: Statement, billed: Iterable[Movement],
                   returned: Iterable[Movement]) -> ChannelMargin:
    """Revenue is the channel statement's money (fee included); cost is what the platform pays suppliers for
    the goods billed, less what it will not pay for the goods returned (cancelled before shipment, or
    refunded with the supplier bearing it); loss-priced billed lines are listed."""
    cost = 0
    losses = []
    for m in _once(billed):
        for i in m.items:
            line_cost = i.settlement_price * i.qty
            cost += line_cost
            if i.price < i.settlement_price:
                losses.append(("loss", channel, m.day, m.order_id, m.parcel_id, i.goods_id, i.sku_id, i.qty, i.price,
                               i.settlement_price, 0, 0, 0, (i.settlement_price - i.price) * i.qty))
    for m in _once(returned):
        if not m.after_shipment or m.supplier_bears:
            cost -= sum(i.settlement_price * i.qty for i in m.items)
    return ChannelMargin(channel, statement.totals["money"], cost, tuple(sorted(losses)))


def platform_statement(margins: Iterable[ChannelMargin]) -> Statement:
    """The platform's margin: a row per channel (revenue, cost, margin), then every loss-priced line; the
    totals are the platform's revenue, cost and margin and the sum of the losses carried."""
    lines: list[tuple] = []
    for m in sorted(margins, key=lambda m: m.channel):
        lines.append(("channel", m.channel, "", "", "", "", "", 0, 0, 0, m.revenue, m.cost, m.revenue - m.cost, 0))
        lines.extend(m.losses)
    return _statement(MARGIN_COLUMNS, lines)
