"""The channel request-signing contract (PRODUCT.md, "Channel request signing").

Pure functions: canonical string, HMAC-SHA256 signature, and the checks a
signed request must pass, in the order that never burns a nonce for a
request that was not genuinely signed.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping
from urllib.parse import quote

from chalicelib.errors import Unauthorized, BadRequest

WINDOW_SECONDS = 300
SIGNED_ENVELOPE = ("timestamp", "nonce")


def encode(value: str) -> str:
    """RFC 3986: unreserved characters as is, every other UTF-8 byte as upper-case %XX."""
    return quote(value, safe="-_.~")


def canonical(params: Mapping[str, str]) -> str:
    """Parameters except ``sign``, sorted by key in byte order, ``key=value`` joined by ``&``."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign"), key=lambda kv: kv[0].encode())
    return "&".join(f"{k}={encode(str(v))}" for k, v in items)


def sign(params: Mapping[str, str], secret: str) -> str:
    return hmac.new(secret.encode(), canonical(params).encode(), hashlib.sha256).hexdigest()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_params(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """``params`` with ``sign`` added: what a channel (or we, calling a channel) sends."""
    return {**params, "sign": sign(params, secret)}


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


def check_signature(params: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Constant-time compare against every accepted secret (current, and previous during rotation)."""
    given = params.get("sign", "").lower().encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(params, secret).encode(), given)
    if not matched:
        raise Unauthorized("bad_signature", "the signature does not match", "sign")
