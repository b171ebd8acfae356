"""Signing contract version 2 over HTTP (PRODUCT.md, "Channel request signing"), inbound and outbound.

Keys outside ``[A-Za-z0-9_.-]{1,64}`` and repeated keys are refused before any
signature is checked (and spend no nonce); a server-to-server signature binds
method and path, so an entry link's signature never authorises an API call and
one route's never authorises another. Checked through ``chalice local`` and
through deployed-shape API Gateway events (stage ``api``, repeated values in
``multiValueQueryStringParameters`` / ``multiValueHeaders``).
"""
from __future__ import annotations

import json
import secrets
import time
from urllib.parse import quote

import pytest
import requests

from api_gateway import event, invoke
from chalicelib.channels.signing import request_headers, signed_params
from fake_channel import FakeChannel
from helpers import assert_error, channel, error_of, ok, uid
from tools.sign import entry_link, signed_request

QUOTA = "/partner/{code}/quota"
GRANTS = "/partner/{code}/grants"


@pytest.fixture
def live(ops):
    """A hosted channel with an open period, so its signed quota read answers 200."""
    view, secret = channel(ops)
    now = int(time.time())
    ok(ops.post(f"/ops/channels/{view['code']}/periods",
                json={"period_id": "P1", "starts_at": now - 10, "ends_at": now + 3600}), 201)
    return view["code"], secret


def link_params(secret: str, member_id: str) -> dict[str, str]:
    return signed_params({"member_id": member_id, "timestamp": str(int(time.time())),
                          "nonce": secrets.token_hex(12)}, secret)


def query_string(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def get(system, path: str, pairs: list[tuple[str, str]] = (), headers: dict | None = None) -> requests.Response:
    url = f"{system.base_url}{path}" + (f"?{query_string(list(pairs))}" if pairs else "")
    return requests.get(url, headers=headers or {}, allow_redirects=False, timeout=30)


def quota_headers(code: str, secret: str, method: str = "GET", path: str | None = None) -> dict[str, str]:
    return request_headers(method, path or QUOTA.format(code=code), b"", secret)


# --- server-to-server signatures bind method and path ------------------------------------------------

def test_signed_quota_read(system, live):
    code, secret = live
    assert ok(get(system, QUOTA.format(code=code), headers=quota_headers(code, secret)))["limit"] == 10_000_000


def test_an_unused_entry_link_never_works_as_a_signed_quota_read(system, live):
    """The review's attack on v1: an entry link's parameters replayed on ``GET /partner/{code}/quota``."""
    code, secret = live
    params = link_params(secret, uid("M-"))
    r = get(system, QUOTA.format(code=code), list(params.items()))
    assert_error(r, 401, "bad_signature")
    entered = get(system, f"/entry/{code}", list(params.items()))
    assert entered.status_code == 302, entered.text   # refused without spending the link's nonce


@pytest.mark.parametrize("method, path", [
    ("POST", GRANTS),                       # signed for another route of the same channel
    ("GET", "/api" + QUOTA),                # with the API stage prefix
    ("GET", QUOTA + "/"),                   # not the path as sent
])
def test_a_signature_for_one_route_never_authorises_another(system, live, method, path):
    code, secret = live
    headers = request_headers(method, path.format(code=code), b"", secret)
    assert_error(get(system, QUOTA.format(code=code), headers=headers), 401, "bad_signature")


def test_a_grant_signed_for_another_channel_never_mints_points(system, ops):
    (a, _), (b, secret_b) = channel(ops), channel(ops)
    a, b = a["code"], b["code"]
    body = json.dumps({"grant_id": uid("g-"), "member_id": "M1", "points": 100,
                       "expires_at": int(time.time()) + 3600}).encode()
    headers = {**request_headers("POST", GRANTS.format(code=a), body, secret_b), "Content-Type": "application/json"}
    r = requests.post(f"{system.base_url}{GRANTS.format(code=b)}", data=body, headers=headers, timeout=30)
    assert_error(r, 401, "bad_signature")


# --- keys and duplicates are refused before any signature, and spend nothing -------------------------

@pytest.mark.parametrize("key", ["a=b", "a&b", "member_id=V&x", "a b", "é", "x" * 65])
def test_keys_outside_the_alphabet_are_refused_before_the_signature(system, live, key):
    code, secret = live
    params = link_params(secret, uid("M-"))
    r = get(system, f"/entry/{code}", list(params.items()) + [(key, "1")])
    assert_error(r, 400, "invalid_parameter")
    assert "Set-Cookie" not in r.headers
    assert get(system, f"/entry/{code}", list(params.items())).status_code == 302   # nonce still unspent


def test_an_empty_key_is_refused(system, live):
    code, secret = live
    params = link_params(secret, uid("M-"))
    url = f"{system.base_url}/entry/{code}?{query_string(list(params.items()))}&=x"
    assert_error(requests.get(url, allow_redirects=False, timeout=30), 400, "invalid_parameter")


def test_a_repeated_query_key_on_an_api_call(system, live):
    code, secret = live
    headers = request_headers("GET", QUOTA.format(code=code), b"", secret, {"period": "P1"})
    r = get(system, QUOTA.format(code=code), [("period", "P1"), ("period", "P2")], headers)
    assert_error(r, 400, "duplicate_parameter", "period")


@pytest.mark.parametrize("name", ["timestamp", "nonce", "sign"])
def test_an_envelope_field_as_header_and_query_parameter_is_a_duplicate(system, live, name):
    code, secret = live
    headers = quota_headers(code, secret)
    value = headers[f"X-{name.capitalize()}"]
    r = get(system, QUOTA.format(code=code), [(name, value)], headers)
    assert_error(r, 400, "duplicate_parameter", name)
    assert ok(get(system, QUOTA.format(code=code), headers=headers))  # the genuine call's nonce was not spent


def test_query_parameters_of_an_api_call_are_signed(system, live):
    code, secret = live
    headers = request_headers("GET", QUOTA.format(code=code), b"", secret, {"view": "full"})
    assert ok(get(system, QUOTA.format(code=code), [("view", "full")], headers))
    headers = request_headers("GET", QUOTA.format(code=code), b"", secret, {"view": "full"})
    assert_error(get(system, QUOTA.format(code=code), [("view", "short")], headers), 401, "bad_signature")


# --- deployed shape: API Gateway, stage "api" ---------------------------------------------------------

def quota_event(code: str, headers: dict[str, list[str]], query: dict[str, list[str]] | None = None) -> dict:
    return event("GET", QUOTA.format(code=code), QUOTA, {"code": code}, query=query, headers=headers)


def test_deployed_signature_covers_the_path_without_the_stage(system, live):
    code, secret = live
    good = {k: [v] for k, v in quota_headers(code, secret).items()}
    answer = invoke(system, quota_event(code, good))
    assert answer.status_code == 200, answer.text
    staged = {k: [v] for k, v in quota_headers(code, secret, path=f"/api{QUOTA.format(code=code)}").items()}
    answer = invoke(system, quota_event(code, staged))
    assert (answer.status_code, error_of(answer)["code"]) == (401, "bad_signature")


def test_deployed_repeated_header_is_a_duplicate(system, live):
    code, secret = live
    headers = quota_headers(code, secret)
    other = quota_headers(code, secret)
    multi = {k: [v] for k, v in headers.items()}
    multi["X-Sign"] = [other["X-Sign"], headers["X-Sign"]]
    answer = invoke(system, quota_event(code, multi))
    assert (answer.status_code, error_of(answer)["code"]) == (400, "duplicate_parameter")
    assert invoke(system, quota_event(code, {k: [v] for k, v in headers.items()})).status_code == 200


def test_deployed_repeated_query_value_on_an_entry_link(system, live):
    """API Gateway keeps every value in ``multiValueQueryStringParameters``; the entry sees them all."""
    code, secret = live
    victim, attacker = uid("V-"), uid("A-")
    params = link_params(secret, attacker)
    query = {k: [v] for k, v in params.items()}
    query["member_id"] = [attacker, victim]
    answer = invoke(system, event("GET", f"/entry/{code}", "/entry/{code}", {"code": code}, query=query))
    assert (answer.status_code, error_of(answer)["code"]) == (400, "duplicate_parameter")
    query["member_id"] = [attacker]
    answer = invoke(system, event("GET", f"/entry/{code}", "/entry/{code}", {"code": code}, query=query))
    assert answer.status_code == 302, answer.text


def test_deployed_invalid_key_on_an_api_call(system, live):
    code, secret = live
    headers = {k: [v] for k, v in quota_headers(code, secret).items()}
    answer = invoke(system, quota_event(code, headers, {"a=b": ["1"]}))
    assert (answer.status_code, error_of(answer)["code"]) == (400, "invalid_parameter")


# --- our calls to the channel: method and the path after its registered base URL ---------------------

@pytest.fixture
def fake():
    server = FakeChannel().start()
    yield server
    server.stop()


def code_channel(ops, fake: FakeChannel) -> str:
    view, secret = channel(ops, entry_mode="code", api_base_url=fake.base_url)
    fake.secret = secret
    return view["code"]


def test_outbound_call_signs_the_path_after_a_base_url_with_a_path(system, ops, fake):
    fake.base_path = "/open-api/v1"
    code = code_channel(ops, fake)
    fake.member("one-time-1", uid("EXT-"))
    r = get(system, f"/entry/{code}", [("code", "one-time-1")])
    assert r.status_code == 302, r.text
    [call] = fake.calls
    assert (call.method, call.path, call.signature_ok) == ("POST", "/member/exchange", True)


def test_the_fake_channel_refuses_a_signature_over_another_path(system, ops, fake):
    """Registered base ``…/open-api/v1`` but the fake verifies the full path: the signature (over
    ``/member/exchange``) does not cover what it checks, so it refuses, and no member is entered."""
    fake.base_path = "/open-api/v1"
    view, secret = channel(ops, entry_mode="code", api_base_url=fake.base_url)
    fake.secret, fake.base_path = secret, ""
    fake.member("one-time-2", uid("EXT-"))
    r = get(system, f"/entry/{view['code']}", [("code", "one-time-2")])
    assert r.status_code in (401, 502) and "Set-Cookie" not in r.headers, r.text
    [call] = fake.calls
    assert (call.path, call.signature_ok, call.signature_error) == ("/open-api/v1/member/exchange", False,
                                                                    "bad_signature")


# --- the demo signer (tools/sign.py) follows version 2 ---------------------------------------------------

def test_demo_signer_entry_link_and_server_to_server_call(system, live):
    code, secret = live
    link = entry_link(system.base_url, code, secret, uid("M 1/"), nickname="张三")
    assert "%20" in link and "+" not in link.split("?", 1)[1]
    assert requests.get(link, allow_redirects=False, timeout=30).status_code == 302
    url, headers = signed_request(system.base_url, secret, "GET", f"/partner/{code}/quota?view=full")
    assert ok(requests.get(url, headers=headers, timeout=30))["limit"] == 10_000_000
    body = json.dumps({"grant_id": uid("g-"), "member_id": uid("M-"), "points": 10,
                       "expires_at": int(time.time()) + 600}).encode()
    url, headers = signed_request(system.base_url, secret, "POST", f"/partner/{code}/grants", body)
    assert requests.post(url, data=body, headers=headers, timeout=30).status_code == 201
