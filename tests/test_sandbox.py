"""The integration sandbox over real HTTP: it tells a channel's developer which signing rule broke.

Only sandbox channels have it; it shows the canonical string and the expected
signature, never the secret, and spends no nonce.
"""
from __future__ import annotations

import secrets
import time

import pytest
import requests

from chalicelib.signing import canonical, sign
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
