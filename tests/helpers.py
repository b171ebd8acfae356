"""Factories shared by the HTTP tests: every object gets a fresh id so tests never share state."""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from conftest import Api


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def error_of(response) -> dict:
    """The contract error body, asserting its shape: ``{"error": {"code", "message"}}``."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] and body["error"]["message"], body
    return body["error"]


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    error = error_of(response)
    assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error


def ok(response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


# --- suppliers ---------------------------------------------------------------

def application(**overrides: Any) -> dict:
    data = {
        "name": f"Supplier {uid()}",
        "contact_name": "Li Lei",
        "phone": "+86 138 0000 0000",
        "email": f"{uid()}@example.com",
        "licence_no": f"LIC-{uid()}",
        "bank_account": {"bank": "ICBC", "account_name": "Li Lei Trading", "account_no": "6222 0000 1111 2222"},
    }
    data.update(overrides)
    return data


def supplier_client(system, api_key: str) -> Api:
    return Api(system.base_url, {"X-Api-Key": api_key})


def supplier_api(system, ops: Api, **overrides: Any) -> tuple[Api, str]:
    """An active supplier created by ops, and a client carrying its API key."""
    body = ok(ops.post("/ops/suppliers", json=application(**overrides)), 201)
    return supplier_client(system, body["api_key"]), body["supplier"]["supplier_id"]


# --- goods --------------------------------------------------------------------

def sku(sku_id: str = "S1", settlement_price: int = 1000, stock: int = 10, spec: str = "standard") -> dict:
    return {"sku_id": sku_id, "spec": spec, "settlement_price": settlement_price, "stock": stock}


def draft(ref: str | None = None, skus: list[dict] | None = None, **overrides: Any) -> dict:
    data = {"ref": ref or uid("ref-"), "title": "Tea gift box", "description": "Longjing, 250 g",
            "images": [], "category": "food", "skus": skus or [sku()]}
    data.update(overrides)
    return data


def publish(sup: Api, ref: str | None = None, skus: list[dict] | None = None, **overrides: Any) -> dict:
    return ok(sup.post("/supplier/goods", json=draft(ref, skus, **overrides)), 201)


def approve(ops: Api, goods: dict, base_prices: dict[str, int] | None = None, allow_loss: bool = False) -> dict:
    prices = base_prices or {s["sku_id"]: s["settlement_price"] * 2 for s in goods["skus"]}
    return ok(ops.post(f"/ops/goods/{goods['goods_id']}/approve",
                       json={"base_prices": prices, "allow_loss": allow_loss}))


def approved_goods(system, ops: Api, sup: Api | None = None, skus: list[dict] | None = None,
                   base_prices: dict[str, int] | None = None) -> tuple[Api, dict]:
    """Goods in the master pool (published and approved), with the supplier client that owns it."""
    if sup is None:
        sup, _ = supplier_api(system, ops)
    goods = approve(ops, publish(sup, skus=skus), base_prices)
    assert goods["status"] == "approved"
    return sup, goods


def audit_rows(api: Api, path: str, action: str | None = None) -> list[dict]:
    rows = ok(api.get(path))["audit"]
    return [r for r in rows if action is None or r["action"] == action]


def value(text: str | None) -> Any:
    """An audit old/new value (stored as JSON text, strings as they are)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- channels -----------------------------------------------------------------

def channel_body(code: str | None = None, **overrides: Any) -> dict:
    data = {"code": code or uid("t-"), "name": "Bank of Tests", "contact_name": "Han Meimei",
            "phone": "+86 10 8888 8888", "settlement_period": "monthly", "points_mode": "hosted",
            "points_per_yuan": 100, "member_points_cap": 500_000, "redemption_quota": 10_000_000}
    data.update(overrides)
    return data


def channel(ops: Api, code: str | None = None, **overrides: Any) -> tuple[dict, str]:
    """A new channel's view and its secret (shown only at creation)."""
    body = ok(ops.post("/ops/channels", json=channel_body(code, **overrides)), 201)
    return body["channel"], body["secret"]


def pool_item(ops: Api, code: str, goods_id: str) -> dict:
    items = [i for i in ok(ops.get(f"/ops/channels/{code}/pool"))["items"] if i["goods_id"] == goods_id]
    assert len(items) == 1, items
    return items[0]


# --- polling ------------------------------------------------------------------

def wait_for(fetch, done, timeout: float = 15.0, interval: float = 0.1):
    """Call ``fetch`` until ``done(result)``; the last result, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last: {result}")
        time.sleep(interval)


def race(n: int, call) -> list:
    """Run ``call(i)`` for i in 0..n-1 in threads released together; their results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
