"""Bad input answers a 4xx in the error shape and writes nothing — never a 500.

Fired from outside, as a channel's app, a supplier or an ops script would: oversized keys (DynamoDB
refuses keys over 2,048 bytes), numbers past what a DynamoDB number holds (38 digits), bodies nested
past any recursion limit, at every route family. After each request every table is read back whole and
compared with before: nothing was written.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from checkout_helpers import Shop, make_shop, signed_post, uid
from chalicelib.tables import ALL_MODELS
from helpers import error_of, sku
from tools.sign import entry_link

LONG = "x" * 3001  # a key of 3,001 bytes: past DynamoDB's 2,048
HUGE = 10**50  # 50 digits: past DynamoDB's 38
DEEP = ("[" * 100_000 + "]" * 100_000).encode()


def tables_digest() -> str:
    """Every item of every table, as one digest (this pytest process has its own engine and tables)."""
    digest = hashlib.sha256()
    for model in ALL_MODELS:
        items = sorted(json.dumps(i.to_simple_dict(force=True), sort_keys=True, default=str) for i in model.scan())
        digest.update(model.Meta.table_name.encode())
        for item in items:
            digest.update(item.encode())
    return digest.hexdigest()


@dataclass
class World:
    shop: Shop
    member: str

    @property
    def base(self) -> str:
        return self.shop.base_url

    def ops(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.shop.ops.session.request(method, self.base + path, timeout=60, **kw)

    def supplier(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, self.base + path, headers={"X-Api-Key": self.shop.supplier_key},
                                timeout=60, **kw)

    def member_call(self, method: str, path: str, headers: dict | None = None, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.base}/api/{self.shop.code}{path}", timeout=60,
                                headers={**self.shop.auth(self.member), **(headers or {})}, **kw)

    def entry(self, **fields: Any) -> requests.Response:
        link = entry_link(self.base, self.shop.code, self.shop.secret, fields.pop("member_id", uid("M-")),
                          **{k: str(v) for k, v in fields.items()})
        params = dict(parse_qsl(urlsplit(link).query))
        return requests.get(f"{self.base}/entry/{self.shop.code}", params=params, allow_redirects=False,
                            timeout=60)

    def grant(self, **fields: Any) -> requests.Response:
        payload = {"grant_id": uid("g-"), "member_id": self.member, "points": 100,
                   "expires_at": self.shop.ends_at, **fields}
        return signed_post(requests.Session(), self.base, self.shop.code, self.shop.secret,
                           f"/partner/{self.shop.code}/grants", payload)

    def order(self, line: dict | None = None, raw: bytes | None = None, key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key or uid("key-"), "Content-Type": "application/json"}
        body = raw if raw is not None else json.dumps(
            {"lines": [{"goods_id": self.shop.goods_id, "sku_id": "S1", "qty": 1, **(line or {})}],
             "password": "246810"}).encode()
        return self.member_call("POST", "/orders", headers=headers, data=body)


def cursor(goods_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"g": goods_id}).encode()).decode()


# (name, call, expected status, expected error code)
CASES: list[tuple[str, Callable[[World], requests.Response], int, str]] = [
    # entry: signed links carrying out-of-bound fields
    ("entry points 50 digits", lambda w: w.entry(points=HUGE), 400, "invalid_field"),
    ("entry negative points", lambda w: w.entry(points=-5), 400, "invalid_field"),
    ("entry member_id 3001 chars", lambda w: w.entry(member_id=LONG), 400, "invalid_field"),
    ("entry nickname 3001 chars", lambda w: w.entry(nickname=LONG), 400, "invalid_field"),
    ("entry mobile not a number", lambda w: w.entry(mobile="call me"), 400, "invalid_field"),
    ("entry target 3001 chars", lambda w: w.entry(target="/" + LONG), 400, "invalid_field"),
    ("entry channel code 3001 chars", lambda w: requests.get(f"{w.base}/entry/{LONG}", timeout=60),
     400, "invalid_path_parameter"),
    # checkout
    ("order body 100,000 levels deep", lambda w: w.order(raw=DEEP), 400, "body_too_deep"),
    ("order body 40 levels deep", lambda w: w.order(raw=("[" * 40 + "]" * 40).encode()), 400, "body_too_deep"),
    ("order body over 256 KiB", lambda w: w.order(raw=json.dumps({"lines": [], "pad": "x" * 300_000}).encode()),
     413, "body_too_large"),
    ("order goods_id 3001 chars", lambda w: w.order({"goods_id": LONG}), 422, "validation_error"),
    ("order sku_id 3001 chars", lambda w: w.order({"sku_id": LONG}), 422, "validation_error"),
    ("order qty 50 digits", lambda w: w.order({"qty": HUGE}), 422, "validation_error"),
    ("order Idempotency-Key 3001 chars", lambda w: w.order(key=LONG), 422, "validation_error"),
    ("order id 3001 chars", lambda w: w.member_call("GET", f"/orders/{LONG}"), 400, "invalid_path_parameter"),
    ("goods id 3001 chars", lambda w: w.member_call("GET", f"/goods/{LONG}"), 400, "invalid_path_parameter"),
    ("catalog cursor with a 3001-char id", lambda w: w.member_call("GET", "/catalog", params={"cursor": cursor(LONG)}),
     400, "invalid_cursor"),
    ("catalog limit 5000 digits", lambda w: w.member_call("GET", "/catalog", params={"limit": "9" * 5000}),
     422, "validation_error"),
    # partner API (signed by the channel)
    ("grant member_id 3001 chars", lambda w: w.grant(member_id=LONG), 422, "validation_error"),
    ("grant grant_id 3001 chars", lambda w: w.grant(grant_id=LONG), 422, "validation_error"),
    ("grant points 50 digits", lambda w: w.grant(points=HUGE), 422, "validation_error"),
    ("grant expires_at 50 digits", lambda w: w.grant(expires_at=HUGE), 422, "validation_error"),
    ("partner channel code 3001 chars", lambda w: requests.get(f"{w.base}/partner/{LONG}/quota", timeout=60),
     400, "invalid_path_parameter"),
    # suppliers
    ("goods ref 3001 chars", lambda w: w.supplier("POST", "/supplier/goods", json={
        "ref": LONG, "title": "t", "category": "food", "skus": [sku()]}), 422, "validation_error"),
    ("goods sku_id 3001 chars", lambda w: w.supplier("POST", "/supplier/goods", json={
        "ref": uid("r-"), "title": "t", "category": "food", "skus": [sku(sku_id=LONG)]}), 422, "validation_error"),
    ("goods settlement price 50 digits", lambda w: w.supplier("POST", "/supplier/goods", json={
        "ref": uid("r-"), "title": "t", "category": "food", "skus": [sku(settlement_price=HUGE)]}),
     422, "validation_error"),
    ("goods image ref 3001 chars", lambda w: w.supplier("POST", "/supplier/goods", json={
        "ref": uid("r-"), "title": "t", "category": "food", "images": [LONG], "skus": [sku()]}),
     422, "validation_error"),
    ("sku path id 3001 chars", lambda w: w.supplier("PUT", f"/supplier/goods/{w.shop.goods_id}/skus/{LONG}",
                                                      json={"stock": 1}), 400, "invalid_path_parameter"),
    ("upload id 3001 chars", lambda w: w.supplier("GET", f"/supplier/uploads/{LONG}"), 400, "invalid_path_parameter"),
    ("supplier API key id 3001 chars", lambda w: requests.get(f"{w.base}/supplier/me", timeout=60,
                                                              headers={"X-Api-Key": f"cmk_{LONG}_secret"}),
     401, "invalid_api_key"),
    # ops
    ("channel cap 50 digits", lambda w: w.ops("POST", "/ops/channels", json={
        "code": uid("b-"), "name": "n", "contact_name": "c", "phone": "+86 10 8888 8888", "points_mode": "hosted",
        "points_per_yuan": 100, "member_points_cap": HUGE, "redemption_quota": 1}), 422, "validation_error"),
    ("period ends_at 50 digits", lambda w: w.ops("POST", f"/ops/channels/{w.shop.code}/periods", json={
        "period_id": "P9", "starts_at": 0, "ends_at": HUGE}), 422, "validation_error"),
    ("period quota 50 digits", lambda w: w.ops("POST", f"/ops/channels/{w.shop.code}/periods", json={
        "period_id": "P9", "starts_at": 0, "ends_at": 2_000_000_000, "quota_points": HUGE}),
     422, "validation_error"),
    ("period id path 3001 chars", lambda w: w.ops("POST", f"/ops/channels/{w.shop.code}/periods/{LONG}/raise",
                                                  json={"points": 1}), 400, "invalid_path_parameter"),
    ("pool price sku key 3001 chars", lambda w: w.ops("PUT", f"/ops/channels/{w.shop.code}/pool/{w.shop.goods_id}",
                                                      json={"prices": {LONG: {"price": 100}}}),
     422, "validation_error"),
    ("approval sku key 3001 chars", lambda w: w.ops("POST", f"/ops/goods/{w.shop.goods_id}/approve",
                                                    json={"base_prices": {LONG: 100}}), 422, "validation_error"),
    ("approval price 50 digits", lambda w: w.ops("POST", f"/ops/goods/{w.shop.goods_id}/approve",
                                                 json={"base_prices": {"S1": HUGE}}), 422, "validation_error"),
    ("topic id 3001 chars", lambda w: w.ops("PUT", f"/ops/channels/{w.shop.code}/topics/{LONG}",
                                            json={"title": "t"}), 400, "invalid_path_parameter"),
    ("topic goods id 3001 chars", lambda w: w.ops("PUT", f"/ops/channels/{w.shop.code}/topics/T1",
                                                  json={"title": "t", "goods_ids": [LONG]}), 422, "validation_error"),
    ("supplier status filter 3001 chars", lambda w: w.ops("GET", "/ops/suppliers", params={"status": LONG}),
     422, "validation_error"),
    ("supplier id 3001 chars", lambda w: w.ops("GET", f"/ops/suppliers/{LONG}"), 400, "invalid_path_parameter"),
    ("sandbox code 3001 chars", lambda w: requests.post(f"{w.base}/sandbox/{LONG}/signature-check", json={},
                                                        timeout=60), 400, "invalid_path_parameter"),
    # orders after payment: parcels, shipping, refunds, carts, partner order reads
    ("ship parcel id 3001 chars", lambda w: w.supplier("POST", f"/supplier/parcels/{LONG}/ship", json={
        "carrier": "SF", "tracking_no": "SF1"}), 400, "invalid_path_parameter"),
    ("ship tracking number 3001 chars", lambda w: w.supplier("POST", "/supplier/parcels/P-none/ship", json={
        "carrier": "SF", "tracking_no": LONG}), 422, "validation_error"),
    ("parcel list limit 5000 digits", lambda w: w.supplier("GET", "/supplier/parcels", params={"limit": "9" * 5000}),
     422, "validation_error"),
    ("parcel list state 3001 chars", lambda w: w.supplier("GET", "/supplier/parcels", params={"state": LONG}),
     422, "validation_error"),
    ("parcel list since 50 digits", lambda w: w.supplier("GET", "/supplier/parcels", params={"since": str(HUGE)}),
     422, "validation_error"),
    ("supplier refund id 3001 chars", lambda w: w.supplier("POST", f"/supplier/refunds/{LONG}/approve"),
     400, "invalid_path_parameter"),
    ("member refund reason 3001 chars", lambda w: w.member_call("POST", "/parcels/P-none/refund-requests",
                                                                json={"reason": LONG}), 422, "validation_error"),
    ("member parcel id 3001 chars", lambda w: w.member_call("POST", f"/parcels/{LONG}/cancel"),
     400, "invalid_path_parameter"),
    ("cart qty 50 digits", lambda w: w.member_call("PUT", f"/cart/lines/{w.shop.goods_id}/S1", json={"qty": HUGE}),
     422, "validation_error"),
    ("cart goods id 3001 chars", lambda w: w.member_call("PUT", f"/cart/lines/{LONG}/S1", json={"qty": 1}),
     400, "invalid_path_parameter"),
    ("partner order id 3001 chars", lambda w: requests.get(f"{w.base}/partner/{w.shop.code}/orders/{LONG}",
                                                           timeout=60), 400, "invalid_path_parameter"),
    ("partner member id 3001 chars", lambda w: requests.get(
        f"{w.base}/partner/{w.shop.code}/members/{LONG}/orders", timeout=60), 400, "invalid_path_parameter"),
    ("ops refund reason 3001 chars", lambda w: w.ops("POST", "/ops/parcels/P-none/refund", json={"reason": LONG}),
     422, "validation_error"),
    ("ops refund id 3001 chars", lambda w: w.ops("GET", f"/ops/refunds/{LONG}"), 400, "invalid_path_parameter"),
]


@pytest.fixture(scope="module")
def world(system, ops) -> World:
    shop = make_shop(system, ops, "hosted")
    return World(shop, shop.member())


@pytest.mark.parametrize("name, call, status, code", CASES, ids=[c[0] for c in CASES])
def test_out_of_bound_input_is_a_4xx_and_writes_nothing(world, name, call, status, code):
    before = tables_digest()
    response = call(world)
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert error_of(response)["code"] == code, response.text[:500]
    assert tables_digest() == before, "a refused request wrote to a table"
