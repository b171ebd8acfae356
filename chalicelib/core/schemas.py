"""Validated shapes of what callers send (Powertools Parser / pydantic)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator, model_validator

from chalicelib.core.errors import Unprocessable

Code = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
Phone = Field(pattern=r"^\+?[0-9 -]{5,20}$")
Text = Field(min_length=1, max_length=200)
# Bounds shared by many fields (README, "Input bounds"): every string that becomes a key and every number
# that is stored has one, so nothing reaches DynamoDB that it refuses (keys under 2,048 bytes, 38 digits).
Ref = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]  # sku ids, goods ids as keys of maps and lists
ImageRef = Annotated[str, Field(min_length=1, max_length=2048)]
EPOCH_MAX = 4_102_444_800  # 2100-01-01T00:00:00Z: any Unix time we store is before it
POINTS_MAX = 10**12  # caps, quotas, balances: far above any real figure, far below 38 digits


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BankAccount(Strict):
    bank: str = Text
    account_name: str = Text
    account_no: str = Field(pattern=r"^[0-9 -]{6,40}$")


class SupplierApplication(Strict):
    name: str = Text
    contact_name: str = Text
    phone: str = Phone
    email: Optional[str] = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    licence_no: str = Field(pattern=r"^[A-Za-z0-9-]{6,40}$")
    bank_account: BankAccount


class Reason(Strict):
    reason: str = Field(min_length=1, max_length=500)


class KeyRotation(Strict):
    revoke_existing: bool = False


class SkuDraft(Strict):
    sku_id: str = Code
    spec: str = Text
    settlement_price: int = Field(gt=0, le=100_000_000)
    stock: int = Field(ge=0, le=10_000_000)


Locale = Literal["zh-CN", "en"]  # the store's languages (``channels.locales``)


class LocaleText(Strict):
    """Goods' title and description in one store language."""

    title: str = Text
    description: str = Field(default="", max_length=5000)


class GoodsDraft(Strict):
    ref: str = Code
    title: str = Text
    description: str = Field(default="", max_length=5000)
    locales: dict[Locale, LocaleText] = Field(default_factory=dict)  # per store language; title/description stay
    images: list[ImageRef] = Field(default_factory=list, max_length=10)
    category: str = Field(min_length=1, max_length=60)
    skus: list[SkuDraft] = Field(min_length=1, max_length=50)

    @field_validator("skus")
    @classmethod
    def unique_skus(cls, skus: list[SkuDraft]) -> list[SkuDraft]:
        ids = [s.sku_id for s in skus]
        if len(ids) != len(set(ids)):
            raise ValueError("sku_id values must be unique")
        return skus


class GoodsEdit(Strict):
    title: Optional[str] = Field(default=None, min_length=1, max_length=200)
    description: Optional[str] = Field(default=None, max_length=5000)
    locales: Optional[dict[Locale, LocaleText]] = None  # replaces every language's text given before
    images: Optional[list[ImageRef]] = Field(default=None, max_length=10)
    category: Optional[str] = Field(default=None, min_length=1, max_length=60)


class SkuChange(Strict):
    spec: Optional[str] = Field(default=None, min_length=1, max_length=200)
    settlement_price: Optional[int] = Field(default=None, gt=0, le=100_000_000)
    stock: Optional[int] = Field(default=None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def not_empty(self) -> "SkuChange":
        if self.spec is None and self.settlement_price is None and self.stock is None:
            raise ValueError("give spec, settlement_price or stock")
        return self


class GoodsApproval(Strict):
    base_prices: dict[Ref, int] = Field(min_length=1, max_length=50)
    allow_loss: bool = False

    @field_validator("base_prices")
    @classmethod
    def positive(cls, prices: dict[str, int]) -> dict[str, int]:
        if any(not 0 < p <= 100_000_000 for p in prices.values()):
            raise ValueError("prices must be from 1 to 100000000 fen")
        return prices


class RevisionApproval(Strict):
    version: Optional[int] = Field(default=None, ge=1, le=1_000_000_000)  # the goods version ops reviewed


class ChannelFields(Strict):
    name: Optional[str] = Field(default=None, min_length=1, max_length=200)
    contact_name: Optional[str] = Field(default=None, min_length=1, max_length=200)
    phone: Optional[str] = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")
    settlement_period: Optional[Literal["weekly", "monthly"]] = None
    points_mode: Optional[Literal["hosted", "remote"]] = None
    points_per_yuan: Optional[int] = Field(default=None, ge=1, le=100_000)
    member_points_cap: Optional[int] = Field(default=None, ge=0, le=POINTS_MAX)
    redemption_quota: Optional[int] = Field(default=None, ge=0, le=POINTS_MAX)
    api_base_url: Optional[HttpUrl] = None
    entry_mode: Optional[Literal["signed", "code"]] = None
    sandbox: Optional[bool] = None
    cart_enabled: Optional[bool] = None
    default_locale: Optional[Locale] = None  # the store's language until the member picks one
    payment_auth: Optional[Literal["channel_password", "otp"]] = None
    shipping_deadline_hours: Optional[int] = Field(default=None, ge=1, le=720)  # up to 30 days to ship
    receipt_days: Optional[int] = Field(default=None, ge=1, le=60)  # receipt window after the deadline
    refund_window_days: Optional[int] = Field(default=None, ge=0, le=365)  # refund requests after completion
    webhook_url: Optional[HttpUrl] = None  # order events go here (``webhooks``); same address rules as api_base_url
    # How long a call to the channel's API may wait for its answer (``channel_api``); unset: the default (3 s).
    api_timeout_seconds: Optional[float] = Field(default=None, ge=0.5, le=10, allow_inf_nan=False)


class ChannelCreate(ChannelFields):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,31}$")
    name: str = Text
    contact_name: str = Text
    phone: str = Phone
    settlement_period: Literal["weekly", "monthly"] = "monthly"
    points_mode: Literal["hosted", "remote"]
    points_per_yuan: int = Field(ge=1, le=100_000)
    member_points_cap: int = Field(ge=0, le=POINTS_MAX)
    redemption_quota: int = Field(ge=0, le=POINTS_MAX)


class SecretRotation(Strict):
    overlap_seconds: int = Field(default=86_400, ge=0, le=7 * 86_400)


class MarkupRule(Strict):
    payment_bps: int = Field(default=0, ge=0, le=10_000)
    platform_bps: int = Field(default=0, ge=0, le=10_000)
    channel_bps: int = Field(default=0, ge=0, le=10_000)
    fixed: int = Field(default=0, ge=-100_000_000, le=100_000_000)


class SkuRule(Strict):
    price: Optional[int] = Field(default=None, gt=0, le=100_000_000)
    markup: Optional[MarkupRule] = None
    allow_loss: bool = False

    @model_validator(mode="after")
    def one_rule(self) -> "SkuRule":
        if (self.price is None) == (self.markup is None):
            raise ValueError("give exactly one of price or markup")
        return self


class PoolPricing(Strict):
    prices: dict[Ref, SkuRule] = Field(default_factory=dict, max_length=50)


class UploadRequest(Strict):
    kind: Literal["image", "goods_csv", "shipments"]
    content_type: str = Field(min_length=3, max_length=100)


def validated(model: type[BaseModel], data: object) -> BaseModel:
    """Parse ``data`` into ``model`` or raise ``validation_error`` naming the field."""
    if not isinstance(data, dict):
        raise Unprocessable("validation_error", "the body must be a JSON object", "body")
    try:
        return model.model_validate(data)  # what Powertools' parse does for a dict, without its ~60 ms import
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise Unprocessable("validation_error", f"{field}: {first.get('msg')}", field) from None


class TopicInput(Strict):
    title: str = Text
    position: int = Field(default=0, ge=0, le=10_000)
    goods_ids: list[Ref] = Field(default_factory=list, max_length=100)


class SignatureCheck(Strict):
    """A sandbox signature check: what the channel sent, and for a server-to-server call its method, path
    (relative to our base, as sent) and body. Values are taken exactly, never trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    params: dict[str, str] = Field(max_length=50)
    canonical: Optional[str] = Field(default=None, max_length=20_000)
    method: Optional[Literal["GET", "POST", "PUT", "PATCH", "DELETE"]] = None
    path: Optional[str] = Field(default=None, pattern=r"^/[!-~]{0,1000}$")
    body: Optional[str] = Field(default=None, max_length=100_000)

    @field_validator("params")
    @classmethod
    def bounded_values(cls, params: dict[str, str]) -> dict[str, str]:
        if any(len(k) > 200 or len(v) > 4096 for k, v in params.items()):
            raise ValueError("keys are at most 200 and values at most 4096 characters")
        return params

    @model_validator(mode="after")
    def method_with_path(self) -> "SignatureCheck":
        if (self.method is None) != (self.path is None):
            raise ValueError("give method and path together (a server-to-server call), or neither (an entry link)")
        if self.body is not None and self.method is None:
            raise ValueError("a body belongs to a server-to-server call: give method and path too")
        return self


class OrderLine(Strict):
    goods_id: str = Code
    sku_id: str = Code
    qty: int = Field(default=1, ge=1, le=99)
    # Bought in this flash sale (``GET /api/{code}/sales``): its price, its allotment, its per-member limit.
    sale_id: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")


class Address(Strict):
    """Where the member wants the goods: shown only to the member and to the supplier of each parcel."""

    name: str = Field(min_length=1, max_length=50)
    phone: str = Phone
    lines: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(min_length=1, max_length=4)


class OrderRequest(Strict):
    lines: list[OrderLine] = Field(min_length=1, max_length=20)
    # Optional in the API, so callers from before it keep working (such an order shows its suppliers no
    # ship-to); the H5 store's buy flow always asks for one.
    address: Optional[Address] = None
    password: Optional[str] = Field(default=None, min_length=1, max_length=64)
    otp: Optional[str] = Field(default=None, pattern=r"^[0-9]{6}$")
    # Checkout of the member's cart: the cart version read; the placed order empties the cart if still that one.
    cart_version: Optional[int] = Field(default=None, ge=0, le=1_000_000_000)


class Shipment(Strict):
    carrier: str = Field(min_length=1, max_length=40)
    tracking_no: str = Field(pattern=r"^[A-Za-z0-9-]{4,40}$")


class CartLineQty(Strict):
    qty: int = Field(ge=1, le=99)


class GrantRequest(Strict):
    grant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    member_id: str = Field(pattern=r"^[^\x00-\x1f\x7f%]{1,64}$")  # ``web.MEMBER_ID``: one alphabet everywhere
    points: int = Field(gt=0, le=1_000_000_000)
    expires_at: int = Field(gt=0, le=EPOCH_MAX)


class PeriodOpen(Strict):
    period_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    starts_at: int = Field(ge=0, le=EPOCH_MAX)
    ends_at: int = Field(gt=0, le=EPOCH_MAX)
    quota_points: Optional[int] = Field(default=None, ge=0, le=POINTS_MAX)
    shards: int = Field(default=1, ge=1, le=32)  # quota shard items (``quotas.MAX_SHARDS``) for a hot channel


class QuotaRaise(Strict):
    points: int = Field(gt=0, le=10_000_000_000)


# --- billing plans (``billing.billing``: which fields each kind takes is checked there) -------------------
Fen = Field(default=0, ge=0, le=POINTS_MAX)


class BillingPlanInput(Strict):
    kind: Literal["none", "per_call", "per_member", "prepaid", "package"]
    call_price: int = Fen
    member_price: int = Fen
    order_price: int = Fen
    monthly_fee: int = Fen
    included_calls: int = Fen
    overage_price: int = Fen
    alert_below: int = Fen


class TopUpInput(Strict):
    topup_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    amount: int = Field(gt=0, le=POINTS_MAX)
    note: Optional[str] = Field(default=None, max_length=200)


class WorkbenchSignIn(Strict):
    """A one-time workbench sign-in link's token (the part after ``#signin=``)."""
    token: str = Field(min_length=1, max_length=100)
