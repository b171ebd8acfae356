"""The ground floor of every table: how a table is named and reached (``_meta``), how an index is declared, how
an owned item is read; and core's own tables (the audit trail, rate-limit counters).

Each area declares its tables in its own ``models.py``; the one list of them all, the shared client and table
creation are above the areas, in ``chalicelib/tables.py``.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection
from pynamodb.models import Model

from chalicelib.core import config

M = TypeVar("M", bound=Model)


def _meta(name: str) -> type:
    return type(
        "Meta",
        (),
        {
            "table_name": config.table_name(name),
            "region": config.REGION,
            "host": config.DYNAMODB_ENDPOINT,
            "billing_mode": "PAY_PER_REQUEST",
            "connect_timeout_seconds": 2,
            "read_timeout_seconds": 5,
            "max_retry_attempts": 3,
        },
    )


def _index_meta(name: str) -> type:
    return type("Meta", (), {"index_name": name, "projection": AllProjection()})


def get_owned(model: type[M], key: str, owner_attr: str, owner: str) -> M | None:
    """The item if it exists and belongs to ``owner``, else None: callers answer both cases alike,
    so nobody learns that another owner's item exists."""
    try:
        item = model.get(key)
    except DoesNotExist:
        return None
    return item if getattr(item, owner_attr) == owner else None


class Audit(Model):
    """Who changed what, when, from which value to which: one row per change."""

    Meta = _meta("audit")
    entity = UnicodeAttribute(hash_key=True)
    at = UnicodeAttribute(range_key=True)
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    field = UnicodeAttribute(null=True)
    old = UnicodeAttribute(null=True)
    new = UnicodeAttribute(null=True)


class RateCounter(Model):
    """Uses of one rate-limited scope in one fixed window (``ratelimit.hit``); expires after it."""

    Meta = _meta("rate-counters")
    key = UnicodeAttribute(hash_key=True)  # "{scope}#{window start}"
    count = NumberAttribute(default=0)
    expires_at = TTLAttribute()


def plain(value: Any) -> Any:
    """A map attribute's value (a whole map, or one entry of a list of maps) as a plain dict, for a view or a rule:
    an item read from DynamoDB holds ``MapAttribute``s, one built in this process may hold dicts; None stays None."""
    if value is None:
        return None
    return value.as_dict() if hasattr(value, "as_dict") else dict(value)
