"""The OpenAPI 3.1 document of everything a channel touches (served at ``GET /docs/openapi.json``).

Our routes: the entry link, the H5 store and the member JSON API behind it, the signed server-to-server
routes (``/partner/...``), the sandbox's signature check and this document. What the channel implements
for us (member code exchange, payment password, remote points) and the events we push to it are in
``webhooks`` (OpenAPI 3.1): requests we send, not routes we serve.

Request bodies are the pydantic models that validate them (``core.schemas``), so the document cannot
drift from what is enforced; ``tests/test_openapi.py`` checks that the app's channel-facing routes and
the document's operations are the same set, both ways. Nothing here is secret: no key, no channel.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from chalicelib.channels.signing import HEADER_FIELDS, WINDOW_SECONDS
from chalicelib.core.function_url import CHANNEL_PREFIXES
from chalicelib.partners.events import KINDS as EVENT_KINDS

Json = dict[str, Any]
CONTRACT_VERSION = "2"
# Channel-facing routes are those under the function URL door's prefixes (``CHANNEL_PREFIXES``: entry, store,
# member API, partner API, sandbox, docs); ``/ops/``, ``/supplier/`` and ``/suppliers/`` stay out of the document.

MEMBER, SIGNED, PUBLIC = "member", "signed", "public"


def channel_facing(path: str) -> bool:
    return path.startswith(CHANNEL_PREFIXES)


# --- small schema helpers -----------------------------------------------------------------------------------

STR: Json = {"type": "string"}
INT: Json = {"type": "integer"}
BOOL: Json = {"type": "boolean"}
ANY_OBJECT: Json = {"type": "object"}


def nullable(type_: str) -> Json:
    return {"type": [type_, "null"]}


def obj(properties: Json, *required: str) -> Json:
    """An object with these properties (more may come: a view may grow a field without breaking a client)."""
    return {"type": "object", "properties": properties, "required": list(required)}


def arr(items: Json) -> Json:
    return {"type": "array", "items": items}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


# --- what our answers look like -----------------------------------------------------------------------------

ERROR = {
    "type": "object", "additionalProperties": False, "required": ["error"],
    "description": "Every refusal: a stable machine-readable `code` (see the integration guide for the list), a "
                   "message for people, and the field it is about where there is one. Never a stack trace.",
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "pattern": "^[a-z0-9_]+$"}, "message": STR, "field": STR,
                       "correlation_id": {"type": "string", "description": "a failed call to your API: the "
                                          "X-Correlation-Id we sent, to find it in your logs"},
                       "errors": {"type": "array", "description": "a refused ledger: every row's problem"}}}},
}
GOODS_CARD = obj({"goods_id": STR, "title": STR, "category": STR, "image": nullable("string"), "price_from": INT,
                  "points_from": INT, "in_stock": BOOL}, "goods_id", "title", "price_from", "points_from", "in_stock")
PARCEL = obj({"parcel_id": STR, "name": STR, "state": STR, "lines": arr(ANY_OBJECT), "points": INT, "amount": INT,
              "carrier": nullable("string"), "tracking_no": nullable("string"), "shipped_at": nullable("string"),
              "completed_at": nullable("string"), "returned": nullable("object"), "can_cancel": BOOL,
              "can_confirm_receipt": BOOL,
              "shipped_by": {"type": ["string", "null"], "description": "members only: the supplier's name"}},
             "parcel_id", "name", "state", "points")
ORDER = obj({"order_id": STR, "channel_code": STR, "status": {"type": "string", "description": "checkout status"},
             "state": {"type": "string", "description": "derived from the parcels once split (e.g. paid, "
                                                        "partially_shipped, shipped, completed, cancelled)"},
             "points": INT, "amount": {"type": "integer", "description": "fen"}, "points_mode": STR,
             "period_id": nullable("string"), "failure": nullable("string"), "sandbox": BOOL,
             "lines": arr(ANY_OBJECT), "parcels": arr(ref("Parcel")), "created_at": STR,
             "updated_at": nullable("string"),
             "address": {"type": ["object", "null"], "description": "members only; never shown to the channel"}},
            "order_id", "channel_code", "status", "state", "points", "amount", "lines", "parcels")
LEDGER_ROW = {"type": "object", "additionalProperties": False, "required": ["order_id", "member_id", "points", "kind", "at"],
              "description": "one line of a posted ledger (JSON lines: one such object per line)",
              "properties": {"order_id": STR, "member_id": STR, "points": INT, "kind": STR, "at": STR}}
RESPONSES: dict[str, Json] = {
    "Error": ERROR,
    "GoodsCard": GOODS_CARD,
    "Parcel": PARCEL,
    "Order": ORDER,
    "ChannelOrder": {"allOf": [ref("Order"), obj({"member_id": {
        "type": ["string", "null"], "description": "your own member id"}})]},
    "OrderList": obj({"orders": arr(ref("Order"))}, "orders"),
    "MemberPoints": obj({
        "member_id": STR, "balance": INT, "granted": INT, "spent": INT, "refunded": INT, "expired": INT,
        "lots": arr(obj({"lot_id": STR, "points": INT, "expires_at": INT}, "lot_id", "points", "expires_at")),
        "movements": arr(obj({"kind": {"type": "string", "enum": ["grant", "redeem", "cancel", "refund"]},
                              "points": INT, "at": STR, "grant_id": STR, "expires_at": INT, "order_id": STR,
                              "parcel_id": STR}, "kind", "points", "at"))},
        "member_id", "balance", "granted", "spent", "refunded", "expired", "lots", "movements"),
    "ChannelOrderPage": obj({"orders": arr(ref("ChannelOrder")), "next_cursor": nullable("string")},
                            "orders", "next_cursor"),
    "Member": obj({"member_id": STR, "channel_code": STR, "external_id": STR, "nickname": nullable("string"),
                   "mobile": nullable("string"), "remote_points": nullable("integer")},
                  "member_id", "channel_code", "external_id"),
    "Wallet": obj({"points_mode": {"enum": ["hosted", "remote"]}, "balance": nullable("integer"), "granted": INT,
                   "spent": INT, "returned": INT, "expired": INT, "expiring_soon": {},
                   "as_of": nullable("integer"), "stale": BOOL}, "points_mode", "balance"),
    "CatalogPage": obj({"items": arr(ref("GoodsCard")), "next_cursor": nullable("string")}, "items", "next_cursor"),
    "FlashSale": obj({"sale_id": STR, "goods_id": STR, "sku_id": STR, "title": STR, "spec": STR,
                      "price_points": INT, "price": INT, "starts_at": INT, "ends_at": INT,
                      "state": {"enum": ["upcoming", "running"]}, "allotment": INT, "sold_out": BOOL,
                      "member_limit": INT, "bought": INT, "limit_reached": BOOL},
                     "sale_id", "goods_id", "sku_id", "price_points", "starts_at", "ends_at", "state", "sold_out",
                     "member_limit", "bought", "limit_reached"),
    "FlashSales": obj({"server_time": {"type": "number", "description": "the server's clock (Unix seconds): "
                                                                        "count down from it, not the phone's"},
                       "sales": arr(ref("FlashSale"))}, "server_time", "sales"),
    "GoodsDetail": obj({"goods_id": STR, "title": STR, "description": STR, "category": STR, "images": arr(STR),
                        "shipped_by": nullable("string"),
                        "skus": arr(obj({"sku_id": STR, "spec": STR, "price": INT, "points": INT,
                                         "stock_status": {"enum": ["in_stock", "low", "sold_out"]}},
                                        "sku_id", "price", "points", "stock_status"))},
                       "goods_id", "title", "skus"),
    "Topics": obj({"topics": arr(obj({"topic_id": STR, "title": STR, "items": arr(ref("GoodsCard"))},
                                     "topic_id", "title", "items")),
                   "categories": arr(STR),
                   "channel": obj({"code": STR, "name": STR, "points_per_yuan": INT, "points_mode": STR,
                                   "payment_auth": STR, "cart_enabled": BOOL,
                                   "default_locale": {"enum": ["zh-CN", "en"]}}, "code", "points_mode")},
                  "topics", "categories", "channel"),
    "Cart": obj({"lines": arr(ANY_OBJECT), "version": INT, "count": INT, "total_points": INT, "total_amount": INT,
                 "balance": nullable("integer"), "points_left": nullable("integer"), "ready": BOOL,
                 "max_lines": INT, "max_qty": INT, "expires_at": nullable("integer")}, "lines", "version"),
    "OtpSent": obj({"sent_to": STR, "expires_in": INT}, "sent_to", "expires_in"),
    "Refund": obj({"refund_id": STR, "parcel_id": STR, "order_id": STR, "state": STR, "reason": nullable("string"),
                   "reject_reason": nullable("string"), "points": INT, "lines": arr(ANY_OBJECT), "created_at": STR,
                   "updated_at": nullable("string"), "refunded_at": nullable("string")},
                  "refund_id", "parcel_id", "order_id", "state", "points"),
    "Grant": obj({"grant_id": STR, "member_id": STR, "points": INT, "expires_at": INT,
                  "period_id": nullable("string"), "created": {"type": "boolean", "description": "false: the "
                                                              "grant_id was already taken in (a safe retry)"}},
                 "grant_id", "member_id", "points", "expires_at", "created"),
    "Quota": obj({"channel_code": STR, "period_id": STR, "starts_at": INT, "ends_at": INT, "open": BOOL,
                  "limit": INT, "remaining": INT, "reserved": INT, "spent": INT, "granted": INT, "grant_room": INT,
                  "shards": INT, "points_per_yuan": INT}, "channel_code", "period_id", "limit", "remaining"),
    "Statement": obj({"statement_id": STR, "period_id": STR, "party": STR, "first_day": nullable("string"),
                      "last_day": nullable("string"), "totals": {"type": "object", "additionalProperties": INT},
                      "sha256": STR, "bytes": INT, "created_at": STR, "download_url": STR, "expires_in": INT},
                     "statement_id", "period_id", "totals", "sha256"),
    "StatementList": obj({"statements": arr(ref("Statement"))}, "statements"),
    "ProvisionalStatement": obj({"provisional": {"const": True}, "period_id": STR, "party": STR,
                                 "first_day": nullable("string"), "last_day": nullable("string"),
                                 "columns": arr(STR), "lines": arr(ANY_OBJECT),
                                 "totals": {"type": "object", "additionalProperties": INT}, "note": STR,
                                 "as_of": INT},
                                "provisional", "period_id", "party", "columns", "lines", "totals", "as_of"),
    "LedgerTaken": obj({"result_id": STR, "period_id": STR, "rows": INT, "counts": ANY_OBJECT,
                        "totals": ANY_OBJECT, "created": BOOL}, "result_id", "period_id", "created"),
    "UploadLink": obj({"upload_id": STR, "url": STR, "fields": {"type": "object", "additionalProperties": STR},
                       "key": STR, "max_bytes": INT, "content_type": STR, "expires_in": INT},
                      "upload_id", "url", "fields"),
    "LedgerUpload": obj({"upload_id": STR, "period_id": STR, "status": STR, "result_id": nullable("string"),
                         "refusal": nullable("object"), "created_at": STR, "processed_at": nullable("string")},
                        "upload_id", "period_id", "status"),
    "Reconciliation": obj({"result_id": STR, "period_id": STR, "differences": arr(ANY_OBJECT),
                           "next_cursor": nullable("string"), "document_url": STR, "document_expires_in": INT},
                          "result_id", "differences", "next_cursor"),
    "SignatureCheckResult": obj({"kind": {"enum": ["entry_link", "server_to_server"]}, "canonical": STR,
                                 "string_to_sign": STR, "body_sha256": nullable("string"), "expected_sign": STR,
                                 "signature_ok": BOOL, "clock_skew_seconds": nullable("integer"),
                                 "failed": arr(STR), "ok": BOOL, "encoding_example": ANY_OBJECT},
                                "kind", "canonical", "string_to_sign", "expected_sign", "signature_ok", "failed",
                                "ok"),
    "LedgerRow": LEDGER_ROW,
}

# Request bodies: the pydantic models the routes validate with (``core.schemas``), by name.
REQUEST_MODELS = ("GrantRequest", "OrderRequest", "CartLineQty", "Reason", "SignatureCheck")

# --- operations ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    tag: str
    summary: str
    auth: str  # MEMBER, SIGNED or PUBLIC
    response: str | None = None  # a schema in RESPONSES (JSON), or None for a non-JSON answer described below
    status: int = 200
    body: str | None = None  # a model in REQUEST_MODELS
    query: tuple[tuple[str, Json, str], ...] = ()
    description: str = ""
    also: tuple[int, ...] = ()  # further success statuses with the same body (e.g. 200 for a retried create)
    extra: Json = field(default_factory=dict)


CURSOR = ("cursor", STR, "the `next_cursor` of the page before")
LANG = ("lang", {"enum": ["zh-CN", "en"]}, "the member's language for goods' titles and descriptions; "
        "default: the channel's `default_locale`")
LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 50}, "page size (default 20)")
# The catalog takes any whole number and clamps it (the store never has to know the bound).
CATALOG_LIMIT = ("limit", INT, "page size, default 20; clamped to 1..50")

OPERATIONS: tuple[Op, ...] = (
    # entry and store
    Op("GET", "/entry/{code}", "Entry", "The channel's fixed entry link (SSO)", PUBLIC, status=302,
       query=(("member_id", STR, "your member id (signed; required unless `code`)"),
              ("timestamp", STR, "Unix seconds (signed)"), ("nonce", STR, "16-64 random characters (signed)"),
              ("sign", STR, "lower-case hex HMAC-SHA256 of the canonical query"),
              ("nickname", STR, "optional, signed"), ("mobile", STR, "optional, signed"),
              ("points", STR, "optional, signed: the member's balance in your wallet (remote points mode)"),
              ("target", STR, "optional, signed: a path inside the store to open"),
              ("code", STR, "code entry mode: a one-time code we exchange at your `member/exchange` API")),
       description="A valid link maps (or creates) the member, starts a session and redirects (302) into the "
                   "H5 store with the session cookie set; the same session works as `Authorization: Bearer` on "
                   "the member API. The link's signature is the canonical query alone (contract v2). A refused "
                   "link answers the error as JSON, or as a page when the browser asks for HTML."),
    Op("GET", "/store/{code}", "Entry", "The mobile H5 store page", PUBLIC,
       description="Where the entry link redirects; it calls the member API with the session cookie."),
    # member API (the H5 store's)
    Op("GET", "/api/{code}/catalog", "Member API", "A page of the channel's goods", MEMBER, "CatalogPage",
       query=(CURSOR, CATALOG_LIMIT, ("category", STR, "only this category"),
              ("q", STR, "the title contains this, in any language"), LANG)),
    Op("GET", "/api/{code}/sales", "Member API", "The channel's upcoming and running flash sales", MEMBER,
       "FlashSales",
       description="Each sale's window, price in points, whether it is sold out, and whether this member reached its "
                   "per-member limit, with the server's clock. Buy one with `POST /api/{code}/orders` and the line's "
                   "`sale_id` (one line): refused with 409 `sale_not_started`, `sale_ended`, `sale_sold_out` or "
                   "`sale_limit_reached`."),
    Op("GET", "/api/{code}/goods/{goods_id}", "Member API", "One goods with its SKUs at the channel's prices",
       MEMBER, "GoodsDetail", query=(LANG,)),
    Op("GET", "/api/{code}/topics", "Member API", "The store home: topics, categories, the channel's settings",
       MEMBER, "Topics", query=(LANG,)),
    Op("GET", "/api/{code}/me", "Member API", "The member", MEMBER, "Member"),
    Op("POST", "/api/{code}/otp", "Member API", "Send a one-time payment code by SMS (otp payment mode)",
       MEMBER, "OtpSent"),
    Op("GET", "/api/{code}/wallet", "Member API", "The member's points", MEMBER, "Wallet",
       query=(("fresh", {"enum": ["1"]}, "remote mode: ask the channel's wallet now (after money moved)"),),
       description="Hosted: granted − spent + returned − expired = balance. Remote: the channel's own figure "
                   "(`points/balance`), at most 5 s old; `stale` with `as_of` when the channel gave none."),
    Op("POST", "/api/{code}/orders", "Member API", "Buy now (or check out the cart)", MEMBER, "Order", 201,
       "OrderRequest", also=(200,),
       description="One atomic commit of quota, wallet and order. Send an `Idempotency-Key`: a retry with the "
                   "same key answers the same order (200), never a second one.",
       extra={"parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                              "schema": {"type": "string", "minLength": 8, "maxLength": 64},
                              "description": "your retry key for this purchase"}]}),
    Op("GET", "/api/{code}/orders", "Member API", "The member's latest orders", MEMBER, "OrderList", query=(LANG,)),
    Op("GET", "/api/{code}/orders/{order_id}", "Member API", "One of the member's orders", MEMBER, "Order",
       query=(LANG,)),
    Op("GET", "/api/{code}/cart", "Member API", "The cart, priced now (channels with the cart on)", MEMBER, "Cart",
       query=(LANG,)),
    Op("PUT", "/api/{code}/cart/lines/{goods_id}/{sku_id}", "Member API", "Set a cart line's quantity", MEMBER,
       "Cart", body="CartLineQty"),
    Op("DELETE", "/api/{code}/cart/lines/{goods_id}/{sku_id}", "Member API", "Remove a cart line", MEMBER, "Cart"),
    Op("POST", "/api/{code}/parcels/{parcel_id}/receipt", "Member API", "Confirm receipt of a shipped parcel",
       MEMBER, "Order"),
    Op("POST", "/api/{code}/parcels/{parcel_id}/cancel", "Member API", "Cancel an unshipped parcel (points back)",
       MEMBER, "Order", also=(202,),
       description="200: cancelled, points, stock and quota back. 202 (remote mode): your `points/refund` has not "
                   "answered yet; the parcel is `cancelling` (it cannot be shipped or cancelled again: 409 "
                   "`parcel_cancelling`) until you give the points back, then `cancelled` (webhook "
                   "`parcel.cancelled`). If you refuse, 409 `refund_rejected` and the parcel is `awaiting_shipment` "
                   "again."),
    Op("POST", "/api/{code}/parcels/{parcel_id}/refund-requests", "Member API", "Ask for a refund of a parcel",
       MEMBER, "Refund", 201, "Reason"),
    Op("GET", "/api/{code}/parcels/{parcel_id}/refund", "Member API", "A parcel's refund", MEMBER, "Refund"),
    # server-to-server, signed
    Op("POST", "/partner/{code}/grants", "Partner API", "Grant points to a member (hosted points mode)", SIGNED,
       "Grant", 201, "GrantRequest", also=(200,),
       description="Idempotent by `grant_id`: a retry answers 200 with the grant already taken in. Bounded by the "
                   "period's quota and the member's cap."),
    Op("GET", "/partner/{code}/quota", "Partner API", "The current period's redemption quota", SIGNED, "Quota"),
    Op("GET", "/partner/{code}/orders/{order_id}", "Partner API", "One of your orders", SIGNED, "ChannelOrder"),
    Op("GET", "/partner/{code}/members/{member_id}/orders", "Partner API", "A member's orders, newest first",
       SIGNED, "ChannelOrderPage", query=(CURSOR, LIMIT)),
    Op("GET", "/partner/{code}/members/{member_id}/points", "Partner API",
       "A member's points in the mall (hosted points mode)", SIGNED, "MemberPoints",
       description="For your app's \"your points in the mall\": the spendable balance and its totals, the live lots "
                   "with their expiry (soonest first, the order checkout spends them in), and the latest 50 "
                   "movements, newest first (`grant` +, `redeem` −, `cancel` and `refund` +: points given back). "
                   "`member_id` is percent-encoded in the path and signed so (contract v2). A remote-mode channel "
                   "keeps its members' points itself: 409 `points_not_hosted`."),
    Op("POST", "/partner/{code}/ledgers/{period_id}", "Partner API", "Post your ledger of a period (JSON lines)",
       SIGNED, "LedgerTaken", 201, also=(200,),
       description="Matched against our books; 200 answers the result already made from the same bytes.",
       extra={"requestBody": {"required": True, "content": {
           "application/x-ndjson": {"schema": {"type": "string", "description": "one `LedgerRow` object per line"}},
           "application/json": {"schema": dict(LEDGER_ROW, description="a one-row ledger")}}}}),
    Op("POST", "/partner/{code}/ledgers/{period_id}/upload-link", "Partner API",
       "A signed upload link for a large ledger (CSV)", SIGNED, "UploadLink", 201),
    Op("GET", "/partner/{code}/ledger-uploads/{upload_id}", "Partner API", "An uploaded ledger's processing",
       SIGNED, "LedgerUpload"),
    Op("GET", "/partner/{code}/reconciliations/{period_id}", "Partner API", "A period's reconciliation result",
       SIGNED, "Reconciliation", query=(("result_id", STR, "a given result (default: the latest)"), CURSOR, LIMIT)),
    Op("GET", "/partner/{code}/statements", "Partner API", "Your settlement statements", SIGNED, "StatementList"),
    Op("GET", "/partner/{code}/statements/{statement_id}", "Partner API", "One statement with its download link",
       SIGNED, "Statement"),
    Op("GET", "/partner/{code}/statements/current", "Partner API",
       "The running settlement period's provisional statement", SIGNED, "ProvisionalStatement",
       description="What your statement for the running settlement period (a calendar month, or an ISO week for a "
                   "weekly channel) would hold if the period closed now: the same lines (`columns` name each line's "
                   "fields) and totals, `amount_due` included, computed by the same rules as the final statement. "
                   "Marked `provisional`: it is not a statement, has no export and no download link, and is never "
                   "paid by; the final statement comes after the period ends."),
    # integration help
    Op("POST", "/sandbox/{code}/signature-check", "Sandbox", "Why does my signature fail? (sandbox channels only)",
       PUBLIC, "SignatureCheckResult", body="SignatureCheck",
       description="Shows the canonical string, the string to sign and the signature the server expects for what "
                   "you send (never the secret), and names the rule a string of yours breaks. Spends no nonce. "
                   "A live channel answers 404."),
    Op("GET", "/docs/openapi.json", "Docs", "This document", PUBLIC),
    Op("GET", "/docs/supplier-openapi.json", "Docs", "The supplier API's document (not a channel's concern)", PUBLIC),
)

# --- what the channel implements, and the events we send ------------------------------------------------------


@dataclass(frozen=True)
class ChannelApi:
    """An API the channel serves for us: ``POST {api_base_url}/{name}``, signed per the contract."""

    name: str
    summary: str
    request: Json
    response: Json
    needed_when: str  # the channel setting that makes us call it (shown in the guide)
    description: str = ""


CHANNEL_APIS: tuple[ChannelApi, ...] = (
    ChannelApi("member/exchange", "A one-time entry code → the member's identity",
               obj({"code": STR}, "code"),
               obj({"member_id": STR, "nickname": nullable("string"), "mobile": nullable("string"),
                    "points": {"type": ["integer", "string", "null"], "description": "balance in your wallet"}},
                   "member_id"),
               "entry_mode = code", "Answer 4xx for an unknown or used code: the entry is refused."),
    ChannelApi("password/verify", "Check a member's payment password",
               obj({"member_id": STR, "password": STR}, "member_id", "password"),
               obj({"valid": BOOL}, "valid"), "payment_auth = channel_password"),
    ChannelApi("points/deduct", "Deduct an order's points (idempotent by order_id)",
               obj({"order_id": STR, "member_id": STR, "points": INT}, "order_id", "member_id", "points"),
               obj({"result": {"enum": ["deducted", "insufficient", "rejected", "frozen", "cancelled"]},
                    "reason": STR}, "result"), "points_mode = remote",
               "200 `deducted`, or 409 with why it was refused. The answer for an order_id never changes; after "
               "a cancel of that order_id, refuse it."),
    ChannelApi("points/query", "Did a deduct happen? (its answer was lost)",
               obj({"order_id": STR}, "order_id"),
               obj({"status": {"enum": ["deducted", "not_found", "failed"]}}, "status"), "points_mode = remote"),
    ChannelApi("points/cancel", "We will not complete this order",
               obj({"order_id": STR}, "order_id"),
               obj({"result": {"const": "cancelled"}, "refunded_points": INT}, "result"), "points_mode = remote",
               "Refuse any later deduct for the order_id, and give back one already applied."),
    ChannelApi("points/refund", "Give back a refunded parcel's points (idempotent by refund_id)",
               obj({"refund_id": STR, "order_id": STR, "points": INT}, "refund_id", "order_id", "points"),
               obj({"result": {"enum": ["refunded", "rejected"]}, "reason": STR}, "result"), "points_mode = remote"),
    ChannelApi("points/balance", "A member's balance in your wallet, as your app shows it",
               obj({"member_id": STR}, "member_id"),
               obj({"member_id": STR, "points": INT}, "points"), "points_mode = remote",
               "200 with the member's spendable points now. The store asks after every payment, cancel and refund "
               "and at most every 5 s otherwise; without an answer it shows the last figure it had, with its time."),
    ChannelApi("points/refund/query", "Did a refund happen? (its answer was lost)",
               obj({"refund_id": STR}, "refund_id"),
               obj({"status": {"enum": ["refunded", "not_found"]}}, "status"), "points_mode = remote"),
)


def apis_needed(points_mode: str, entry_mode: str, payment_auth: str) -> list[ChannelApi]:
    """The APIs a channel so configured must serve for us."""
    settings = {f"points_mode = {points_mode}", f"entry_mode = {entry_mode}", f"payment_auth = {payment_auth}"}
    return [api for api in CHANNEL_APIS if api.needed_when in settings]


WEBHOOK_HEADERS = (
    ("webhook-id", "the event id: the same on every retry (your idempotency key)"),
    ("webhook-timestamp", "Unix seconds of this attempt; refuse one more than 300 s from your clock"),
    ("webhook-signature", "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{raw body}` keyed with "
                          "the base64 after `whsec_` of your webhook secret; once ops gave your channel a signing "
                          "key, also `v1a,` + base64 Ed25519 signature of the same string, verified with the "
                          "`whpk_` public key; space-separated, both keys' during a rotation: accept when any "
                          "verifies"),
)
EVENT = obj({"id": STR, "type": {"enum": list(EVENT_KINDS)}, "created_at": STR, "channel": STR,
             "sandbox": {"type": "boolean", "description": "present (true) for a sandbox channel's test data"},
             "data": {"type": "object", "description": "order.*: order_id, state, parcels; parcel.*: order_id, "
                                                       "parcel_id, name, state, order_state, carrier, tracking_no; "
                                                       "order.paid also member_id (yours), points, amount; "
                                                       "parcel.cancelled and parcel.refunded also points_returned, "
                                                       "parcel.cancelled also cancelled_by (member or "
                                                       "shipping_deadline); order.partially_refunded and "
                                                       "order.refunded when the order's state becomes so"}},
            "id", "type", "created_at", "channel", "data")

# --- the document -------------------------------------------------------------------------------------------------

SIGNING = (
    "**Contract version 2.** Every signed request carries `timestamp` (Unix seconds), `nonce` (16-64 random "
    "characters) and `sign`; server-to-server calls may send them as the headers `X-Timestamp`, `X-Nonce`, "
    "`X-Sign` (as here) or as query parameters. Parameters signed: every query parameter except `sign`, the "
    "envelope, and for a request with a body `body_sha256` (lower-case hex SHA-256 of the exact body bytes). "
    "Keys match `[A-Za-z0-9_.-]{1,64}`, each once. Canonical query: sorted by key (byte order), `key=value` with "
    "the value UTF-8 percent-encoded per RFC 3986 (only `A-Z a-z 0-9 - _ . ~` as is; `%XX` upper-case), joined "
    "by `&`. String to sign: the canonical query for entry links; `METHOD\\nPATH\\ncanonical query` for "
    "server-to-server calls (PATH relative to the published base, as sent). `sign` = lower-case hex "
    f"HMAC-SHA256 keyed with the channel secret. A timestamp more than {WINDOW_SECONDS} s off, a nonce seen "
    "before and a wrong signature are refused, each with its own code.")


def _error(description: str, html: bool = False) -> Json:
    content: Json = {"application/json": {"schema": ref("Error")}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def _path_parameters(path: str) -> list[Json]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:~-]{1,128}$"},
             "description": "the channel's code" if name == "code" else None} for name in names]


def _clean(value: Any) -> Any:
    """Drop ``None`` values (an optional description not given)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _success(op: Op) -> Json:
    if op.path == "/entry/{code}":
        return {"302": {"description": "into the store, with the session", "headers": {
            "Location": {"schema": STR, "description": "the store page"},
            "Set-Cookie": {"schema": STR, "description": "`cm_session` (HttpOnly): the member session"}}}}
    if op.path == "/store/{code}":
        return {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    if op.response is None:
        return {"200": {"description": "this document", "content": {"application/json": {"schema": ANY_OBJECT}}}}
    body = {"description": "OK", "content": {"application/json": {"schema": ref(op.response)}}}
    return {str(status): body for status in (op.status, *op.also)}


def _errors(op: Op) -> Json:
    html = op.path == "/entry/{code}"
    errors: Json = {"400": _error("a malformed request (bad or repeated parameter, missing field, bad path "
                                  "parameter, invalid JSON)", html)}
    if op.auth == MEMBER:
        errors["401"] = _error("no, an invalid or an expired member session")
        errors["403"] = _error("the session belongs to another channel, or the channel is suspended")
    elif op.auth == SIGNED or op.path == "/entry/{code}":
        errors["401"] = _error("bad_signature, timestamp_expired, nonce_replayed", html)
        errors["403"] = _error("the channel is suspended", html)
    if op.auth == SIGNED:
        errors["402"] = _error("prepaid_exhausted: your prepaid balance cannot pay for the call")
    if op.path != "/docs/openapi.json":
        errors["404"] = _error("no such channel or item (another channel's item answers the same)", html)
    if op.method in ("POST", "PUT", "PATCH"):
        errors["409"] = _error("the state does not allow it (e.g. a reused Idempotency-Key or grant_id with "
                               "different contents)")
        errors["413"] = _error("the body is too large")
        errors["415"] = _error("the body's Content-Type is not one this route takes")
        errors["422"] = _error("validation_error (naming the field) or a business rule refused it")
        errors["429"] = _error("rate limited")
    errors["4XX"] = _error("any other refusal, in the same shape", html)
    if op.auth in (MEMBER, SIGNED):
        errors["502"] = _error("your API failed us (with the call's correlation_id)")
        errors["503"] = _error("busy (retry with the same idempotency key), or your API's breaker is open")
    return errors


def _operation(op: Op) -> Json:
    operation: Json = {"operationId": _operation_id(op), "tags": [op.tag], "summary": op.summary,
                       "description": op.description or None,
                       "parameters": _path_parameters(op.path) + [
                           {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
                           for name, schema, text in op.query],
                       "responses": {**_success(op), **_errors(op)}}
    if op.auth == MEMBER:
        operation["security"] = [{"memberSession": []}, {"memberCookie": []}]
    elif op.auth == SIGNED:
        operation["security"] = [{"signTimestamp": [], "signNonce": [], "channelSignature": []}]
    else:
        operation["security"] = []
    if op.body:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": ref(op.body)}}}
    for key, value in copy.deepcopy(op.extra).items():
        if key == "parameters":
            operation["parameters"] += value
        else:
            operation[key] = value
    return _clean(operation)


def _operation_id(op: Op) -> str:
    words = [p.strip("{}") for p in op.path.split("/") if p]
    return op.method.lower() + "_" + "_".join(w.replace("-", "_").replace(".", "_") for w in words)


def _channel_api_item(api: ChannelApi) -> Json:
    return {"post": {
        "operationId": "channel_" + api.name.replace("/", "_"), "tags": ["Your API (we call it)"],
        "summary": f"POST {{api_base_url}}/{api.name}: {api.summary}",
        "description": f"Needed when {api.needed_when}. Signed by us per contract v2 (X-Timestamp, X-Nonce, X-Sign "
                       f"over `POST\\n/{api.name}\\n...`); verify it as you would ours. "
                       f"Each call carries `X-Correlation-Id`. {api.description}".strip(),
        "security": [{"signTimestamp": [], "signNonce": [], "channelSignature": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": api.request}}},
        "responses": {"200": {"description": "your answer", "content": {"application/json": {"schema": api.response}}},
                      "4XX": {"description": "refused (a deduct or refund: 409 with `result`)",
                              "content": {"application/json": {"schema": ANY_OBJECT}}}},
    }}


def _event_item(kind: str) -> Json:
    return {"post": {
        "operationId": "event_" + kind.replace(".", "_"), "tags": ["Webhooks"],
        "summary": f"{kind}: POST to your webhook URL (Standard Webhooks)",
        "description": "Delivered at least once: answer 2xx within 15 s; anything else is retried with backoff, "
                       "then parked for ops to redrive. Dedupe on `webhook-id`. A sandbox channel's events carry "
                       "the header `webhook-sandbox: true`.",
        "parameters": [{"name": name, "in": "header", "required": True, "schema": STR, "description": text}
                       for name, text in WEBHOOK_HEADERS],
        "requestBody": {"required": True, "content": {"application/json": {"schema": dict(
            EVENT, properties=dict(EVENT["properties"], type={"const": kind}))}}},
        "responses": {"2XX": {"description": "delivered"}},
    }}


@cache
def _document() -> Json:
    from pydantic.json_schema import models_json_schema

    from chalicelib.core import schemas as models

    _, defs = models_json_schema([(getattr(models, name), "validation") for name in REQUEST_MODELS],
                                 ref_template="#/components/schemas/{model}")
    components = {**defs.get("$defs", {}), **copy.deepcopy(RESPONSES)}
    paths: Json = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    webhooks = {kind: _event_item(kind) for kind in EVENT_KINDS}
    webhooks.update({f"channel-api {api.name}": _channel_api_item(api) for api in CHANNEL_APIS})
    header = {name: header for name, header in HEADER_FIELDS.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Channel Mall: channel integration API", "version": f"contract-v{CONTRACT_VERSION}",
                 "description": "Everything a channel touches: the entry link, the H5 store's member API, the signed "
                                "server-to-server routes, the APIs your back end serves for us and the webhooks we "
                                "send.\n\n" + SIGNING},
        "tags": [{"name": "Entry"}, {"name": "Member API"}, {"name": "Partner API"}, {"name": "Sandbox"},
                 {"name": "Docs"}, {"name": "Your API (we call it)"}, {"name": "Webhooks"}],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "memberSession": {"type": "http", "scheme": "bearer",
                                  "description": "the session the entry link started (its `cm_session` cookie)"},
                "memberCookie": {"type": "apiKey", "in": "cookie", "name": "cm_session",
                                 "description": "the same session as the H5 store's cookie"},
                "signTimestamp": {"type": "apiKey", "in": "header", "name": header["timestamp"],
                                  "description": "Unix seconds (or the query parameter `timestamp`)"},
                "signNonce": {"type": "apiKey", "in": "header", "name": header["nonce"],
                              "description": "16-64 random characters, never reused (or the query parameter "
                                             "`nonce`)"},
                "channelSignature": {"type": "apiKey", "in": "header", "name": header["sign"],
                                     "description": SIGNING},
            },
        },
    }


def document(base_url: str) -> Json:
    """The document with this deployment's base URL as its server."""
    doc = copy.deepcopy(_document())
    doc["servers"] = [{"url": base_url, "description": "this deployment"}]
    return doc


def operations() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the document describes."""
    return {(op.method, op.path) for op in OPERATIONS}
