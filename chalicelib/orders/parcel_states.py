"""Parcel states and the member's order state derived from them: the one transition table (no I/O).

A parcel: ``awaiting_shipment`` → ``shipped`` → ``completed``; ``awaiting_shipment`` → ``cancelled``
(before shipment, everything goes back); ``shipped`` / ``completed`` → ``refunded`` (points back, the goods
usually stay with the member). Nothing leaves ``cancelled`` or ``refunded``.

A remote-mode cancel waits for the channel to give the points back, so it goes through ``cancelling``:
``awaiting_shipment`` → ``cancelling`` in the same write that starts the cancel, then ``cancelled`` once the
channel gave them back, or back to ``awaiting_shipment`` if the channel refused. A cancelling parcel cannot be
shipped, cancelled again, completed or refunded: otherwise a supplier could ship goods whose points the member
is being given back (points back, goods kept, the supplier paid and clawed back for one parcel).
"""
from __future__ import annotations

from typing import Iterable

from chalicelib.core.errors import Conflict

AWAITING = "awaiting_shipment"
CANCELLING = "cancelling"
SHIPPED = "shipped"
COMPLETED = "completed"
CANCELLED = "cancelled"
REFUNDED = "refunded"
STATES = (AWAITING, CANCELLING, SHIPPED, COMPLETED, CANCELLED, REFUNDED)

# (from state, action) → to state. Anything not here is illegal.
TRANSITIONS: dict[tuple[str, str], str] = {
    (AWAITING, "ship"): SHIPPED,
    (SHIPPED, "complete"): COMPLETED,
    (AWAITING, "cancel"): CANCELLED,
    (AWAITING, "begin_cancel"): CANCELLING,  # remote: out of shippable state while the channel gives points back
    (CANCELLING, "finish_cancel"): CANCELLED,  # the channel gave them back
    (CANCELLING, "abandon_cancel"): AWAITING,  # the channel refused: nothing moved, the parcel ships as before
    (SHIPPED, "refund"): REFUNDED,
    (COMPLETED, "refund"): REFUNDED,
}
ACTIONS = tuple(sorted({action for _, action in TRANSITIONS}))

# The code an illegal transition answers with: it names the state the parcel is in.
REFUSAL_CODES = {AWAITING: "parcel_not_shipped", CANCELLING: "parcel_cancelling", SHIPPED: "parcel_already_shipped",
                 COMPLETED: "parcel_already_completed", CANCELLED: "parcel_already_cancelled",
                 REFUNDED: "parcel_already_refunded"}

# Order states, derived from its parcels (never stored apart from them).
PAID = "paid"
PARTIALLY_SHIPPED = "partially_shipped"
ORDER_SHIPPED = "shipped"
ORDER_COMPLETED = "completed"
PARTIALLY_REFUNDED = "partially_refunded"
ORDER_REFUNDED = "refunded"
ORDER_CANCELLED = "cancelled"


def sources(action: str) -> list[str]:
    """The states ``action`` may start from (the condition of its conditional write)."""
    return [s for (s, a) in TRANSITIONS if a == action]


def next_state(current: str, action: str) -> str:
    """The state ``action`` leads to from ``current``, or a 409 whose code names ``current``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown parcel action {action}")
    to = TRANSITIONS.get((current, action))
    if to is None:
        raise refusal(current, action)
    return to


def refusal(current: str, action: str) -> Conflict:
    return Conflict(REFUSAL_CODES[current], f"cannot {action} a parcel that is {current.replace('_', ' ')}")


def order_state(states: Iterable[str]) -> str:
    """The member's order state from its parcels' states, by this precedence:

    1. every parcel cancelled → ``cancelled``;
    2. every parcel cancelled or refunded (at least one refunded) → ``refunded``;
    3. any parcel refunded → ``partially_refunded`` (refunds matter more to the member than shipping);
    4. of the parcels not cancelled: all completed → ``completed``; all shipped or completed → ``shipped``;
       any shipped or completed → ``partially_shipped``; else → ``paid`` (a cancelled parcel next to live
       ones does not change what the live ones say; a ``cancelling`` one is still live, not yet shipped).
    """
    states = list(states)
    if not states:
        raise ValueError("an order state needs at least one parcel")
    unknown = set(states) - set(STATES)
    if unknown:
        raise ValueError(f"unknown parcel states {sorted(unknown)}")
    if all(s == CANCELLED for s in states):
        return ORDER_CANCELLED
    if all(s in (CANCELLED, REFUNDED) for s in states):
        return ORDER_REFUNDED
    if REFUNDED in states:
        return PARTIALLY_REFUNDED
    live = [s for s in states if s != CANCELLED]
    if all(s == COMPLETED for s in live):
        return ORDER_COMPLETED
    if all(s in (SHIPPED, COMPLETED) for s in live):
        return ORDER_SHIPPED
    if any(s in (SHIPPED, COMPLETED) for s in live):
        return PARTIALLY_SHIPPED
    return PAID
