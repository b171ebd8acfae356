"""Channel pricing: explicit prices and markup rules (the loss guard is ``supply.prices``, shared with base prices).

Pure arithmetic on integers in minor currency units (fen); percentages are
basis points, so no float ever touches a price.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from chalicelib.supply.prices import MIN_PRICE

BPS = 10_000


@dataclass(frozen=True)
class Markup:
    """Costs the channel price must cover on top of the settlement price."""

    payment_bps: int = 0
    platform_bps: int = 0
    channel_bps: int = 0
    fixed: int = 0

    @classmethod
    def from_map(cls, value: Mapping) -> "Markup":
        return cls(**{k: int(value.get(k, 0)) for k in ("payment_bps", "platform_bps", "channel_bps", "fixed")})

    def as_map(self) -> dict[str, int]:
        return {"payment_bps": self.payment_bps, "platform_bps": self.platform_bps,
                "channel_bps": self.channel_bps, "fixed": self.fixed}

    def price_over(self, settlement: int) -> int:
        """Settlement × (1 + all percentages) rounded up to a fen, plus the fixed amount."""
        rate = BPS + self.payment_bps + self.platform_bps + self.channel_bps
        return -(-settlement * rate // BPS) + self.fixed


@dataclass(frozen=True)
class SkuPrice:
    """What one SKU sells for in one channel, and whether that is sellable."""

    price: int
    settlement: int
    source: str  # "explicit", "markup" or "base"
    allow_loss: bool

    @property
    def loss(self) -> int:
        return max(0, self.settlement - self.price)

    @property
    def valid(self) -> bool:
        """At least 1 fen: a markup's negative ``fixed`` over a settlement price that later fell can
        compute 0 or less, and a non-positive price would add points instead of spending them."""
        return self.price >= MIN_PRICE

    @property
    def sellable(self) -> bool:
        """A valid price, and no loss nobody accepted (e.g. after a settlement raise): else never sold."""
        return self.valid and (self.loss == 0 or self.allow_loss)


def rule_price(rule: Mapping, settlement: int) -> tuple[int, str]:
    if "price" in rule:
        return int(rule["price"]), "explicit"
    return Markup.from_map(rule["markup"]).price_over(settlement), "markup"


def sku_price(rule: Mapping | None, settlement: int, base_price: int, base_allow_loss: bool = False) -> SkuPrice:
    if not rule:
        return SkuPrice(base_price, settlement, "base", base_allow_loss)
    price, source = rule_price(rule, settlement)
    return SkuPrice(price, settlement, source, bool(rule.get("allow_loss", False)))


def points_for(price: int, points_per_yuan: int) -> int:
    """Points a member pays for a price in fen, rounded up so the channel never under-collects."""
    return -(-price * points_per_yuan // 100)
