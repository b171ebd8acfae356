"""The app as deployed behind API Gateway's ``api`` stage, and as a function deployed without ``STAGE``.

Each case runs the app in a fresh process with the environment a deployed function gets, on the same
local tables, and hands it API Gateway proxy events of the deployed shape (``requestContext.stage`` =
``api``, host ``xyz.execute-api.us-east-1.amazonaws.com``) through ``app.app(event, context)``, as Lambda
does (tests/deployed_lambda.py). The local path is checked over HTTP against the running local app.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests

from chalicelib.core import config
from deployed_lambda import MARK
from helpers import application, channel, ok, publish, supplier_client, uid
from tools.engines import ROOT
from tools.sign import entry_link

HOST = "xyz.execute-api.us-east-1.amazonaws.com"
OPS_ARN = "arn:aws:iam::123456789012:user/ops-alice"


def event(method: str, resource: str, params: dict[str, str], query: dict[str, str] | None = None,
          headers: dict[str, str] | None = None, body: object = None, user_arn: str | None = None) -> dict:
    """An API Gateway REST proxy event as the ``api`` stage delivers it."""
    path = resource.format(**params)
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
                    "Accept": "application/json", **(headers or {})},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params or None, "stageVariables": None,
        "requestContext": {
            "resourcePath": resource, "httpMethod": method, "path": f"/api{path}", "stage": "api",
            "domainName": HOST, "apiId": "xyz", "accountId": "123456789012", "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9", "userArn": user_arn, "caller": None},
        },
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def run_lambda(events: list[dict], stage: str | None = "prod") -> list[dict]:
    """The responses of a function deployed with ``STAGE=stage`` (None: the variable is not set at all)."""
    env = {k: v for k, v in os.environ.items() if k not in ("STAGE", "PUBLIC_BASE_URL")}
    # What a deployed stage sets itself (.chalice/config.json), pointed at this run's local tables.
    env.update(TABLE_PREFIX=config.TABLE_PREFIX, UPLOAD_BUCKET=config.UPLOAD_BUCKET,
               SESSION_KEY="deployed-stage-test-key")
    if stage is not None:
        env["STAGE"] = stage
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "deployed_lambda.py")], input=json.dumps(events),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith(MARK)][-1]
    return json.loads(line[len(MARK):])


def header(response: dict, name: str) -> str:
    values = (response.get("multiValueHeaders") or {}).get(name) or [(response.get("headers") or {}).get(name, "")]
    return values[0]


def outbox(system) -> str:
    """What the local SMS outbox file holds (no file: nothing was ever written to it)."""
    path = Path(system.sms_outbox)
    return path.read_text(encoding="utf-8") if path.exists() else ""


def entry_query(system, code: str, secret: str, member_id: str, **fields: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(entry_link(system.base_url, code, secret, member_id, **fields)).query))


def test_deployed_entry_redirects_and_links_keep_the_stage(system, ops):
    view, secret = channel(ops)
    code = view["code"]
    home, deep = entry_query(system, code, secret, uid("M-")), entry_query(system, code, secret, uid("M-"),
                                                                          target="/goods/G1")
    entered, targeted, page, shown = run_lambda([
        event("GET", "/entry/{code}", {"code": code}, home, {"Accept": "text/html"}),
        event("GET", "/entry/{code}", {"code": code}, deep),
        event("GET", "/store/{code}", {"code": code}, headers={"Accept": "text/html"}),
        event("GET", "/ops/channels/{code}", {"code": code}, user_arn=OPS_ARN),
    ])
    assert entered["statusCode"] == 302, entered
    assert header(entered, "Location") == f"https://{HOST}/api/store/{code}"
    assert header(targeted, "Location") == f"https://{HOST}/api/store/{code}#/goods/G1"
    assert "; Secure" in header(entered, "Set-Cookie")
    assert page["statusCode"] == 200 and f'data-channel="{code}"' in page["body"]
    assert json.loads(shown["body"])["entry_link"] == f"https://{HOST}/api/entry/{code}"


def test_local_entry_redirects_to_the_local_base(system, ops):
    view, secret = channel(ops)
    code = view["code"]
    r = requests.get(f"{system.base_url}/entry/{code}", params=entry_query(system, code, secret, uid("M-")),
                     allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == f"{system.base_url}/store/{code}"
    assert requests.get(r.headers["Location"], timeout=30).status_code == 200


def test_a_function_deployed_without_stage_fails_closed(system, ops):
    """No STAGE is not the local stage: no local ops token, no cookie without Secure, no SMS outbox file."""
    view, secret = channel(ops, payment_auth="otp")
    code = view["code"]
    number = "139" + str(uuid.uuid4().int)[:8]
    token = {"Authorization": f"Bearer {system.ops_token}"}  # LOCAL_OPS_TOKEN is in the environment too

    def events() -> list[dict]:  # fresh nonces per run
        return [event("GET", "/ops/channels/{code}", {"code": code}, headers=token),
                event("GET", "/entry/{code}", {"code": code}, entry_query(system, code, secret, uid("M-"),
                                                                         mobile=number)),
                event("POST", "/api/{code}/otp", {"code": code}, headers={"Authorization": "Bearer {{session}}"})]

    ops_call, entered, sent = run_lambda(events(), stage=None)
    assert ops_call["statusCode"] == 403, ops_call
    assert json.loads(ops_call["body"])["error"]["code"] == "ops_auth_required"
    assert entered["statusCode"] == 302 and "; Secure" in header(entered, "Set-Cookie"), entered
    assert sent["statusCode"] == 200, sent  # sent through SNS (moto here), not written to a file
    assert number not in outbox(system)

    # The same function with STAGE=local does take the token and the outbox: the difference is STAGE alone.
    ops_call, entered, sent = run_lambda(events(), stage="local")
    assert ops_call["statusCode"] == 200, ops_call
    assert "; Secure" not in header(entered, "Set-Cookie")
    assert number in outbox(system)


def test_suppliers_see_platform_not_ops_arns(system, ops):
    """Ops act as IAM ARNs (account id, user name); a supplier's own views show "platform" instead."""
    created, = run_lambda([event("POST", "/ops/suppliers", {}, body=application(), user_arn=OPS_ARN)])
    assert created["statusCode"] == 201, created
    body = json.loads(created["body"])
    sup = supplier_client(system, body["api_key"])
    supplier_id = body["supplier"]["supplier_id"]
    goods = publish(sup)
    approved, = run_lambda([event("POST", "/ops/goods/{goods_id}/approve", {"goods_id": goods["goods_id"]},
                                  body={"base_prices": {"S1": 2000}}, user_arn=OPS_ARN)])
    assert approved["statusCode"] == 200, approved

    me = sup.get("/supplier/me")
    assert ok(me)["created_by"] == "platform"
    trail = sup.get(f"/supplier/goods/{goods['goods_id']}/audit")
    actors = {r["action"]: r["actor"] for r in ok(trail)["audit"]}
    assert actors["published"] == f"supplier:{supplier_id}" and actors["approved"] == "platform", actors
    for response in (me, trail):
        assert "123456789012" not in response.text and "ops-alice" not in response.text

    # Ops views keep the real actor.
    assert ok(ops.get(f"/ops/suppliers/{supplier_id}"))["supplier"]["created_by"] == OPS_ARN
    ops_actors = {r["action"]: r["actor"] for r in ok(ops.get(f"/ops/goods/{goods['goods_id']}/audit"))["audit"]}
    assert ops_actors["approved"] == OPS_ARN

