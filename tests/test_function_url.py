"""Two doors, one app: every channel-facing route answered through the Lambda function URL door (payload 2.0,
``app.channel_door``) exactly as through API Gateway (REST payload 1.0, stage ``api``).

Each step is built twice, once per door, from one description (method, route template, path parameters, query
pairs in order, headers, cookies, body): the REST event as API Gateway sends it, the function URL event as AWS
documents it (``rawPath``, ``rawQueryString``, comma-joined ``queryStringParameters``, ``cookies``, base64 bodies,
no stage). Writes are made by a twin member per door so both doors see the same state; answers are compared
whole, with only ids, timestamps and session tokens masked, and links compared relative to each door's base."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from chalice.local import LambdaContext

from checkout_helpers import PASSWORD, make_shop
from chalicelib.channels.signing import request_headers, signed_params
from chalicelib.core import config, function_url
from helpers import ok, uid, wait_for
from tools.sign import entry_link

API_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
URL_HOST = "k3xq7example.lambda-url.us-east-1.on.aws"
STAGE = "api"
REST, URL = "rest", "url"
# Values that differ between two twin writes (or two sessions) and nothing else.
VOLATILE_KEY = re.compile(r"(^|_)(id|at|token|nonce|expires|deadline|time)$|^(timestamp|sign|clock_skew_seconds)$")
STABLE_IDS = {"goods_id", "sku_id", "supplier_id", "period_id", "topic_id"}


@dataclass
class Call:
    """One request, door-independent: ``path`` parameters unencoded, ``query`` in the order sent."""

    method: str
    resource: str
    params: dict[str, str]
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)
    body: bytes | None = None
    base64_body: bool = False

    @property
    def raw_path(self) -> str:
        return self.resource.format(**{k: quote(v, safe="") for k, v in self.params.items()})


def rest_event(call: Call) -> dict[str, Any]:
    headers: dict[str, list[str]] = {"Host": [API_HOST], "X-Forwarded-Proto": ["https"],
                                     **{k: [v] for k, v in call.headers.items()}}
    if call.cookies:
        headers["Cookie"] = ["; ".join(call.cookies)]
    query: dict[str, list[str]] = {}
    for key, value in call.query:
        query.setdefault(key, []).append(value)
    path = call.resource.format(**call.params)
    return {
        "resource": call.resource, "path": path, "httpMethod": call.method,
        "headers": {k: v[-1] for k, v in headers.items()}, "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": call.params or None, "stageVariables": None,
        "requestContext": {"resourcePath": call.resource, "httpMethod": call.method, "path": f"/{STAGE}{path}",
                           "stage": STAGE, "requestId": str(uuid.uuid4()), "accountId": "123456789012",
                           "apiId": "abc123", "domainName": API_HOST, "identity": {"sourceIp": "203.0.113.7"}},
        "body": call.body.decode() if call.body is not None else None, "isBase64Encoded": False,
    }


def url_event(call: Call) -> dict[str, Any]:
    """As AWS documents payload 2.0 for function URLs: header names lower-case, repeats comma-joined."""
    joined: dict[str, list[str]] = {}
    for key, value in call.query:
        joined.setdefault(key, []).append(value)
    body: str | None = None
    if call.body is not None:
        body = base64.b64encode(call.body).decode() if call.base64_body else call.body.decode()
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": call.raw_path,
        "rawQueryString": "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in call.query),
        "headers": {"host": URL_HOST, "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7",
                    **{k.lower(): v for k, v in call.headers.items()}},
        "queryStringParameters": {k: ",".join(v) for k, v in joined.items()} or None,
        "requestContext": {"accountId": "anonymous", "apiId": "k3xq7example", "domainName": URL_HOST,
                           "domainPrefix": "k3xq7example", "requestId": str(uuid.uuid4()), "routeKey": "$default",
                           "stage": "$default", "time": "25/Nov/2026:22:00:00 +0000",
                           "timeEpoch": int(time.time() * 1000),
                           "http": {"method": call.method, "path": call.raw_path, "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.7", "userAgent": "test"}},
        "body": body, "pathParameters": None, "isBase64Encoded": call.base64_body, "stageVariables": None,
    }
    if call.cookies:
        event["cookies"] = list(call.cookies)
    return event


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def through(system, door: str, call: Call) -> Answer:
    if door == REST:
        raw = system.app.app(rest_event(call), LambdaContext("api_handler", 1024))
        headers = dict(raw.get("headers") or {})
        cookies = []
        for name, values in (raw.get("multiValueHeaders") or {}).items():
            if name.lower() == "set-cookie":
                cookies.extend(values)
            else:
                headers[name] = values[-1]
        if "Set-Cookie" in headers:
            cookies.append(headers.pop("Set-Cookie"))
        body = raw.get("body") or ""
    else:
        raw = system.app.channel_door(url_event(call), LambdaContext("channel_door", 1024))
        headers, cookies = dict(raw.get("headers") or {}), list(raw.get("cookies") or [])
        body = base64.b64decode(raw["body"]).decode() if raw.get("isBase64Encoded") else raw.get("body") or ""
    return Answer(raw["statusCode"], {k.lower(): v for k, v in headers.items()}, cookies, body)


def masked(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if key not in STABLE_IDS and VOLATILE_KEY.search(key):
        return "<volatile>"
    return value


def comparable(answer: Answer, door: str) -> dict[str, Any]:
    """What must be equal through both doors: status, content type, the body (ids masked), where a redirect
    leads (relative to the door's own base), which cookie is set with which attributes."""
    base = f"https://{API_HOST}/{STAGE}" if door == REST else f"https://{URL_HOST}"
    location = answer.headers.get("location")
    if location is not None:
        assert location.startswith(base + "/"), (door, location)
        location = location[len(base):]
    try:
        body = masked(answer.json())
    except ValueError:
        body = answer.body
    return {"status": answer.status, "type": answer.headers.get("content-type"), "location": location,
            "cache": answer.headers.get("cache-control"), "body": body,
            "cookies": [(c.split("=", 1)[0], c.split(";", 1)[1:]) for c in answer.cookies]}


def both(system, build) -> tuple[Answer, Answer]:
    """``build(door)`` → the door's Call; the two answers, asserted equal. A read whose answers differ is asked
    again once through both doors (a clock second may tick between the two calls); a difference between the
    doors themselves persists."""
    rest, url = through(system, REST, build(REST)), through(system, URL, build(URL))
    if comparable(rest, REST) != comparable(url, URL) and build(REST).method == "GET":
        rest, url = through(system, REST, build(REST)), through(system, URL, build(URL))
    assert comparable(rest, REST) == comparable(url, URL)
    return rest, url


def signed(method: str, resource: str, params: dict[str, str], secret: str, body: bytes | None = None,
           query: list[tuple[str, str]] | None = None, base64_body: bool = False) -> Call:
    """A server-to-server call signed over METHOD, the path as sent (no stage on either door) and its query."""
    call = Call(method, resource, params, list(query or []), body=body, base64_body=base64_body)
    call.headers = request_headers(method, call.raw_path, body, secret, dict(call.query))
    if body is not None:
        call.headers["Content-Type"] = "application/json"
    return call


def entry(code: str, secret: str, member: str, **fields: str) -> Call:
    params = {"member_id": member, **fields, "timestamp": str(int(time.time())), "nonce": uuid.uuid4().hex}
    return Call("GET", "/entry/{code}", {"code": code}, list(signed_params(params, secret).items()),
                headers={"Accept": "application/json"})


@pytest.fixture(autouse=True)
def deployed_links(monkeypatch):
    """API Gateway's links as deployed without a custom domain (the local run pins a public base URL); the
    function URL door builds its links on its own host either way."""
    monkeypatch.setattr(config, "PUBLIC_BASE_URL", "")


@pytest.fixture(scope="module")
def shop(system, ops):
    made = make_shop(system, ops, "hosted")
    ok(ops.patch(f"/ops/channels/{made.code}", json={"cart_enabled": True}))
    return made


@pytest.fixture(scope="module")
def twins(system, shop) -> dict[str, str]:
    """One member per door (same profile), entered through that door; its session cookie."""
    names = {REST: uid("rest-"), URL: uid("url-")}
    sessions = {}
    for door, member in names.items():
        shop.fake.member(member, PASSWORD, 0)
        answer = through(system, door, entry(shop.code, shop.secret, member, nickname="Zhang, San/张三",
                                             target="/goods?x=1&y=2"))
        assert answer.status == 302, answer
        [cookie] = answer.cookies
        sessions[door] = cookie.split(";", 1)[0]
        ok_grant = through(system, door, signed("POST", "/partner/{code}/grants", {"code": shop.code}, shop.secret,
                                                json.dumps({"member_id": member, "grant_id": uid("g-"),
                                                            "points": 50_000,
                                                                "expires_at": shop.ends_at}).encode()))
        assert ok_grant.status == 201, ok_grant
    return sessions


def test_entry_redirect_and_session_cookie_are_the_same_through_both_doors(system, shop):
    member = uid("m-")
    rest, url = both(system, lambda door: entry(shop.code, shop.secret, f"{member}-{door}", nickname="Li, Lei 李"))
    assert rest.status == 302 and rest.cookies and url.cookies
    assert urlsplit(url.headers["location"]).path.startswith(f"/store/{shop.code}")  # no stage on the URL door


def test_a_repeated_entry_parameter_is_refused_through_both_doors(system, shop):
    """payload 2.0 joins repeats with a comma (``member_id=a,b``); the door reads rawQueryString instead."""
    def build(door: str) -> Call:
        call = entry(shop.code, shop.secret, uid("m-"))
        call.query.append(("member_id", "someone-else"))
        return call

    rest, _ = both(system, build)
    assert (rest.status, rest.json()["error"]["code"]) == (400, "duplicate_parameter")


def test_a_comma_inside_a_signed_value_still_verifies_through_the_door(system, shop):
    """Against ``queryStringParameters`` a comma in one value and two values look alike; the signature
    covers the one value as sent."""
    answer = through(system, URL, entry(shop.code, shop.secret, uid("m-"), nickname="a,b,c"))
    assert answer.status == 302, answer


def test_store_page(system, shop):
    rest, _ = both(system, lambda door: Call("GET", "/store/{code}", {"code": shop.code}))
    assert rest.status == 200 and rest.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("resource", ["/api/{code}/me", "/api/{code}/catalog", "/api/{code}/topics",
                                      "/api/{code}/wallet", "/api/{code}/cart", "/api/{code}/orders",
                                      "/api/{code}/sales"])
def test_member_reads_with_the_session_cookie(system, shop, twins, resource):
    rest, _ = both(system, lambda door: Call("GET", resource, {"code": shop.code}, cookies=[twins[door]]))
    assert rest.status == 200, rest


def test_member_reads_without_a_session_are_refused_alike(system, shop):
    rest, _ = both(system, lambda door: Call("GET", "/api/{code}/wallet", {"code": shop.code}))
    assert rest.status == 401, rest


def test_goods_detail_and_cart_lines(system, shop, twins):
    params = {"code": shop.code, "goods_id": shop.goods_id}
    rest, _ = both(system, lambda door: Call("GET", "/api/{code}/goods/{goods_id}", params, cookies=[twins[door]]))
    assert rest.status == 200
    line = {**params, "sku_id": shop.sku_id}
    resource = "/api/{code}/cart/lines/{goods_id}/{sku_id}"
    rest, _ = both(system, lambda door: Call("PUT", resource, line, cookies=[twins[door]],
                                             headers={"Content-Type": "application/json"}, body=b'{"qty": 2}',
                                             base64_body=door == URL))
    assert rest.status == 200, rest
    both(system, lambda door: Call("DELETE", resource, line, cookies=[twins[door]]))


def test_checkout_orders_parcels_and_refunds(system, shop, twins):
    body = json.dumps({"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id, "qty": 1}],
                       "password": PASSWORD}).encode()
    placed = both(system, lambda door: Call("POST", "/api/{code}/orders", {"code": shop.code}, cookies=[twins[door]],
                                            headers={"Content-Type": "application/json",
                                                     "Idempotency-Key": uid("k-")},
                                            body=body, base64_body=door == URL))
    assert placed[0].status == 201, placed[0]
    order_ids = {REST: placed[0].json()["order_id"], URL: placed[1].json()["order_id"]}
    parcels = {}
    for door in (REST, URL):
        order = wait_for(lambda d=door: through(system, d, Call("GET", "/api/{code}/orders/{order_id}",
                                                                {"code": shop.code, "order_id": order_ids[d]},
                                                                cookies=[twins[d]])).json(),
                         lambda o: o.get("parcels"), timeout=30)
        parcels[door] = order["parcels"][0]["parcel_id"]
    both(system, lambda door: Call("GET", "/api/{code}/orders/{order_id}",  # both split by now
                                   {"code": shop.code, "order_id": order_ids[door]}, cookies=[twins[door]]))
    for action in ("receipt", "refund"):  # not shipped: refused alike / no refund yet
        method = "POST" if action == "receipt" else "GET"
        both(system, lambda door: Call(method, f"/api/{{code}}/parcels/{{parcel_id}}/{action}",
                                       {"code": shop.code, "parcel_id": parcels[door]}, cookies=[twins[door]]))
    both(system, lambda door: Call("POST", "/api/{code}/parcels/{parcel_id}/refund-requests",
                                   {"code": shop.code, "parcel_id": parcels[door]}, cookies=[twins[door]],
                                   headers={"Content-Type": "application/json"}, body=b'{"reason": "changed my mind"}'))
    cancelled, _ = both(system, lambda door: Call("POST", "/api/{code}/parcels/{parcel_id}/cancel",
                                                  {"code": shop.code, "parcel_id": parcels[door]},
                                                  cookies=[twins[door]]))
    assert cancelled.status in (200, 409), cancelled
    both(system, lambda door: Call("POST", "/api/{code}/otp", {"code": shop.code}, cookies=[twins[door]]))


def test_partner_routes_signed_over_the_same_path_on_both_doors(system, shop, twins):
    members = {door: uid(f"{door}-") for door in (REST, URL)}
    grant = both(system, lambda door: signed(
        "POST", "/partner/{code}/grants", {"code": shop.code}, shop.secret,
        json.dumps({"member_id": members[door], "grant_id": uid("g-"), "points": 700,
                    "expires_at": shop.ends_at}).encode(),
        base64_body=door == URL))
    assert grant[0].status == 201, grant[0]
    assert both(system, lambda door: signed("GET", "/partner/{code}/quota", {"code": shop.code},
                                            shop.secret))[0].status == 200
    listed = both(system, lambda door: signed("GET", "/partner/{code}/members/{member_id}/orders",
                                              {"code": shop.code, "member_id": members[door]}, shop.secret,
                                              query=[("limit", "5")]))
    assert listed[0].status == 200, listed[0]
    points = both(system, lambda door: signed("GET", "/partner/{code}/members/{member_id}/points",
                                              {"code": shop.code, "member_id": members[door]}, shop.secret))
    assert points[0].status == 200 and points[0].json()["balance"] == 700, points[0]
    missing = both(system, lambda door: signed("GET", "/partner/{code}/orders/{order_id}",
                                               {"code": shop.code, "order_id": "O-none"}, shop.secret))
    assert missing[0].status == 404, missing[0]


def test_a_tampered_base64_body_fails_the_signature_on_the_door(system, shop):
    call = signed("POST", "/partner/{code}/grants", {"code": shop.code}, shop.secret,
                  json.dumps({"member_id": "m-1", "grant_id": uid("g-"), "points": 700,
                              "expires_at": shop.ends_at}).encode(), base64_body=True)
    call.body = call.body.replace(b"700", b"900")
    answer = through(system, URL, call)
    assert (answer.status, answer.json()["error"]["code"]) == (401, "bad_signature"), answer


def test_sandbox_signature_check(system, ops):
    sandbox = make_shop(system, ops, "hosted", sandbox=True)
    body = json.dumps({"params": {"member_id": "m-1", "timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}})
    rest, _ = both(system, lambda door: Call("POST", "/sandbox/{code}/signature-check", {"code": sandbox.code},
                                             headers={"Content-Type": "application/json"}, body=body.encode()))
    assert rest.status == 200, rest


def test_every_channel_facing_route_is_served_by_the_door_and_nothing_else(system):
    """The door's routes are exactly the channel-facing ones (no authorizer); ops and supplier routes 404."""
    app = system.app.app
    for path, methods in app.routes.items():
        served = function_url.match(app, path.format(**{p: "x" for p in re.findall(r"{(\w+)}", path)}))
        facing = path.startswith(function_url.CHANNEL_PREFIXES) and all(
            e.authorizer is None for e in methods.values())
        assert (served is not None and served[0] == path) == facing, path
    for method, path in (("GET", "/ops/channels"), ("GET", "/supplier/me"), ("POST", "/ops/suppliers"),
                         ("GET", "/nothing/here")):
        answer = through(system, URL, Call(method, path, {}))
        assert (answer.status, answer.json()["error"]["code"]) == (404, "not_found"), (path, answer)


def test_a_literal_segment_wins_over_a_parameter(system):
    app = system.app.app
    assert function_url.match(app, "/api/c1/orders") == ("/api/{code}/orders", {"code": "c1"})
    assert function_url.match(app, "/api/c%2F1/goods/g%201") == ("/api/{code}/goods/{goods_id}",
                                                                 {"code": "c/1", "goods_id": "g 1"})
    assert function_url.match(app, "/api//orders") is None


def test_the_sample_event_replays(system):
    """``events/channel_door.json``: a documented payload 2.0 request, as ``chalice invoke`` would send it."""
    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "channel_door.json").read_text())
    answer = system.app.channel_door(event, LambdaContext("channel_door", 1024))
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"].startswith("text/html")
    assert "cookies" not in answer


def test_a_member_shops_through_the_local_function_url_door_over_http(system, shop):
    """The local system serves the door too (``tools.door``): an entry link on the door's URL lands in the store
    on the door's host, the session cookie it sets works on the member API there, and an order goes through."""
    member = uid("door-")
    shop.fake.member(member, PASSWORD, 0)
    ok(shop.grant(member, 10_000), 201)
    browser = requests.Session()
    link = entry_link(system.door_url, shop.code, shop.secret, member, nickname="Wang, Wu")
    landed = browser.get(link, allow_redirects=False, timeout=30)
    assert landed.status_code == 302, landed.text
    assert landed.headers["Location"].startswith(f"{system.door_url}/store/{shop.code}")
    store = browser.get(landed.headers["Location"], timeout=30)
    assert store.status_code == 200 and "text/html" in store.headers["Content-Type"]
    assert ok(browser.get(f"{system.door_url}/api/{shop.code}/wallet", timeout=30))["balance"] == 10_000
    placed = browser.post(f"{system.door_url}/api/{shop.code}/orders", headers={"Idempotency-Key": uid("k-")},
                          json={"lines": [{"goods_id": shop.goods_id, "sku_id": shop.sku_id, "qty": 1}],
                                "password": PASSWORD}, timeout=30)
    assert placed.status_code == 201, placed.text
    assert browser.get(f"{system.door_url}/ops/channels", headers={"Authorization": f"Bearer {system.ops_token}"},
                       timeout=30).status_code == 404  # ops stay behind API Gateway's IAM door


def shape(answer: Answer) -> tuple[int, str | None, list[str]]:
    """For answers carrying fresh signed links (each request gets its own): status, type and the keys."""
    return answer.status, answer.headers.get("content-type"), sorted(answer.json())


@pytest.mark.parametrize("path", ["/docs/openapi.json", "/docs/supplier-openapi.json"])
def test_openapi_document(system, path):
    """The same document through both doors, each naming its own base as the server."""
    rest, url = (through(system, door, Call("GET", path, {})) for door in (REST, URL))
    assert rest.status == url.status == 200 and rest.json()["openapi"].startswith("3.1")
    documents = [answer.json() for answer in (rest, url)]
    servers = [document.pop("servers", None) for document in documents]
    assert documents[0] == documents[1]
    assert [s[0]["url"] for s in servers] == [f"https://{API_HOST}/{STAGE}", f"https://{URL_HOST}"]


@pytest.mark.parametrize("resource, params", [
    ("/partner/{code}/statements", {}),
    ("/partner/{code}/statements/current", {}),
    ("/partner/{code}/statements/{statement_id}", {"statement_id": "2026-10.channel.none"}),
    ("/partner/{code}/reconciliations/{period_id}", {"period_id": "2026-10"}),
    ("/partner/{code}/ledger-uploads/{upload_id}", {"upload_id": "U-none"}),
])
def test_settlement_reads_signed_alike(system, shop, resource, params):
    rest, _ = both(system, lambda door: signed("GET", resource, {"code": shop.code, **params}, shop.secret))
    assert rest.status in (200, 404), rest


def test_ledger_posts_and_upload_links_alike(system, shop):
    """A ledger posted as JSON lines (base64 on the door) with a bad row is refused whole alike; an upload link is
    issued alike (each its own signed S3 form)."""
    bad = b'{"order_id": "O-1", "member_id": "m-1", "points": -5, "kind": "deduct", "at": "2026-10-02T00:00:00Z"}\n'
    rest, _ = both(system, lambda door: signed("POST", "/partner/{code}/ledgers/{period_id}",
                                               {"code": shop.code, "period_id": "2026-10"}, shop.secret, bad,
                                               base64_body=door == URL))
    assert rest.status == 422, rest
    links = [through(system, door, signed("POST", "/partner/{code}/ledgers/{period_id}/upload-link",
                                          {"code": shop.code, "period_id": "2026-10"}, shop.secret))
             for door in (REST, URL)]
    assert links[0].status == 201, links[0]
    assert shape(links[0]) == shape(links[1])


def test_the_comparisons_cover_every_channel_facing_route(system):
    """Every route the door serves is compared above (this list is checked against the app's routes)."""
    compared = {
        "/entry/{code}", "/store/{code}", "/docs/openapi.json", "/docs/supplier-openapi.json",
        "/sandbox/{code}/signature-check",
        "/api/{code}/me", "/api/{code}/catalog", "/api/{code}/topics", "/api/{code}/wallet", "/api/{code}/cart",
        "/api/{code}/orders", "/api/{code}/orders/{order_id}", "/api/{code}/goods/{goods_id}",
        "/api/{code}/cart/lines/{goods_id}/{sku_id}", "/api/{code}/otp", "/api/{code}/parcels/{parcel_id}/receipt",
        "/api/{code}/parcels/{parcel_id}/refund", "/api/{code}/parcels/{parcel_id}/refund-requests",
        "/api/{code}/parcels/{parcel_id}/cancel", "/api/{code}/sales", "/partner/{code}/grants", "/partner/{code}/quota",
        "/partner/{code}/members/{member_id}/orders", "/partner/{code}/members/{member_id}/points",
        "/partner/{code}/orders/{order_id}", "/partner/{code}/statements", "/partner/{code}/statements/{statement_id}",
        "/partner/{code}/statements/current",
        "/partner/{code}/reconciliations/{period_id}", "/partner/{code}/ledger-uploads/{upload_id}",
        "/partner/{code}/ledgers/{period_id}", "/partner/{code}/ledgers/{period_id}/upload-link",
    }
    app = system.app.app
    served = {path for path, methods in app.routes.items() if path.startswith(function_url.CHANNEL_PREFIXES)
              and all(e.authorizer is None for e in methods.values())}
    assert served == compared
