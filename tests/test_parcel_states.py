"""The parcel transition table and the derived order state, over every combination."""
from __future__ import annotations

import itertools

import pytest

from chalicelib.orders import parcel_states as ps
from chalicelib.core.errors import Conflict


@pytest.mark.parametrize("current,action", list(itertools.product(ps.STATES, ps.ACTIONS)))
def test_every_state_and_action(current: str, action: str) -> None:
    legal = {("awaiting_shipment", "ship"): "shipped", ("shipped", "complete"): "completed",
             ("awaiting_shipment", "cancel"): "cancelled", ("shipped", "refund"): "refunded",
             ("completed", "refund"): "refunded", ("awaiting_shipment", "begin_cancel"): "cancelling",
             ("cancelling", "finish_cancel"): "cancelled", ("cancelling", "abandon_cancel"): "awaiting_shipment"}
    if (current, action) in legal:
        assert ps.next_state(current, action) == legal[(current, action)]
        assert current in ps.sources(action)
    else:
        with pytest.raises(Conflict) as refused:
            ps.next_state(current, action)
        assert refused.value.status == 409
        assert refused.value.code == {"awaiting_shipment": "parcel_not_shipped",
                                      "cancelling": "parcel_cancelling"}.get(current, f"parcel_already_{current}")
        assert current not in ps.sources(action)


def test_refusal_codes_name_the_current_state() -> None:
    with pytest.raises(Conflict) as refused:
        ps.next_state("shipped", "cancel")
    assert refused.value.code == "parcel_already_shipped"
    with pytest.raises(Conflict) as refused:
        ps.next_state("awaiting_shipment", "complete")
    assert refused.value.code == "parcel_not_shipped"
    for action in ("ship", "cancel", "begin_cancel", "refund", "complete"):  # a pending cancel holds the parcel
        with pytest.raises(Conflict) as refused:
            ps.next_state("cancelling", action)
        assert refused.value.code == "parcel_cancelling"
    with pytest.raises(ValueError):
        ps.next_state("shipped", "teleport")


def _expected(states: tuple[str, ...]) -> str:
    """The documented precedence, written out independently of the implementation."""
    s = set(states)
    if s == {"cancelled"}:
        return "cancelled"
    if s <= {"cancelled", "refunded"}:
        return "refunded"
    if "refunded" in s:
        return "partially_refunded"
    live = s - {"cancelled"}
    if live == {"completed"}:
        return "completed"
    if live <= {"shipped", "completed"}:
        return "shipped"
    if live & {"shipped", "completed"}:
        return "partially_shipped"
    return "paid"


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_order_state_over_every_combination(size: int) -> None:
    for states in itertools.product(ps.STATES, repeat=size):
        got = ps.order_state(states)
        assert got == _expected(states), states
        assert got == ps.order_state(reversed(states))  # order of parcels does not matter


def test_order_state_examples() -> None:
    assert ps.order_state(["awaiting_shipment", "awaiting_shipment"]) == "paid"
    assert ps.order_state(["shipped", "awaiting_shipment"]) == "partially_shipped"
    assert ps.order_state(["shipped", "completed"]) == "shipped"
    assert ps.order_state(["completed", "cancelled"]) == "completed"
    assert ps.order_state(["refunded", "completed"]) == "partially_refunded"
    assert ps.order_state(["refunded", "cancelled"]) == "refunded"
    assert ps.order_state(["cancelled"]) == "cancelled"
    assert ps.order_state(["cancelling", "shipped"]) == "partially_shipped"
    assert ps.order_state(["cancelling", "cancelled"]) == "paid"
    with pytest.raises(ValueError):
        ps.order_state([])
    with pytest.raises(ValueError):
        ps.order_state(["lost"])
