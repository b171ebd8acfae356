"""The channel request-signing contract (PRODUCT.md, "Channel request signing", version 2).

Pure functions: key and duplicate checks, canonical string, the string to
sign (the canonical query alone for entry links; method, path and canonical
query for server-to-server calls), HMAC-SHA256 signature, and the checks a
signed request must pass, in the order that never burns a nonce for a
request that was not genuinely signed.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
import time
from typing import Iterable, Mapping
from urllib.parse import quote

from chalicelib.core.errors import BadRequest, Unauthorized

WINDOW_SECONDS = 300
SIGNED_ENVELOPE = ("timestamp", "nonce")
KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Envelope fields a server-to-server call may send as headers instead of query parameters.
HEADER_FIELDS = {"timestamp": "X-Timestamp", "nonce": "X-Nonce", "sign": "X-Sign"}


def encode(value: str) -> str:
    """RFC 3986: unreserved characters as is, every other UTF-8 byte as upper-case %XX."""
    return quote(value, safe="-_.~")


def unique_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Every (key, value) a request carries as one mapping, refusing bad and repeated keys.

    Version 1 let a key hold ``=`` or ``&`` (re-splitting the string) and kept the last of
    repeated keys; both are refused here, before any signature is looked at."""
    params: dict[str, str] = {}
    for key, value in pairs:
        if not KEY.fullmatch(key):
            raise BadRequest("invalid_parameter", "parameter keys must match [A-Za-z0-9_.-]{1,64}")
        if key in params:
            raise BadRequest("duplicate_parameter", f"the parameter {key} is given more than once", key)
        params[key] = value
    return params


def pairs_of(params: Mapping[str, object]) -> list[tuple[str, str]]:
    """Every (key, value) of a mapping, all values of a multi-valued one (Chalice's ``MultiDict``)."""
    getlist = getattr(params, "getlist", None)
    if getlist is None:
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k in params for v in getlist(k)]


def canonical(params: Mapping[str, str]) -> str:
    """Parameters except ``sign``, sorted by key in byte order, ``key=value`` joined by ``&``."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign"), key=lambda kv: kv[0].encode())
    return "&".join(f"{k}={encode(str(v))}" for k, v in items)


def string_to_sign(params: Mapping[str, str], method: str | None = None, path: str | None = None) -> str:
    """Entry links (no method): the canonical query. Server-to-server: METHOD, PATH and canonical query."""
    if method is None:
        return canonical(params)
    return f"{method.upper()}\n{path}\n{canonical(params)}"


def sign(params: Mapping[str, str], secret: str, method: str | None = None, path: str | None = None) -> str:
    return hmac.new(secret.encode(), string_to_sign(params, method, path).encode(), hashlib.sha256).hexdigest()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_params(params: Mapping[str, str], secret: str, method: str | None = None,
                  path: str | None = None) -> dict[str, str]:
    """``params`` with ``sign`` added: what a channel (or we, calling a channel) sends."""
    return {**params, "sign": sign(params, secret, method, path)}


def request_headers(method: str, path: str, body: bytes | None, secret: str,
                    query: Mapping[str, str] | None = None, now: float | None = None) -> dict[str, str]:
    """The ``X-Timestamp`` / ``X-Nonce`` / ``X-Sign`` headers of a server-to-server call.

    ``path`` is relative to the receiver's published base, exactly as sent; ``query`` the
    request's own query parameters (signed too); a body is signed through its SHA-256."""
    params = {**(query or {}), "timestamp": str(int(time.time() if now is None else now)),
              "nonce": _random.token_hex(12)}
    if body:
        params["body_sha256"] = body_sha256(body)
    return {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
            "X-Sign": sign(params, secret, method, path)}


def check_envelope(params: Mapping[str, str], now: float) -> int:
    """Presence, nonce shape and time window; returns the timestamp."""
    for name in (*SIGNED_ENVELOPE, "sign"):
        if not params.get(name):
            raise BadRequest("missing_field", f"the signed field {name} is missing", name)
    nonce = params["nonce"]
    if not 16 <= len(nonce) <= 64:
        raise BadRequest("invalid_nonce", "nonce must be 16 to 64 characters", "nonce")
    try:
        timestamp = int(params["timestamp"])
    except ValueError:
        raise BadRequest("invalid_timestamp", "timestamp must be Unix seconds", "timestamp") from None
    if abs(now - timestamp) > WINDOW_SECONDS:
        raise Unauthorized("timestamp_expired",
                           f"timestamp is more than {WINDOW_SECONDS} s from the server clock", "timestamp")
    return timestamp


def check_signature(params: Mapping[str, str], secrets: Iterable[str], method: str | None = None,
                    path: str | None = None) -> str:
    """Constant-time compare against every accepted secret (current, and previous during rotation).

    Returns the secret that matched: a match on a rotated-in secret is the channel's proof that it has it."""
    given = params.get("sign", "").lower().encode()
    matched: str | None = None
    for secret in secrets:
        if hmac.compare_digest(sign(params, secret, method, path).encode(), given) and matched is None:
            matched = secret
    if matched is None:
        raise Unauthorized("bad_signature", "the signature does not match", "sign")
    return matched
