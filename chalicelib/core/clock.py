"""The clock: the one way to write "now" (UTC ISO-8601, milliseconds) that every table's timestamps use."""
from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
