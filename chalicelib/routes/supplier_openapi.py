"""The OpenAPI 3.1 document of everything a supplier touches (served at ``GET /docs/supplier-openapi.json``).

Every route under ``/supplier`` and ``/suppliers``, the workbench page and this document; ``tests/test_supplier_
openapi.py`` checks that they and the document's operations are the same set, both ways, and that each request
body is the pydantic model its route validates with. Each call is proven by the supplier's API key
(``X-Api-Key`` or ``Authorization: Bearer``) or by a workbench session cookie (then a state-changing call also
sends ``X-CSRF-Token``): the same routes and rules either way.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache

from chalicelib.orders.parcel_states import STATES as PARCEL_STATES
from chalicelib.partners.kit.openapi import ANY_OBJECT, BOOL, ERROR, INT, STR, Json, arr, nullable, obj, ref
from chalicelib.partners.kit.openapi import RESPONSES as CHANNEL_RESPONSES
from chalicelib.supply import signin_rules

SUPPLIER, PUBLIC, OPS, SESSION = "supplier", "public", "ops", "session"
PREFIXES = ("/supplier/", "/suppliers/", "/workbench")
DOCUMENT = "/docs/supplier-openapi.json"


def supplier_facing(path: str) -> bool:
    """The routes this document covers (an ops route that names suppliers is ops', not theirs)."""
    return path.startswith(PREFIXES) or path == DOCUMENT


FEN = {"type": "integer", "description": "fen (1/100 yuan)"}
SKU = obj({"sku_id": STR, "spec": STR, "settlement_price": FEN, "stock": INT}, "sku_id", "spec",
          "settlement_price", "stock")
CONTENT = {"title": STR, "description": STR, "category": STR,
           "images": arr({"type": "string", "description": "upload id of an image upload of yours"})}
RESPONSES: dict[str, Json] = {
    "Error": ERROR,
    "Supplier": obj({"supplier_id": STR, "name": STR, "contact_name": STR, "phone": STR, "email": nullable("string"),
                     "licence_no": STR, "bank_account": ANY_OBJECT, "status": {"enum": ["applied", "active",
                                                                                        "rejected"]},
                     "reject_reason": nullable("string"), "created_by": STR, "created_at": STR, "updated_at": STR},
                    "supplier_id", "name", "status"),
    "Goods": obj({"goods_id": STR, "supplier_id": STR, "ref": STR, **CONTENT,
                  "status": {"enum": ["pending_review", "approved", "rejected", "off_sale"],
                             "description": "review state"},
                  "reject_reason": nullable("string"), "version": INT, "skus": arr(SKU),
                  "image_links": {"type": "object", "additionalProperties": STR,
                                  "description": "a short-lived link to each image (live or proposed) by upload id"},
                  "revision": {"type": ["object", "null"], "description": "content changed after approval, "
                               "waiting for ops (`state` pending) or refused (`state` rejected, `reject_reason`)",
                               "properties": {**CONTENT, "state": {"enum": ["pending", "rejected"]},
                                              "reject_reason": nullable("string"),
                                              "submitted_at": nullable("string")}},
                  "created_at": STR, "updated_at": STR},
                 "goods_id", "ref", "title", "status", "version", "skus", "revision", "image_links"),
    "GoodsList": obj({"goods": arr(ref("Goods"))}, "goods"),
    "AuditTrail": obj({"audit": arr(ANY_OBJECT)}, "audit"),
    "UploadLink": obj({"upload_id": STR, "url": STR, "fields": {"type": "object", "additionalProperties": STR},
                       "key": STR, "max_bytes": INT, "content_type": STR, "expires_in": INT},
                      "upload_id", "url", "fields"),
    "Upload": obj({"upload_id": STR, "kind": {"enum": ["image", "goods_csv", "shipments"]}, "key": STR,
                   "content_type": STR, "status": {"enum": ["issued", "processed", "refused"]},
                   "result": {"type": "object", "description": "image: image_key, bytes; goods_csv: imported, "
                              "existing, rows, errors [{line, reason}], goods_ids; shipments: shipped, rows, "
                              "errors [{line, reason}], parcel_ids; refused: refused (why)"},
                   "created_at": STR, "processed_at": nullable("string")}, "upload_id", "kind", "status"),
    "Parcel": obj({"parcel_id": STR, "order_id": STR, "channel_code": STR, "state": {"enum": list(PARCEL_STATES)},
                   "lines": arr(ANY_OBJECT), "amount": FEN, "carrier": nullable("string"),
                   "tracking_no": nullable("string"), "ship_by": {"type": ["string", "null"],
                                                                  "description": "the shipping deadline: an "
                                                                  "unshipped parcel is cancelled then"},
                   "shipped_at": nullable("string"), "completed_at": nullable("string"), "created_at": STR,
                   "updated_at": nullable("string"),
                   "ship_to": {"type": "object", "description": "one parcel only: the member's delivery address"}},
                  "parcel_id", "order_id", "state", "lines"),
    "ParcelPage": obj({"items": arr(ref("Parcel")), "next_cursor": nullable("string")}, "items", "next_cursor"),
    "Refund": obj({"refund_id": STR, "parcel_id": STR, "order_id": STR, "state": STR,
                   "reason": {"type": ["string", "null"], "description": "the member's reason"},
                   "reject_reason": nullable("string"), "points": INT, "lines": arr(ANY_OBJECT),
                   "created_at": STR, "updated_at": nullable("string"), "refunded_at": nullable("string")},
                  "refund_id", "parcel_id", "state"),
    "RefundList": obj({"refunds": arr(ref("Refund"))}, "refunds"),
    # the statements a supplier reads are the very shapes a channel reads: one definition
    **{name: CHANNEL_RESPONSES[name] for name in ("Statement", "StatementList", "ProvisionalStatement")},
    "SignInLink": obj({"url": {"type": "string", "description": "open it in a browser: `{base}/workbench#signin=…`"},
                       "supplier_id": STR, "expires_in": INT, "expires_at": STR},
                      "url", "supplier_id", "expires_in", "expires_at"),
    "WorkbenchSession": obj({"supplier": ref("Supplier"), "csrf_token": {
        "type": "string", "description": f"send it as `{signin_rules.CSRF_HEADER}` on every state-changing call"},
        "expires_at": STR}, "supplier", "csrf_token", "expires_at"),
    "SignedOut": obj({"signed_out": BOOL}, "signed_out"),
}
REQUEST_MODELS = ("SupplierApplication", "GoodsDraft", "GoodsEdit", "SkuChange", "UploadRequest", "Shipment",
                  "Reason", "WorkbenchSignIn")


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    tag: str
    summary: str
    auth: str = SUPPLIER
    response: str | None = None
    status: int = 200
    body: str | None = None
    query: tuple[tuple[str, Json, str], ...] = ()
    description: str = ""
    extra: Json = field(default_factory=dict)


DATE = {"type": "string", "format": "date"}
OPERATIONS: tuple[Op, ...] = (
    Op("POST", "/suppliers/applications", "Account", "Apply to sell (ops approve and hand over the first key)",
       PUBLIC, "Supplier", 201, "SupplierApplication"),
    Op("GET", "/supplier/me", "Account", "Your account", response="Supplier"),
    # sign-in to the workbench
    Op("POST", "/supplier/signin-links", "Workbench sign-in", "A one-time workbench sign-in link for your staff",
       response="SignInLink", status=201,
       description=f"API key only (a workbench session cannot make one). The link works once, within "
                   f"{signin_rules.LINK_SECONDS // 60} minutes; ops can make one too."),
    Op("POST", "/supplier/session", "Workbench sign-in", "Use a sign-in link: start a workbench session", PUBLIC,
       "WorkbenchSession", 201, "WorkbenchSignIn",
       description=f"Consumes the link (two racing uses start exactly one session) and sets the `{signin_rules.COOKIE}` "
                   f"cookie (HttpOnly, SameSite=Strict, Secure), valid {signin_rules.SESSION_SECONDS // 3600} hours.",
       extra={"responses": {"201": {"headers": {"Set-Cookie": {"schema": STR}}}}}),
    Op("GET", "/supplier/session", "Workbench sign-in", "The signed-in session and its CSRF token", SESSION,
       "WorkbenchSession"),
    Op("DELETE", "/supplier/session", "Workbench sign-in", "Sign out (the session ends now)", SESSION, "SignedOut"),
    Op("GET", "/workbench", "Workbench sign-in", "The supplier workbench (a web page)", PUBLIC),
    # goods
    Op("POST", "/supplier/goods", "Goods", "Publish goods (they wait for review)", response="Goods", status=201,
       body="GoodsDraft", description="The goods id derives from your `ref`: the same ref twice is 409."),
    Op("GET", "/supplier/goods", "Goods", "Your goods with review state and pending revisions",
       response="GoodsList"),
    Op("GET", "/supplier/goods/{goods_id}", "Goods", "One of your goods", response="Goods"),
    Op("PATCH", "/supplier/goods/{goods_id}", "Goods", "Edit content (approved goods: as a revision for review)",
       response="Goods", body="GoodsEdit"),
    Op("PUT", "/supplier/goods/{goods_id}/skus/{sku_id}", "Goods", "Add a SKU or set its spec, price or stock",
       response="Goods", body="SkuChange", description="A new SKU or a price raise sends the goods back to review."),
    Op("POST", "/supplier/goods/{goods_id}/off-sale", "Goods", "Take goods off sale", response="Goods"),
    Op("POST", "/supplier/goods/{goods_id}/submit", "Goods", "Back to review after a rejection or off sale",
       response="Goods"),
    Op("GET", "/supplier/goods/{goods_id}/audit", "Goods", "Who changed what", response="AuditTrail"),
    Op("POST", "/supplier/uploads", "Uploads", "A signed upload link (image, goods CSV or shipments CSV)",
       response="UploadLink", status=201, body="UploadRequest",
       description="POST the file straight to `url` as multipart/form-data with `fields` first; it is checked "
                   "(size, type, content) and processed, then `GET /supplier/uploads/{upload_id}` shows the result."),
    Op("GET", "/supplier/uploads/{upload_id}", "Uploads", "An upload's check and import result", response="Upload"),
    # parcels
    Op("GET", "/supplier/parcels", "Parcels", "Your parcels, newest first", response="ParcelPage",
       query=(("state", {"enum": list(PARCEL_STATES)}, "only this state (e.g. awaiting_shipment)"),
              ("channel", STR, "only this channel's"),
              ("ship_by_before", DATE, "only parcels to ship by the end of this day (UTC)"),
              ("since", DATE, "created on or after"), ("until", DATE, "created on or before"),
              ("cursor", STR, "the `next_cursor` of the page before"),
              ("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (default 20)"))),
    Op("GET", "/supplier/parcels/{parcel_id}", "Parcels", "One parcel with its delivery address",
       response="Parcel"),
    Op("POST", "/supplier/parcels/{parcel_id}/ship", "Parcels", "Ship a parcel with carrier and tracking number",
       response="Parcel", body="Shipment",
       description="Once: a second ship is 409 `parcel_already_shipped`. Many at once: a CSV "
                   "`parcel_id,carrier,tracking_no` through an upload link of kind `shipments` (a result per line)."),
    # refunds
    Op("GET", "/supplier/refunds", "Refunds", "Refund requests on your parcels, with the member's reason",
       response="RefundList", query=(("state", STR, "only this state (e.g. requested)"),)),
    Op("POST", "/supplier/refunds/{refund_id}/approve", "Refunds", "Approve a refund (the member's points back)",
       response="Refund",
       description="Only refunds you bear: one the platform bears is 403 `refund_decided_by_ops`."),
    Op("POST", "/supplier/refunds/{refund_id}/reject", "Refunds", "Refuse a refund, with the reason the member sees",
       response="Refund", body="Reason"),
    # statements
    Op("GET", "/supplier/statements", "Statements", "Your settlement statements per period",
       response="StatementList"),
    Op("GET", "/supplier/statements/current", "Statements", "The running month's provisional statement",
       response="ProvisionalStatement",
       description="What your statement for the running month would hold if it closed now: the same lines and "
                   "totals, by the same rules as the final one. Marked `provisional`: no export, no download link, "
                   "never paid by; the final statement comes after the month ends."),
    Op("GET", "/supplier/statements/{statement_id}", "Statements", "One statement with its download link",
       response="Statement"),
    Op("GET", DOCUMENT, "Docs", "This document", PUBLIC),
)


def _error(description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def _success(op: Op) -> Json:
    if op.path == "/workbench":
        return {"200": {"description": "the page", "content": {"text/html": {"schema": STR}}}}
    if op.response is None:
        return {"200": {"description": "this document", "content": {"application/json": {"schema": ANY_OBJECT}}}}
    return {str(op.status): {"description": "OK", "content": {"application/json": {"schema": ref(op.response)}}}}


def _errors(op: Op) -> Json:
    errors: Json = {"400": _error("a malformed request (bad path or query parameter, invalid JSON)")}
    if op.auth in (SUPPLIER, SESSION) or op.path == "/supplier/session":
        errors["401"] = _error("no, an unknown or a revoked key; no, an expired or ended session; or (sign-in) "
                               "a used, expired or unknown link")
        errors["403"] = _error("the account is not active; a session's state-changing call without its CSRF "
                               "token (`csrf_token_required`, `csrf_token_invalid`)")
    if op.auth == SUPPLIER and "{" in op.path:
        errors["404"] = _error("no such item of yours (another supplier's answers the same)")
    if op.method in ("POST", "PUT", "PATCH"):
        errors["409"] = _error("the state does not allow it (e.g. parcel_already_shipped)")
        errors["413"] = _error("the body is too large")
        errors["415"] = _error("the body's Content-Type is not application/json")
        errors["422"] = _error("validation_error (naming the field) or a business rule refused it")
    errors["4XX"] = _error("any other refusal, in the same shape")
    return errors


def _operation(op: Op) -> Json:
    words = [p.strip("{}").replace("-", "_").replace(".", "_") for p in op.path.split("/") if p]
    operation: Json = {
        "operationId": op.method.lower() + "_" + "_".join(words), "tags": [op.tag], "summary": op.summary,
        "parameters": [{"name": name, "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:~-]{1,128}$"}}
                       for name in (p[1:-1] for p in op.path.split("/") if p.startswith("{"))]
        + [{"name": name, "in": "query", "required": False, "schema": schema, "description": text}
           for name, schema, text in op.query],
        "responses": {**_success(op), **_errors(op)}}
    if op.description:
        operation["description"] = op.description
    operation["security"] = {SUPPLIER: [{"apiKey": []}, {"bearerKey": []}, {"workbenchSession": []}],
                             SESSION: [{"workbenchSession": []}], PUBLIC: []}[op.auth]
    if op.path == "/supplier/signin-links":
        operation["security"] = [{"apiKey": []}, {"bearerKey": []}]
    if op.body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
    for status, extra in copy.deepcopy(op.extra).get("responses", {}).items():
        operation["responses"][status].update(extra)
    return operation


@cache
def _document() -> Json:
    from pydantic.json_schema import models_json_schema

    from chalicelib.core import schemas as models

    _, defs = models_json_schema([(getattr(models, name), "validation") for name in REQUEST_MODELS],
                                 ref_template="#/components/schemas/{model}")
    paths: Json = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Channel Mall: supplier API", "version": "1",
                 "description": "Publish goods, ship parcels, decide refunds and read statements. Prices are "
                                "integers in fen. Prove who you are with your API key, or sign your staff in to "
                                "the workbench (`/workbench`) with a one-time link: the workbench calls these same "
                                "routes with its session cookie and a CSRF token."},
        "tags": [{"name": t} for t in ("Account", "Workbench sign-in", "Goods", "Uploads", "Parcels", "Refunds",
                                       "Statements", "Docs")],
        "paths": paths,
        "components": {
            "schemas": {**defs.get("$defs", {}), **copy.deepcopy(RESPONSES)},
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                           "description": "your API key (`cmk_…`), shown once when ops issued it"},
                "bearerKey": {"type": "http", "scheme": "bearer", "description": "the same API key as a Bearer token"},
                "workbenchSession": {"type": "apiKey", "in": "cookie", "name": signin_rules.COOKIE,
                                     "description": "a workbench session (from a sign-in link); state-changing "
                                                    f"calls also send `{signin_rules.CSRF_HEADER}`"},
            },
        },
    }


def document(base_url: str) -> Json:
    doc = copy.deepcopy(_document())
    doc["servers"] = [{"url": base_url, "description": "this deployment"}]
    return doc


def operations() -> set[tuple[str, str]]:
    return {(op.method, op.path) for op in OPERATIONS}
