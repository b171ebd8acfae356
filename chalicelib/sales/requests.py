"""The bodies ops send to schedule and change a sale, bounded (pydantic).

Kept apart from ``sales`` so the checkout path, which imports ``sales``, never loads pydantic: the routes import
this module when a request arrives, as ``core.web.schemas`` does for the other bodies."""
from __future__ import annotations

from pydantic import Field

from chalicelib.core.schemas import EPOCH_MAX, POINTS_MAX, Strict
from chalicelib.sales import rules


class SaleCreate(Strict):
    sale_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    goods_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    sku_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    price_points: int = Field(ge=1, le=POINTS_MAX)
    allotment: int = Field(ge=1, le=rules.MAX_ALLOTMENT)
    starts_at: int = Field(ge=0, le=EPOCH_MAX)
    ends_at: int = Field(gt=0, le=EPOCH_MAX)
    member_limit: int = Field(default=1, ge=1, le=rules.MAX_LIMIT)
    # Checkout attempts per second ops expect on it at the start: decides the shards (``rules.shards_for``).
    expected_rate: int = Field(default=1_000, ge=1, le=1_000_000)
    shards: int | None = Field(default=None, ge=1, le=rules.MAX_SHARDS)  # or say it outright


class SaleEdit(Strict):
    """Before the start every term but the SKU may change; while it runs only the allotment."""

    price_points: int | None = Field(default=None, ge=1, le=POINTS_MAX)
    allotment: int | None = Field(default=None, ge=1, le=rules.MAX_ALLOTMENT)
    starts_at: int | None = Field(default=None, ge=0, le=EPOCH_MAX)
    ends_at: int | None = Field(default=None, gt=0, le=EPOCH_MAX)
    member_limit: int | None = Field(default=None, ge=1, le=rules.MAX_LIMIT)
