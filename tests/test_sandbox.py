"""The integration sandbox over real HTTP: it tells a channel's developer which signing rule broke.

Only sandbox channels have it (created as one, never changed either way); it shows
the string to sign (entry link or server-to-server) and the expected signature,
never the secret, spends no nonce, and is rate-limited. A signature it explains
never opens a live channel.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from api_gateway import event, invoke
from chalicelib.channels.sandbox import PER_ADDRESS, PER_CHANNEL
from chalicelib.channels.signing import canonical, sign
from helpers import assert_error, channel, ok, uid
from test_signing import VECTOR_CANONICAL, VECTOR_PARAMS


@pytest.fixture
def sandbox(ops):
    view, secret = channel(ops, sandbox=True)
    assert view["sandbox"] is True
    return view["code"], secret


def fresh(secret: str | None, **overrides: str) -> dict[str, str]:
    params = {"member_id": "M 1001/å", "nickname": "张三", "target": "/goods/G1?x=1&y=2",
              "timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    params.update(overrides)
    if secret is not None:
        params["sign"] = sign(params, secret)
    return params


def check(anon, code: str, params: dict, their_canonical: str | None = None, secrets_: tuple[str, ...] = ()):
    body = {"params": params, **({"canonical": their_canonical} if their_canonical is not None else {})}
    r = anon.post(f"/sandbox/{code}/signature-check", json=body)
    for secret in secrets_:
        assert secret not in r.text, "the sandbox must never reveal a secret"
    return r


def test_correct_request_passes_and_shows_canonical_and_expected_sign(anon, sandbox):
    code, secret = sandbox
    params = fresh(secret)
    body = ok(check(anon, code, params, canonical(params), (secret,)))
    assert body["ok"] is True and body["failed"] == []
    assert body["signature_ok"] is True
    assert body["canonical"] == canonical({k: v for k, v in params.items() if k != "sign"})
    assert body["canonical"].startswith("member_id=M%201001%2F%C3%A5&nickname=%E5%BC%A0%E4%B8%89&nonce=")
    assert body["expected_sign"] == params["sign"]
    assert abs(body["clock_skew_seconds"]) <= 5
    assert "secret" not in {k.lower() for k in body}


def test_published_vector_canonical_through_the_sandbox(anon, sandbox):
    code, secret = sandbox
    body = ok(check(anon, code, dict(VECTOR_PARAMS), VECTOR_CANONICAL, (secret,)))
    assert body["canonical"] == VECTOR_CANONICAL
    assert body["expected_sign"] == sign(VECTOR_PARAMS, secret)   # this channel's secret, not the vector's
    assert "time_window" in body["failed"]                       # the vector's timestamp is long past
    assert "key_order" not in body["failed"] and "encoding" not in body["failed"]


@pytest.mark.parametrize("skew", [-1000, 1000])
def test_time_window(anon, sandbox, skew):
    code, secret = sandbox
    params = fresh(secret, timestamp=str(int(time.time()) + skew))
    body = ok(check(anon, code, params, secrets_=(secret,)))
    assert body["failed"] == ["time_window"] and body["ok"] is False
    assert body["signature_ok"] is True
    assert abs(body["clock_skew_seconds"] + skew) <= 5


def test_non_numeric_timestamp_is_a_time_window_failure(anon, sandbox):
    code, secret = sandbox
    body = ok(check(anon, code, fresh(secret, timestamp="yesterday"), secrets_=(secret,)))
    assert "time_window" in body["failed"]


@pytest.mark.parametrize("nonce", ["short", "x" * 15, "y" * 65])
def test_nonce_format(anon, sandbox, nonce):
    code, secret = sandbox
    body = ok(check(anon, code, fresh(secret, nonce=nonce), secrets_=(secret,)))
    assert body["failed"] == ["nonce_format"]


def test_wrong_signature(anon, sandbox):
    code, secret = sandbox
    params = fresh("not-the-secret")
    body = ok(check(anon, code, params, secrets_=(secret,)))
    assert body["failed"] == ["signature"] and body["signature_ok"] is False
    assert body["expected_sign"] == sign(params, secret) != params["sign"]


def test_key_order(anon, sandbox):
    code, secret = sandbox
    params = fresh(None)
    unsorted = "&".join(reversed(canonical(params).split("&")))
    assert unsorted != canonical(params)
    params["sign"] = "0" * 64
    body = ok(check(anon, code, params, unsorted, (secret,)))
    assert "key_order" in body["failed"] and "encoding" not in body["failed"]
    assert "signature" in body["failed"]


def test_key_order_case_sensitive_byte_order(anon, sandbox):
    """Sorting case-insensitively (a common mistake) puts 'Zone' after 'appId'; byte order puts it first."""
    code, secret = sandbox
    params = {"appId": "1", "Zone": "cn", "timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    ours = canonical(params)
    assert ours.startswith("Zone=cn&appId=1")
    mistaken = "&".join(sorted(ours.split("&"), key=str.lower))
    params["sign"] = sign(params, secret)
    body = ok(check(anon, code, params, mistaken, (secret,)))
    assert body["failed"] == ["key_order"]


@pytest.mark.parametrize("mistake", [
    lambda c: c.replace("%20", "+"),                                      # form encoding of a space
    lambda c: c.replace("%C3%A5", "%c3%a5"),                              # lower-case hex
    lambda c: c.replace("%2F", "/"),                                      # '/' left unencoded
    lambda c: c.replace("%E5%BC%A0%E4%B8%89", "张三"),                     # non-ASCII left raw
])
def test_encoding(anon, sandbox, mistake):
    code, secret = sandbox
    params = fresh(None)
    theirs = mistake(canonical(params))
    assert theirs != canonical(params)
    params["sign"] = sign(params, secret)
    body = ok(check(anon, code, params, theirs, (secret,)))
    assert body["failed"] == ["encoding"]
    assert body["encoding_example"] == {"space": "%20", "slash": "%2F", "tilde": "~"}


def test_missing_fields(anon, sandbox):
    code, secret = sandbox
    params = fresh(secret)
    del params["nonce"]
    body = ok(check(anon, code, params, secrets_=(secret,)))
    assert "missing_field" in body["failed"] and body["ok"] is False


def test_sandbox_spends_no_nonce_and_reports_a_spent_one(system, anon, sandbox):
    code, secret = sandbox
    params = fresh(secret, member_id=uid("M-"))
    assert ok(check(anon, code, params, secrets_=(secret,)))["failed"] == []
    assert ok(check(anon, code, params, secrets_=(secret,)))["failed"] == []    # checking twice is fine
    r = requests.get(f"{system.base_url}/entry/{code}", params=params, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text                                          # the nonce was still fresh
    assert ok(check(anon, code, params, secrets_=(secret,)))["failed"] == ["nonce_replayed"]


def test_previous_secret_during_rotation_and_no_secret_ever_shown(anon, ops, sandbox):
    code, first = sandbox
    second = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 600}))["secret"]
    body = ok(check(anon, code, fresh(first), secrets_=(first, second)))
    assert body["signature_ok"] is True and body["failed"] == []
    params = fresh(second)
    body = ok(check(anon, code, params, secrets_=(first, second)))
    assert body["failed"] == [] and body["expected_sign"] == params["sign"]


def test_rotation_without_overlap_drops_the_old_secret_at_once(anon, ops, sandbox):
    code, first = sandbox
    second = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 0}))["secret"]
    body = ok(check(anon, code, fresh(first), secrets_=(first, second)))
    assert body["failed"] == ["signature"]
    third = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 0}))["secret"]
    body = ok(check(anon, code, fresh(second), secrets_=(first, second, third)))
    assert body["failed"] == ["signature"]


def test_live_channel_has_no_sandbox(anon, ops):
    view, secret = channel(ops)
    r = check(anon, view["code"], fresh(secret), secrets_=(secret,))
    assert_error(r, 404, "not_found")
    assert "expected_sign" not in r.text and "canonical" not in r.text


def test_unknown_channel_answers_like_a_live_one(anon):
    assert_error(check(anon, uid("nochan-"), fresh("x")), 404, "not_found")


@pytest.mark.parametrize("body", [{"params": "member_id=1"}, {}, {"params": {}, "extra": 1}])
def test_malformed_request(anon, sandbox, body):
    code, _ = sandbox
    assert_error(anon.post(f"/sandbox/{code}/signature-check", json=body), 422, "validation_error")


# --- a sandbox is fixed at creation; only a sandbox explains signatures (defect 1) ---------------------

def test_a_live_channel_can_never_become_a_sandbox(anon, ops):
    """The review's first step: ops (or a stolen ops session) flips ``sandbox`` on a live channel."""
    view, secret = channel(ops)
    code = view["code"]
    assert_error(ops.patch(f"/ops/channels/{code}", json={"sandbox": True}), 409, "sandbox_immutable", "sandbox")
    assert ok(ops.get(f"/ops/channels/{code}"))["sandbox"] is False
    assert not [r for r in ok(ops.get(f"/ops/channels/{code}/audit"))["audit"] if r["field"] == "sandbox"]
    r = check(anon, code, fresh(secret), secrets_=(secret,))
    assert_error(r, 404, "not_found")
    assert "expected_sign" not in r.text and "canonical" not in r.text


def test_a_sandbox_can_never_become_live(ops, sandbox):
    code, _ = sandbox
    assert_error(ops.patch(f"/ops/channels/{code}", json={"sandbox": False}), 409, "sandbox_immutable", "sandbox")
    assert ok(ops.get(f"/ops/channels/{code}"))["sandbox"] is True
    assert ok(ops.patch(f"/ops/channels/{code}", json={"sandbox": True, "name": "Still a sandbox"}))["sandbox"] is True


def test_sign_and_enter_as_a_victim_only_works_inside_the_sandbox(system, anon, ops, sandbox):
    """The review's attack: have the route sign ``{member_id: victim, mobile: attacker's}`` and enter with it."""
    code, secret = sandbox
    live_view, live_secret = channel(ops)
    live = live_view["code"]
    victim = uid("VICTIM-")
    params = fresh(None, member_id=victim, mobile="+86 139 6666 6666")
    del params["target"]
    assert_error(check(anon, live, params, secrets_=(secret, live_secret)), 404, "not_found")  # no live route
    forged = {**params, "sign": ok(check(anon, code, params, secrets_=(secret, live_secret)))["expected_sign"]}
    r = requests.get(f"{system.base_url}/entry/{live}", params=forged, allow_redirects=False, timeout=30)
    assert_error(r, 401, "bad_signature")
    assert "Set-Cookie" not in r.headers
    r = requests.get(f"{system.base_url}/entry/{code}", params=forged, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text                   # inside the sandbox, where it moves nothing of value


def test_a_sandbox_signed_grant_never_mints_points_in_a_live_channel(system, anon, ops, sandbox):
    code, secret = sandbox
    live_view, live_secret = channel(ops)
    live = live_view["code"]
    path = f"/partner/{live}/grants"
    body = json.dumps({"grant_id": uid("g-"), "member_id": "M1", "points": 1_000_000,
                       "expires_at": int(time.time()) + 3600})
    params = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    explained = ok(check_s2s(anon, code, params, "POST", path, body, (secret, live_secret)))
    headers = {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"], "X-Sign": explained["expected_sign"],
               "Content-Type": "application/json"}
    r = requests.post(f"{system.base_url}{path}", data=body.encode(), headers=headers, timeout=30)
    assert_error(r, 401, "bad_signature")


def check_s2s(anon, code: str, params: dict, method: str, path: str, body: str | None = None,
              secrets_: tuple[str, ...] = (), their_string: str | None = None):
    request = {"params": params, "method": method, "path": path,
               **({"body": body} if body is not None else {}),
               **({"canonical": their_string} if their_string is not None else {})}
    r = anon.post(f"/sandbox/{code}/signature-check", json=request)
    for secret in secrets_:
        assert secret not in r.text, "the sandbox must never reveal a secret"
    return r


def test_server_to_server_explained_and_accepted(system, anon, ops, sandbox):
    code, secret = sandbox
    now = int(time.time())
    ok(ops.post(f"/ops/channels/{code}/periods", json={"period_id": "P1", "starts_at": now - 10,
                                                          "ends_at": now + 3600}), 201)
    path = f"/partner/{code}/grants"
    body = json.dumps({"grant_id": uid("g-"), "member_id": uid("M-"), "points": 100, "expires_at": now + 3000})
    params = {"timestamp": str(now), "nonce": secrets.token_hex(12)}
    explained = ok(check_s2s(anon, code, params, "POST", path, body, (secret,)))
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert explained["kind"] == "server_to_server" and explained["body_sha256"] == digest
    assert explained["string_to_sign"] == (f"POST\n{path}\nbody_sha256={digest}&nonce={params['nonce']}"
                                           f"&timestamp={params['timestamp']}")
    assert "signature" in explained["failed"]            # no sign given yet
    headers = {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"], "X-Sign": explained["expected_sign"],
               "Content-Type": "application/json"}
    assert ok(check_s2s(anon, code, {**params, "sign": explained["expected_sign"]}, "POST", path, body,
                        (secret,)))["ok"] is True
    r = requests.post(f"{system.base_url}{path}", data=body.encode(), headers=headers, timeout=30)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("mistake, failure", [
    (lambda m, p, q: q, "method_and_path_missing"),                        # signed the query alone
    (lambda m, p, q: f"{m.lower()}\n{p}\n{q}", "method"),
    (lambda m, p, q: f"{m}\n/api{p}\n{q}", "path"),                          # kept the API stage
])
def test_server_to_server_mistakes_are_named(anon, sandbox, mistake, failure):
    code, secret = sandbox
    path = f"/partner/{code}/quota"
    params = {"timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    params["sign"] = sign(params, secret, "GET", path)
    ours = ok(check_s2s(anon, code, params, "GET", path))
    assert ours["ok"] is True
    body = ok(check_s2s(anon, code, params, "GET", path, their_string=mistake("GET", path, ours["canonical"])))
    assert body["failed"] == [failure]


def test_an_entry_link_string_with_method_lines_is_named(anon, sandbox):
    code, secret = sandbox
    params = fresh(secret)
    body = ok(check(anon, code, params, f"GET\n/entry/{code}\n{canonical(params)}", (secret,)))
    assert body["failed"] == ["entry_link_signs_query_only"]


def test_invalid_keys_are_named(anon, sandbox):
    code, secret = sandbox
    params = fresh(None, **{"a=b": "1"})
    params["sign"] = sign(params, secret)
    assert "invalid_parameter" in ok(check(anon, code, params, secrets_=(secret,)))["failed"]


@pytest.mark.parametrize("body", [
    {"params": {}, "method": "POST"},                                    # method without path
    {"params": {}, "path": "/partner/x/quota"},                           # path without method
    {"params": {}, "body": "{}"},                                         # a body without method and path
    {"params": {}, "method": "TRACE", "path": "/x"},
    {"params": {}, "method": "GET", "path": "no-slash"},
    {"params": {f"k{i}": "v" for i in range(51)}},
    {"params": {"k": "v" * 4097}},
])
def test_malformed_server_to_server_request(anon, sandbox, body):
    code, _ = sandbox
    assert_error(anon.post(f"/sandbox/{code}/signature-check", json=body), 422, "validation_error")


# --- rate limits: per channel (concurrent, over HTTP) and per caller address (deployed shape) ----------

def start_of_a_fresh_window(seconds: int = 60, margin: float = 15) -> None:
    """Wait, if needed, so a burst does not straddle two fixed windows of the rate limiter."""
    into = time.time() % seconds
    if into > seconds - margin:
        time.sleep(seconds - into + 0.2)


def test_sandbox_is_rate_limited_per_channel_under_a_concurrent_burst(anon, sandbox):
    code, secret = sandbox
    start_of_a_fresh_window()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: check(anon, code, fresh(secret), secrets_=(secret,)), range(100)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * PER_CHANNEL + [429] * (100 - PER_CHANNEL), statuses
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {"rate_limited"}
    assert all("expected_sign" not in r.text for r in answers if r.status_code == 429)


def test_sandbox_is_rate_limited_per_caller_address(system, ops):
    codes = [channel(ops, sandbox=True)[0]["code"] for _ in range(PER_ADDRESS // PER_CHANNEL + 1)]
    address = f"198.51.100.{secrets.randbelow(250) + 1}"
    other = f"192.0.2.{secrets.randbelow(250) + 1}"
    body = json.dumps({"params": fresh("x")}).encode()

    def ask(code: str, ip: str) -> int:
        request = event("POST", f"/sandbox/{code}/signature-check", "/sandbox/{code}/signature-check",
                        {"code": code}, headers={"Content-Type": ["application/json"]}, body=body, source_ip=ip)
        return invoke(system, request).status_code

    start_of_a_fresh_window(margin=25)
    statuses = [ask(codes[i % len(codes)], address) for i in range(PER_ADDRESS + 5)]
    assert statuses == [200] * PER_ADDRESS + [429] * 5, statuses
    assert ask(codes[-1], other) == 200                     # another address is not held back


def test_a_sandbox_order_never_takes_live_stock(system, ops):
    """A sandbox channel selling live goods (issue 16, item 7): its orders sell only what is in stock, but take
    none of it and give none back; live members keep every unit."""
    from checkout_helpers import make_shop
    from chalicelib.orders import parcels
    from helpers import wait_for

    live = make_shop(system, ops, "hosted", stock=3)
    box = make_shop(system, ops, "hosted", sandbox=True)
    ok(ops.put(f"/ops/channels/{box.code}/pool/{live.goods_id}", json={"prices": {}}))
    tester = box.member()
    ok(box.grant(tester, 100_000), 201)
    body = lambda qty: {"lines": [{"goods_id": live.goods_id, "sku_id": live.sku_id, "qty": qty}],  # noqa: E731
                        "password": "246810"}
    forged = box.place(requests.Session(), tester, body=body(3))
    assert forged.status == 201 and forged.body["sandbox"] is True, forged.body
    assert live.stock() == 3  # nothing taken

    member = live.member()
    ok(live.grant(member, 100_000), 201)
    bought = live.place(requests.Session(), member, body=live.body(qty=3))
    assert bought.status == 201, bought.body
    assert live.stock() == 0
    refused = box.place(requests.Session(), tester, body=body(1))  # a sandbox still sells only what is in stock
    assert (refused.status, refused.code) == (409, "out_of_stock"), refused.body

    [parcel] = wait_for(lambda: parcels.of_order(forged.order_id), lambda found: len(found) == 1, timeout=60)
    ok(requests.post(f"{box.base_url}/api/{box.code}/parcels/{parcel.parcel_id}/cancel", headers=box.auth(tester),
                     timeout=30))
    assert live.stock() == 0  # its cancel gives back nothing it never took
