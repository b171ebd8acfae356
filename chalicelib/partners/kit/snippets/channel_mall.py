"""Channel Mall integration snippet for Python 3.8+ (standard library only, but for ``cryptography`` to verify
``v1a`` public-key webhook signatures; copy it into your project).

Request signing, contract version 2: sign entry links and server-to-server calls to the mall, and
verify the mall's calls to you the same way. Webhooks from the mall: Standard Webhooks verification.
Run as a script it reads a JSON array of tasks on stdin and writes a JSON array of results (our CI
checks every snippet against the contract's test vectors this way).
"""
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from urllib.parse import quote, urlencode

WINDOW_SECONDS = 300  # signed requests and webhooks further than this from the clock are refused


def encode(value):
    """RFC 3986: A-Z a-z 0-9 - _ . ~ as they are, every other UTF-8 byte as %XX (upper-case hex)."""
    return quote(value, safe="-_.~")


def canonical_query(params):
    """Every parameter except ``sign``, sorted by key (byte order), ``key=value`` joined by ``&``."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign"), key=lambda kv: kv[0].encode())
    return "&".join(f"{k}={encode(str(v))}" for k, v in items)


def body_sha256(body):
    """Lower-case hex SHA-256 of the exact body bytes (signed as the parameter ``body_sha256``)."""
    return hashlib.sha256(body).hexdigest()


def string_to_sign(params, method=None, path=None):
    """Entry link: the canonical query alone. Server-to-server: METHOD, PATH and canonical query, by ``\\n``.
    PATH is relative to the receiver's published base URL (ours: ``/partner/{code}/...``), as sent."""
    query = canonical_query(params)
    return query if method is None else f"{method.upper()}\n{path}\n{query}"


def sign(secret, params, method=None, path=None):
    """Lower-case hex HMAC-SHA256 of the string to sign, keyed with the channel secret (UTF-8)."""
    return hmac.new(secret.encode(), string_to_sign(params, method, path).encode(), hashlib.sha256).hexdigest()


def entry_link(base_url, channel_code, secret, member_id, **fields):
    """A signed entry link for one member (valid 300 s, once). Optional fields: nickname, mobile, points, target."""
    params = {"member_id": member_id, **{k: str(v) for k, v in fields.items()},
              "timestamp": str(int(time.time())), "nonce": secrets.token_hex(16)}
    params["sign"] = sign(secret, params)
    return f"{base_url.rstrip('/')}/entry/{channel_code}?{urlencode(params, quote_via=quote)}"


def signed_headers(secret, method, path, body=b"", query=None):
    """X-Timestamp / X-Nonce / X-Sign for a server-to-server call; ``query``: its own query parameters."""
    params = {**(query or {}), "timestamp": str(int(time.time())), "nonce": secrets.token_hex(16)}
    if body:
        params["body_sha256"] = body_sha256(body)
    return {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
            "X-Sign": sign(secret, params, method, path)}


class WebhookError(Exception):
    """A delivery to refuse; ``code`` says why (answer it with a 4xx: the mall retries, then parks it)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def verify_webhook(webhook_secret, headers, body, now=None):
    """Check a Standard Webhooks delivery; returns ``webhook-id`` (the same on every retry: dedupe on it).

    ``webhook-signature`` holds one or more space-separated signatures of
    ``{webhook-id}.{webhook-timestamp}.{raw body}``: ``v1,<base64 HMAC-SHA256>`` keyed with the base64 after
    ``whsec_``, and, once the mall gave you a public key, ``v1a,<base64 Ed25519>``. Pass your ``whsec_`` secret
    to check ``v1``, or your ``whpk_`` public key to check ``v1a`` (it needs ``pip install cryptography``);
    during a rotation pass either key: any signature that verifies is enough."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookError("missing_header")
    if not (stamp.isascii() and stamp.isdigit()):
        raise WebhookError("invalid_timestamp")
    if abs((time.time() if now is None else now) - int(stamp)) > WINDOW_SECONDS:
        raise WebhookError("timestamp_expired")
    signed = f"{msg_id}.{stamp}.".encode() + body
    if webhook_secret.startswith("whpk_"):
        check, wanted = _ed25519_check(webhook_secret, signed), "v1a"
    else:
        key = base64.b64decode(webhook_secret[len("whsec_"):] if webhook_secret.startswith("whsec_") else webhook_secret)
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        check, wanted = (lambda given: hmac.compare_digest(expected, given)), "v1"
    matched = False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        matched = (version == wanted and check(given)) or matched  # check every one, no early exit
    if not matched:
        raise WebhookError("bad_signature")
    return msg_id


def _ed25519_check(public_key, signed):
    """A check of one ``v1a`` signature with a ``whpk_`` key (base64 of the raw 32-byte Ed25519 public key)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))

    def check(given):
        try:
            key.verify(given, signed)
            return True
        except InvalidSignature:
            return False
    return check


def _task(task):
    if task["op"] == "sign":
        params = dict(task["params"])
        if task.get("body") is not None:
            params["body_sha256"] = body_sha256(task["body"].encode())
        method, path = task.get("method"), task.get("path")
        return {"canonical_query": canonical_query(params), "body_sha256": params.get("body_sha256"),
                "string_to_sign": string_to_sign(params, method, path),
                "sign": sign(task["secret"], params, method, path)}
    try:
        webhook_id = verify_webhook(task["secret"], task["headers"], task["body"].encode(), task.get("now"))
    except WebhookError as refused:
        return {"ok": False, "error": refused.code}
    return {"ok": True, "webhook_id": webhook_id}


if __name__ == "__main__":
    json.dump([_task(t) for t in json.load(sys.stdin)], sys.stdout, ensure_ascii=False)
