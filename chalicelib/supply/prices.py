"""The loss guard, wherever a price is set (a goods' base price here, a channel's price in ``channels.pricing``):
no price under 1 fen, and none below the settlement price unless ops carry the loss. Pure."""
from __future__ import annotations

from chalicelib.core.errors import Unprocessable

MIN_PRICE = 1  # fen: nothing sells for less, whatever a rule or an accepted loss says


def guard_loss(price: int, settlement: int, allow_loss: bool, field: str) -> None:
    """Refuse, where a price is set, one under 1 fen (always), or below settlement unless ops carry the loss."""
    if price < MIN_PRICE:
        raise Unprocessable("price_not_positive", f"price {price} is under the minimum of {MIN_PRICE} fen", field)
    if price < settlement and not allow_loss:
        raise Unprocessable(
            "price_below_settlement",
            f"price {price} is below the settlement price {settlement}; set allow_loss to carry the loss",
            field,
        )
