"""Who ships a member's parcel: its supplier's name, as the member sees it on the order and goods pages.

Channels' views of orders stay neutral ("Parcel 1 of 2"); only the member's own views name the supplier.
A name changes rarely, so each Lambda container keeps the names it read for ``NAME_SECONDS`` instead of
reading them on every page."""
from __future__ import annotations

import time
from typing import Iterable

from chalicelib.supply.models import Supplier

NAME_SECONDS = 300.0
_known: dict[str, tuple[str, float]] = {}  # supplier id → (name, when read)


def names_of(supplier_ids: Iterable[str], now: float | None = None) -> dict[str, str]:
    """Each supplier's name (one ``BatchGetItem`` for those not read lately); an unknown id is left out."""
    now = time.monotonic() if now is None else now
    wanted = {s for s in supplier_ids if s}
    stale = sorted(s for s in wanted if s not in _known or now - _known[s][1] >= NAME_SECONDS)
    if stale:
        for supplier in Supplier.batch_get(stale, attributes_to_get=["supplier_id", "name"]):
            _known[supplier.supplier_id] = (supplier.name, now)
    return {s: _known[s][0] for s in wanted if s in _known}
