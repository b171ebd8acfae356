"""A new channel integrates alone, with nothing but what the kit hands it: the Python snippet exec'd from its own
integration guide, and the OpenAPI document (every path, request body and answer it uses is looked up and
checked there). Ops create its sandbox channel; the integrator's back end verifies our signed password call and
our webhook with the snippet; it signs an entry link, grants points, places an order as the member, and
receives and verifies the ``order.paid`` webhook. Its guide's checklist then shows those steps ticked."""
from __future__ import annotations

import hmac
import json
import re
import threading
import time
import uuid
from typing import Any

import boto3
import jsonschema
import requests

from chalicelib.partners import webhooks
from helpers import approved_goods, ok, wait_for
from infra.state_machines import ORDER_FULFILMENT
from local_http import LocalHttpFake
from tools.stack import state_machine_arn

PASSWORD = "135790"
MEMBER = "M-E2E-张"


def snippet_from_guide(guide_md: str) -> dict[str, Any]:
    """The guide's Python snippet, exactly as a person would copy it out of the page, loaded as a module."""
    code = re.search(r"^### Python 3\.8\+\n\n.*?\n\n```python\n(.*?)\n```$", guide_md, re.M | re.S).group(1)
    namespace: dict[str, Any] = {"__name__": "channel_mall"}
    exec(compile(code, "channel_mall.py", "exec"), namespace)  # noqa: S102 - the point of the test
    return namespace


class Openapi:
    """The integrator's only reference: operations by id, request and answer schemas checked as it goes."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.ops = {op["operationId"]: (method.upper(), path, op) for path, item in doc["paths"].items()
                    for method, op in item.items() if isinstance(op, dict) and "operationId" in op}

    def route(self, operation_id: str, **params: str) -> tuple[str, str, dict]:
        method, path, op = self.ops[operation_id]
        return method, path.format(**params), op

    def check(self, instance: Any, schema: dict) -> None:
        jsonschema.validate(instance, {**schema, "components": self.doc["components"]})

    def check_body(self, op: dict, body: Any) -> None:
        self.check(body, op["requestBody"]["content"]["application/json"]["schema"])

    def check_answer(self, op: dict, response: requests.Response) -> Any:
        documented = op["responses"][str(response.status_code)]
        data = response.json()
        self.check(data, documented["content"]["application/json"]["schema"])
        return data


class ChannelBackEnd(LocalHttpFake):
    """What the integrator builds from the document's webhooks: ``password/verify`` (our call, signed: checked with
    the snippet) and a webhook receiver (Standard Webhooks: checked with the snippet)."""

    def __init__(self, snippet: dict[str, Any]) -> None:
        super().__init__()
        self.snippet = snippet
        self.secret = self.webhook_secret = ""
        self.lock = threading.Lock()
        self.password_calls: list[dict] = []
        self.events: dict[str, dict] = {}  # webhook-id → event, verified
        self.refused: list[str] = []

    def _answer(self, handler: Any, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: Any) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in handler.headers.items()}
        if handler.path == "/webhooks":
            try:
                webhook_id = self.snippet["verify_webhook"](self.webhook_secret, headers, body)
            except self.snippet["WebhookError"] as refused:
                with self.lock:
                    self.refused.append(refused.code)
                return self._answer(handler, 400, {"error": refused.code})
            with self.lock:
                self.events.setdefault(webhook_id, json.loads(body))
            return self._answer(handler, 200, {"received": True})
        if handler.path == "/password/verify":
            params = {"timestamp": headers.get("X-Timestamp", ""), "nonce": headers.get("X-Nonce", ""),
                      "body_sha256": self.snippet["body_sha256"](body)}
            expected = self.snippet["sign"](self.secret, params, "POST", "/password/verify")
            fresh = abs(time.time() - int(params["timestamp"] or 0)) <= self.snippet["WINDOW_SECONDS"]
            if not (fresh and hmac.compare_digest(expected, headers.get("X-Sign", ""))):
                return self._answer(handler, 401, {"error": "bad_signature"})
            data = json.loads(body)
            with self.lock:
                self.password_calls.append(data)
            return self._answer(handler, 200, {"valid": data.get("password") == PASSWORD})
        return self._answer(handler, 404, {"error": "no_such_api"})


def test_a_new_channel_integrates_alone_with_the_guide_and_the_document(system, ops):
    base = system.base_url
    # --- ops: goods in the master pool, the channel's sandbox, its sub-pool and period --------------------
    _, goods = approved_goods(system, ops)
    doc = Openapi(ok(requests.get(f"{base}/docs/openapi.json", timeout=30)))
    code = f"kit-{uuid.uuid4().hex[:8]}"
    with ChannelBackEnd({}) as backend:
        created = ok(ops.post("/ops/channels", json={
            "code": code, "name": "Kit Bank", "contact_name": "Integrator", "phone": "+86 10 1234 5678",
            "points_mode": "hosted", "points_per_yuan": 100, "member_points_cap": 1_000_000,
            "redemption_quota": 10_000_000, "payment_auth": "channel_password", "sandbox": True,
            "api_base_url": backend.url, "webhook_url": f"{backend.url}/webhooks"}), 201)
        now = int(time.time())
        ok(ops.post(f"/ops/channels/{code}/periods", json={"period_id": "P1", "starts_at": now - 10,
                                                            "ends_at": now + 3600}), 201)
        ok(ops.put(f"/ops/channels/{code}/pool/{goods['goods_id']}", json={"prices": {}}))
        guide_md = ops.get(f"/ops/channels/{code}/guide?format=md").text
        assert "- [x]" not in guide_md  # nothing done yet

        # --- the integrator: its secrets from ops, the snippet from its guide -----------------------------
        snippet = snippet_from_guide(guide_md)
        secret, webhook_secret = created["secret"], created["webhook_secret"]
        backend.snippet, backend.secret, backend.webhook_secret = snippet, secret, webhook_secret

        # a member opens the store through a signed entry link
        _, entry_path, entry_op = doc.route("get_entry_code", code=code)
        link = snippet["entry_link"](base, code, secret, MEMBER, nickname="张三")
        assert link.startswith(base + entry_path + "?")
        entered = requests.get(link, allow_redirects=False, timeout=30)
        assert str(entered.status_code) in entry_op["responses"], entered.text
        assert entered.status_code == 302
        token = entered.cookies["cm_session"]
        member_auth = {"Authorization": f"Bearer {token}"}
        assert doc.doc["components"]["securitySchemes"]["memberSession"]["scheme"] == "bearer"

        # its server grants the member points (hosted mode), signed over the exact body bytes
        method, path, op = doc.route("post_partner_code_grants", code=code)
        grant = {"grant_id": f"G-{uuid.uuid4().hex[:8]}", "member_id": MEMBER, "points": 50_000,
                 "expires_at": now + 1800}
        doc.check_body(op, grant)
        body = json.dumps(grant, ensure_ascii=False).encode()
        signed = snippet["signed_headers"](secret, method, path, body)
        granted = requests.request(method, base + path, data=body, timeout=30,
                                   headers={**signed, "Content-Type": "application/json"})
        assert granted.status_code == 201, granted.text
        assert doc.check_answer(op, granted)["points"] == 50_000

        # the member browses and buys, through the member API the store uses
        method, path, op = doc.route("get_api_code_catalog", code=code)
        page = doc.check_answer(op, requests.request(method, base + path, headers=member_auth, timeout=30))
        goods_id = page["items"][0]["goods_id"]
        method, path, op = doc.route("get_api_code_goods_goods_id", code=code, goods_id=goods_id)
        detail = doc.check_answer(op, requests.request(method, base + path, headers=member_auth, timeout=30))
        method, path, op = doc.route("post_api_code_orders", code=code)
        order = {"lines": [{"goods_id": goods_id, "sku_id": detail["skus"][0]["sku_id"], "qty": 1}],
                 "password": PASSWORD, "address": {"name": "张三", "phone": "+86 138 0000 0000", "lines": ["1 Road"]}}
        doc.check_body(op, order)
        [key] = [p for p in op["parameters"] if p["in"] == "header"]
        placed = requests.request(method, base + path, json=order, timeout=60,
                                  headers={**member_auth, key["name"]: uuid.uuid4().hex})
        assert placed.status_code == 201, placed.text
        paid = doc.check_answer(op, placed)
        assert paid["status"] == "paid" and paid["sandbox"] is True
        assert backend.password_calls == [{"member_id": MEMBER, "password": PASSWORD}]

        # the order's event reaches the integrator's webhook, verified with the snippet
        try:
            wait_for(lambda: webhooks.deliver_due(code), lambda _: bool(backend.events), timeout=60, interval=0.2)
        finally:
            _stop_fulfilment(paid["order_id"])
        [event] = backend.events.values()
        assert (event["type"], event["data"]["order_id"], event["sandbox"]) == ("order.paid", paid["order_id"], True)
        assert event["data"]["member_id"] == MEMBER and not backend.refused
        doc.check(event, doc.doc["webhooks"]["order.paid"]["post"]["requestBody"]["content"]["application/json"]
                  ["schema"])

    # what it did is what its guide's checklist now shows (our calls of its paid order: from the orders stream)
    system.streams.drain()
    guide_md = ops.get(f"/ops/channels/{code}/guide?format=md").text
    done = {text for mark, text in re.findall(r"^- \[([ x])\] (.+?) — ", guide_md, re.M) if mark == "x"}
    assert {"Open the store with a signed entry link", "Make a signed server-to-server call",
            "Grant points to a member", "Receive and verify a webhook (answer 2xx)"} <= done, done
    assert any(text.startswith("Serve `password/verify`") for text in done), done


def _stop_fulfilment(order_id: str) -> None:
    """The order's fulfilment execution waits days for shipment: stop it once the test has what it needs."""
    arn = state_machine_arn(ORDER_FULFILMENT).replace(":stateMachine:", ":execution:") + f":{order_id}"
    sfn = boto3.client("stepfunctions")
    try:
        if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
