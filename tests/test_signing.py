"""The published signing contract (PRODUCT.md, "Channel request signing"), as pure functions.

No HTTP and no tables: these pin the canonical string and the signature byte
for byte, so a channel's integrator and our server can never drift apart.
"""
from __future__ import annotations

import hashlib
import hmac

import pytest

from chalice.app import MultiDict

from chalicelib.core.errors import BadRequest, Unauthorized
from chalicelib.channels.signing import (
    WINDOW_SECONDS, body_sha256, canonical, check_envelope, check_signature, encode, pairs_of, request_headers, sign,
    signed_params, string_to_sign, unique_params,
)

VECTOR_SECRET = "test-secret-123"
VECTOR_PARAMS = {
    "member_id": "M 1001/å",
    "nickname": "张三",
    "points": "1500",
    "target": "/goods/G1?x=1&y=2",
    "timestamp": "1767225600",
    "nonce": "a1b2c3d4e5f6a7b8",
}
VECTOR_CANONICAL = ("member_id=M%201001%2F%C3%A5&nickname=%E5%BC%A0%E4%B8%89&nonce=a1b2c3d4e5f6a7b8"
                    "&points=1500&target=%2Fgoods%2FG1%3Fx%3D1%26y%3D2&timestamp=1767225600")
VECTOR_SIGN = "40bb2b5b581590bbdc45f15bc1fd3b0a256efa3b827131f1d11d1abfb494dff6"


# --- the published test vector ----------------------------------------------------

def test_vector_canonical_string_is_exactly_the_published_one():
    assert canonical(VECTOR_PARAMS) == VECTOR_CANONICAL


def test_vector_sign_is_exactly_the_published_one():
    assert sign(VECTOR_PARAMS, VECTOR_SECRET) == VECTOR_SIGN


def test_vector_sign_is_plain_hmac_sha256_of_the_string_keyed_with_the_utf8_secret():
    expected = hmac.new(VECTOR_SECRET.encode("utf-8"), VECTOR_CANONICAL.encode("utf-8"), hashlib.sha256).hexdigest()
    assert expected == VECTOR_SIGN
    assert sign(VECTOR_PARAMS, VECTOR_SECRET) == expected


def test_vector_sign_is_lower_case_hex_of_64_chars():
    value = sign(VECTOR_PARAMS, VECTOR_SECRET)
    assert len(value) == 64 and value == value.lower() and all(c in "0123456789abcdef" for c in value)


def test_sign_parameter_itself_is_never_part_of_the_string():
    with_sign = {**VECTOR_PARAMS, "sign": "anything"}
    assert canonical(with_sign) == VECTOR_CANONICAL
    assert sign(with_sign, VECTOR_SECRET) == VECTOR_SIGN


def test_signed_params_adds_the_sign_and_keeps_every_field():
    out = signed_params(VECTOR_PARAMS, VECTOR_SECRET)
    assert out == {**VECTOR_PARAMS, "sign": VECTOR_SIGN}


def test_order_of_the_input_mapping_does_not_matter():
    reordered = dict(reversed(list(VECTOR_PARAMS.items())))
    assert canonical(reordered) == VECTOR_CANONICAL
    assert sign(reordered, VECTOR_SECRET) == VECTOR_SIGN


def test_secret_is_used_as_utf8_bytes():
    secret = "密钥-ß"
    expected = hmac.new(secret.encode("utf-8"), VECTOR_CANONICAL.encode(), hashlib.sha256).hexdigest()
    assert sign(VECTOR_PARAMS, secret) == expected
    assert sign(VECTOR_PARAMS, secret) != VECTOR_SIGN


# --- value encoding (RFC 3986) -------------------------------------------------------

@pytest.mark.parametrize("raw, encoded", [
    (" ", "%20"),                    # a space is %20, never '+'
    ("/", "%2F"),
    ("~", "~"),                      # unreserved
    ("-", "-"), ("_", "_"), (".", "."),
    ("+", "%2B"),
    ("*", "%2A"),
    ("!", "%21"), ("'", "%27"), ("(", "%28"), (")", "%29"),
    ("&", "%26"), ("=", "%3D"), ("?", "%3F"), ("#", "%23"), ("%", "%25"), (":", "%3A"), ("@", "%40"),
    ("\n", "%0A"),
    ("å", "%C3%A5"),                 # UTF-8 bytes, upper-case hex
    ("张三", "%E5%BC%A0%E4%B8%89"),
    ("€", "%E2%82%AC"),
    ("😀", "%F0%9F%98%80"),          # 4-byte UTF-8
    ("AZaz09", "AZaz09"),
])
def test_value_encoding(raw, encoded):
    assert encode(raw) == encoded
    assert canonical({"k": raw}) == f"k={encoded}"


def test_hex_digits_are_upper_case():
    text = encode("ÿ\x1f;,")
    assert text == "%C3%BF%1F%3B%2C"
    assert "%c3" not in text


def test_every_unreserved_character_stays_as_is_and_nothing_else_does():
    unreserved = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    for code in range(0x20, 0x7F):
        ch = chr(code)
        if ch in unreserved:
            assert encode(ch) == ch
        else:
            assert encode(ch) == f"%{code:02X}", ch


def test_space_encoded_differently_changes_the_sign():
    params = {"member_id": "M 1", "timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}
    wrong = "member_id=M+1&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600"
    assert canonical(params) == "member_id=M%201&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600"
    assert sign(params, VECTOR_SECRET) != hmac.new(VECTOR_SECRET.encode(), wrong.encode(), hashlib.sha256).hexdigest()


def test_values_are_stringified():
    assert canonical({"points": 1500, "timestamp": 1767225600}) == "points=1500&timestamp=1767225600"


def test_empty_value_keeps_its_key():
    assert canonical({"a": "", "b": "x"}) == "a=&b=x"


# --- key order (byte order, keys not encoded) --------------------------------------------

def test_keys_sort_in_byte_order_upper_case_before_lower_case():
    assert canonical({"b": "1", "a": "2", "Z": "3", "B": "4"}) == "B=4&Z=3&a=2&b=1"


def test_keys_sort_in_byte_order_punctuation_and_prefixes():
    # '-' (0x2D) < '0' (0x30) < '_' (0x5F) < 'b' (0x62); a prefix sorts before its extensions
    params = {"ab": "4", "a_b": "3", "a0": "2", "a-b": "1", "a": "0"}
    assert canonical(params) == "a=0&a-b=1&a0=2&a_b=3&ab=4"


def test_non_ascii_keys_sort_by_their_utf8_bytes_after_ascii_and_stay_unencoded():
    params = {"é": "1", "z": "2", "ü": "3", "中": "4"}
    # UTF-8: z=7A, é=C3 A9, ü=C3 BC, 中=E4 B8 AD
    assert canonical(params) == "z=2&é=1&ü=3&中=4"


def test_keys_are_not_encoded():
    assert canonical({"a b": "c d"}) == "a b=c%20d"


# --- body_sha256 for requests with a body --------------------------------------------------

def test_body_sha256_is_lower_hex_of_exact_bytes():
    body = '{"code":"X1"}'.encode()
    assert body_sha256(body) == hashlib.sha256(body).hexdigest()
    assert body_sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert body_sha256(b'{"code":"X1"} ') != body_sha256(body)


def test_header_style_request_signs_timestamp_nonce_and_body_hash():
    body = b'{"code":"abc"}'
    params = {"timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8", "body_sha256": body_sha256(body)}
    assert canonical(params) == (f"body_sha256={hashlib.sha256(body).hexdigest()}"
                                 "&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600")
    check_signature({**params, "sign": sign(params, "s3cret")}, ["s3cret"])
    tampered = {**params, "body_sha256": body_sha256(b'{"code":"abd"}'), "sign": sign(params, "s3cret")}
    with pytest.raises(Unauthorized) as err:
        check_signature(tampered, ["s3cret"])
    assert err.value.code == "bad_signature"


# --- the server-side checks ------------------------------------------------------------------

def _envelope(**overrides) -> dict:
    params = {"member_id": "M1", "timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}
    params.update(overrides)
    return signed_params(params, VECTOR_SECRET)


@pytest.mark.parametrize("field", ["timestamp", "nonce", "sign"])
def test_envelope_missing_field(field):
    params = _envelope()
    del params[field]
    with pytest.raises(BadRequest) as err:
        check_envelope(params, 1767225600)
    assert (err.value.code, err.value.field) == ("missing_field", field)


@pytest.mark.parametrize("nonce", ["a" * 15, "a" * 65])
def test_envelope_nonce_length(nonce):
    with pytest.raises(BadRequest) as err:
        check_envelope(_envelope(nonce=nonce), 1767225600)
    assert err.value.code == "invalid_nonce"


@pytest.mark.parametrize("nonce", ["a" * 16, "a" * 64])
def test_envelope_nonce_length_bounds_accepted(nonce):
    assert check_envelope(_envelope(nonce=nonce), 1767225600) == 1767225600


@pytest.mark.parametrize("skew", [-WINDOW_SECONDS, WINDOW_SECONDS, 0])
def test_envelope_window_edges_accepted(skew):
    assert check_envelope(_envelope(), 1767225600 + skew) == 1767225600


@pytest.mark.parametrize("skew", [-WINDOW_SECONDS - 1, WINDOW_SECONDS + 1, 86_400])
def test_envelope_outside_window(skew):
    with pytest.raises(Unauthorized) as err:
        check_envelope(_envelope(), 1767225600 + skew)
    assert err.value.code == "timestamp_expired"


def test_envelope_non_numeric_timestamp():
    with pytest.raises(BadRequest) as err:
        check_envelope(_envelope(timestamp="yesterday"), 1767225600)
    assert err.value.code == "invalid_timestamp"


def test_signature_accepts_any_listed_secret_and_upper_case_hex():
    params = signed_params({"timestamp": "1", "nonce": "a1b2c3d4e5f6a7b8"}, "old")
    check_signature(params, ["new", "old"])
    check_signature({**params, "sign": params["sign"].upper()}, ["old"])
    with pytest.raises(Unauthorized) as err:
        check_signature(params, ["new"])
    assert err.value.code == "bad_signature"


def test_signature_refused_when_no_secret_or_no_sign():
    params = signed_params({"timestamp": "1", "nonce": "a1b2c3d4e5f6a7b8"}, "s")
    with pytest.raises(Unauthorized):
        check_signature(params, [])
    with pytest.raises(Unauthorized):
        check_signature({k: v for k, v in params.items() if k != "sign"}, ["s"])


@pytest.mark.parametrize("field", list(VECTOR_PARAMS))
def test_vector_any_changed_field_breaks_the_signature(field):
    changed = {**VECTOR_PARAMS, field: VECTOR_PARAMS[field] + "0", "sign": VECTOR_SIGN}
    with pytest.raises(Unauthorized):
        check_signature(changed, [VECTOR_SECRET])
    check_signature({**VECTOR_PARAMS, "sign": VECTOR_SIGN}, [VECTOR_SECRET])


# --- contract version 2: the server-to-server vector, keys, duplicates ------------------------

S2S_BODY = b'{"member_id":"M1001","grant_id":"G-20260101-1","points":500}'
S2S_PARAMS = {"timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}
S2S_BODY_SHA256 = "cbddcd2900655f821f7100e0a6533a8e8d56c0d0207ab961a48de0fb45ef4b61"
S2S_STRING = ("POST\n/partner/bank-a/grants\nbody_sha256=cbddcd2900655f821f7100e0a6533a8e8d56c0d0207ab961a48de0fb45ef4b61"
              "&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600")
S2S_SIGN = "d7442ad6dbc2146d3d5333a0cb03c21aac5de58038f0c3c3c5d0b2c0bb36277b"


def test_s2s_vector_body_hash_string_and_sign_are_exactly_the_published_ones():
    assert body_sha256(S2S_BODY) == S2S_BODY_SHA256
    params = {**S2S_PARAMS, "body_sha256": body_sha256(S2S_BODY)}
    assert string_to_sign(params, "POST", "/partner/bank-a/grants") == S2S_STRING
    assert sign(params, VECTOR_SECRET, "POST", "/partner/bank-a/grants") == S2S_SIGN
    assert hmac.new(VECTOR_SECRET.encode(), S2S_STRING.encode(), hashlib.sha256).hexdigest() == S2S_SIGN
    check_signature({**params, "sign": S2S_SIGN}, [VECTOR_SECRET], "post", "/partner/bank-a/grants")


def test_s2s_vector_through_request_headers():
    headers = request_headers("POST", "/partner/bank-a/grants", S2S_BODY, VECTOR_SECRET, now=1767225600)
    params = {"timestamp": headers["X-Timestamp"], "nonce": headers["X-Nonce"], "body_sha256": S2S_BODY_SHA256}
    assert headers["X-Timestamp"] == "1767225600" and 16 <= len(headers["X-Nonce"]) <= 64
    assert headers["X-Sign"] == sign(params, VECTOR_SECRET, "POST", "/partner/bank-a/grants")


@pytest.mark.parametrize("method, path", [
    (None, None),                                  # an entry link's signature
    ("GET", "/partner/bank-a/grants"),             # another method
    ("POST", "/partner/bank-a/quota"),             # another route
    ("POST", "/partner/bank-b/grants"),            # another channel's route
    ("POST", "/api/partner/bank-a/grants"),        # with the API stage prefix
])
def test_s2s_signature_is_bound_to_method_and_path(method, path):
    params = {**S2S_PARAMS, "body_sha256": S2S_BODY_SHA256, "sign": S2S_SIGN}
    with pytest.raises(Unauthorized):
        check_signature(params, [VECTOR_SECRET], method, path)


def test_entry_vector_signature_never_authorises_an_api_call():
    params = {**VECTOR_PARAMS, "sign": VECTOR_SIGN}
    check_signature(params, [VECTOR_SECRET])
    with pytest.raises(Unauthorized):
        check_signature(params, [VECTOR_SECRET], "GET", "/partner/bank-a/quota")


def test_check_signature_names_the_secret_that_matched():
    params = signed_params({"timestamp": "1", "nonce": "a1b2c3d4e5f6a7b8"}, "old")
    assert check_signature(params, ["new", "old"]) == "old"
    assert check_signature(signed_params(params, "new"), ["new", "old"]) == "new"


@pytest.mark.parametrize("key", ["", "a=b", "a&b", "a b", "é", "a/b", "x" * 65, "sign=x&member_id"])
def test_keys_outside_the_alphabet_are_invalid(key):
    with pytest.raises(BadRequest) as err:
        unique_params([("member_id", "M1"), (key, "1")])
    assert err.value.code == "invalid_parameter"


@pytest.mark.parametrize("key", ["a", "A-Z_0.9", "x" * 64, "body_sha256"])
def test_keys_inside_the_alphabet_are_accepted(key):
    assert unique_params([(key, "1")]) == {key: "1"}


def test_a_repeated_key_is_refused_even_with_the_same_value():
    for pairs in ([("member_id", "A"), ("member_id", "B")], [("nonce", "x" * 16), ("nonce", "x" * 16)]):
        with pytest.raises(BadRequest) as err:
            unique_params(pairs)
        assert (err.value.code, err.value.field) == ("duplicate_parameter", pairs[0][0])


def test_pairs_of_sees_every_value_of_a_chalice_multidict():
    multi = MultiDict({"member_id": ["A", "B"], "nonce": ["n" * 16]})
    assert dict(multi)["member_id"] == "B"  # what a plain read would keep: the last one
    assert pairs_of(multi) == [("member_id", "A"), ("member_id", "B"), ("nonce", "n" * 16)]
    with pytest.raises(BadRequest) as err:
        unique_params(pairs_of(multi))
    assert err.value.code == "duplicate_parameter"
