"""Points arithmetic with no I/O: which wallet lots pay for a spend, and what has expired."""
from __future__ import annotations

from typing import Mapping

from chalicelib.core.errors import Conflict


def spendable(lots: Mapping[str, Mapping], now: float) -> int:
    return sum(int(l["left"]) for l in lots.values() if int(l["expires_at"]) > now)


def allocate(lots: Mapping[str, Mapping], points: int, now: float) -> dict[str, int]:
    """Take ``points`` from unexpired lots, soonest expiry first, so members lose as little as possible.

    A negative spend would credit the lots it "takes" from: refused."""
    if points < 0:
        raise ValueError(f"a spend cannot be negative ({points})")
    take: dict[str, int] = {}
    need = points
    for grant_id, lot in sorted(lots.items(), key=lambda kv: (int(kv[1]["expires_at"]), kv[0])):
        if need == 0:
            break
        left = int(lot["left"])
        if left <= 0 or int(lot["expires_at"]) <= now:
            continue
        used = min(left, need)
        take[grant_id] = used
        need -= used
    if need:
        raise Conflict("insufficient_points", f"the member has {spendable(lots, now)} points; {points} are needed")
    return take


def dead_lots(lots: Mapping[str, Mapping], now: float) -> dict[str, int]:
    """Lots that can never be spent again: past their expiry (with what they still hold), or spent to 0."""
    return {g: int(l["left"]) for g, l in lots.items() if int(l["expires_at"]) <= now or int(l["left"]) <= 0}


def expiring_soon(lots: Mapping[str, Mapping], now: float, within: int = 7 * 86400) -> list[dict]:
    return sorted(({"points": int(l["left"]), "expires_at": int(l["expires_at"])} for l in lots.values()
                   if now < int(l["expires_at"]) <= now + within and int(l["left"]) > 0),
                  key=lambda x: x["expires_at"])


def totals(granted: int, spent: int, returned: int, expired: int, lots: Mapping[str, Mapping], now: float) -> dict:
    """What a member's points page shows, adding up by construction: received − spent + returned − expired =
    available. The wallet's ``expired`` counts only the lots already folded out (``wallets.sweep``); a lot
    past its expiry that no sweep has folded yet (a concurrent write refused it) is counted as expired here
    too, since it is no longer available."""
    unfolded = sum(max(int(l["left"]), 0) for l in lots.values() if int(l["expires_at"]) <= now)
    available = spendable(lots, now)
    expired_all = expired + unfolded
    return {"received": granted, "spent": spent, "returned": returned, "expired": expired_all,
            "available": available}
