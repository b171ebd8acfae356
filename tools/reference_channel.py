"""A reference channel back end: the channel's side of the Channel Mall integration contract.

Read this file to learn what a channel (a bank's or a telecom's server) implements
to sell through Channel Mall. It is self-contained on purpose (standard library plus
``requests``; nothing from the mall's own code), so it can be copied and ported:

1. Request signing, contract version 2 — sign our calls to the mall and verify the
   mall's calls to us (``canonical_query``, ``string_to_sign``, ``sign``,
   ``verify_signed_request``).
2. Webhooks from the mall (Standard Webhooks) — ``verify_webhook``: ``v1`` (HMAC, the shared secret) and,
   once the mall gave the channel a public key, ``v1a`` (Ed25519) as well.
3. The APIs the mall calls, under the base URL the channel registered with the mall
   (here ``{url}/channels/{code}``), every one ``POST`` with a JSON body, signed:

   ``member/exchange``     ``{code}`` → ``{member_id, nickname, mobile, points}``: a one-time
                           entry code from the channel app becomes the member's identity
   ``password/verify``     ``{member_id, password}`` → ``{valid: bool}``
   ``points/deduct``       ``{order_id, member_id, points}`` → 200 ``{result: "deducted"}``, or
                           409 ``{result: "insufficient" | "rejected"}``; idempotent by ``order_id``
                           (the answer for an order id never changes)
   ``points/query``        ``{order_id}`` → ``{status: "deducted" | "not_found" | "failed"}``
   ``points/cancel``       ``{order_id}`` → ``{result: "cancelled", refunded_points}``: the mall will
                           not complete this order; a later deduct is refused, an applied one refunded
   ``points/refund``       ``{refund_id, order_id, points}`` → ``{result: "refunded"}``; idempotent by
                           ``refund_id``
   ``points/refund/query`` ``{refund_id}`` → ``{status: "refunded" | "not_found"}``
   ``webhooks``            the mall's event deliveries (Standard Webhooks signature, not contract v2)

4. Calls the channel makes to the mall: a signed ``POST /partner/{code}/grants`` (hosted
   points mode) and signed entry links for its members.

It also plays the channel's app: ``GET /app/{code}/{member_id}`` opens the mall's store
for that member with a fresh entry link (a one-time code in ``code`` entry mode), and
``GET /`` shows wallets, deductions, refunds and received webhooks (``/state.json``,
``/webhooks.json`` as JSON). State lives in memory: this is a teaching and test back
end, not a production wallet.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests

# --- 1. Request signing, contract version 2 ------------------------------------------------

WINDOW_SECONDS = 300  # a timestamp further than this from our clock is refused
KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the only parameter names the contract allows (whole name)
ENVELOPE = ("timestamp", "nonce", "sign")


class Refused(Exception):
    """A request we will not act on; ``code`` is what we answer, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def encode(value: str) -> str:
    """RFC 3986 percent-encoding of the UTF-8 bytes: only ``A-Z a-z 0-9 - _ . ~`` stay as they are."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter except ``sign``, sorted by key (byte order), as ``key=value`` joined by ``&``."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign"), key=lambda kv: kv[0].encode())
    return "&".join(f"{k}={encode(v)}" for k, v in items)


def string_to_sign(params: Mapping[str, str], method: str | None = None, path: str | None = None) -> str:
    """An entry link signs the canonical query alone; a server-to-server call binds its method and path too,
    so a signature for one route (or an entry link) never authorises another."""
    query = canonical_query(params)
    return query if method is None else f"{method.upper()}\n{path}\n{query}"


def sign(secret: str, text: str) -> str:
    """Lower-case hex HMAC-SHA256 keyed with the channel secret (UTF-8)."""
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_headers(secret: str, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of a server-to-server call: envelope in ``X-Timestamp`` / ``X-Nonce`` / ``X-Sign``.

    ``path`` is the path relative to the receiver's published base URL (for the mall: ``/partner/...``,
    without any API stage prefix)."""
    params = {"timestamp": str(int(time.time() if now is None else now)), "nonce": secrets.token_hex(16)}
    if body:
        params["body_sha256"] = body_sha256(body)
    return {"X-Timestamp": params["timestamp"], "X-Nonce": params["nonce"],
            "X-Sign": sign(secret, string_to_sign(params, method, path)), "Content-Type": "application/json"}


def request_params(query: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """What a server-to-server request signed: its query parameters, the envelope (query or ``X-`` headers)
    and ``body_sha256``. Bad or repeated keys are refused here, before any signature is looked at."""
    params: dict[str, str] = {}
    pairs = parse_qsl(query, keep_blank_values=True)
    lower = {k.lower(): v for k, v in headers.items()}
    pairs += [(name, lower[f"x-{name}"]) for name in ENVELOPE if f"x-{name}" in lower]
    if body:
        pairs.append(("body_sha256", body_sha256(body)))
    for key, value in pairs:
        if not KEY.fullmatch(key):  # fullmatch: "$" in a plain match would let "key\n" through
            raise Refused("invalid_parameter", f"parameter name {key[:70]!r} is not allowed", 400)
        if key in params:
            raise Refused("duplicate_parameter", f"parameter {key} is given twice", 400)
        params[key] = value
    return params


class NonceBook:
    """Nonces seen within the time window. A nonce is spent only after its signature is proven,
    so a forger cannot burn a genuine caller's nonce."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def spend(self, nonce: str, now: float) -> None:
        with self._lock:
            self._seen = {n: t for n, t in self._seen.items() if t > now}  # forget what left the window
            if nonce in self._seen:
                raise Refused("nonce_replayed", "this nonce was already used")
            self._seen[nonce] = now + 2 * WINDOW_SECONDS


def verify_signed_request(params: Mapping[str, str], method: str, path: str, accepted_secrets: Iterable[str],
                          nonces: NonceBook, now: float | None = None) -> None:
    """The contract's checks, cheapest first: envelope present, nonce shape, time window, signature
    (constant time, against each accepted secret), and only then the nonce is spent."""
    now = time.time() if now is None else now
    for name in ENVELOPE:
        if not params.get(name):
            raise Refused("missing_parameter", f"the signed field {name} is missing", 400)
    if not 16 <= len(params["nonce"]) <= 64:
        raise Refused("invalid_nonce", "nonce must be 16 to 64 characters", 400)
    try:
        timestamp = int(params["timestamp"])
    except ValueError:
        raise Refused("invalid_timestamp", "timestamp must be Unix seconds", 400) from None
    if abs(now - timestamp) > WINDOW_SECONDS:
        raise Refused("timestamp_expired", f"timestamp is more than {WINDOW_SECONDS} s from our clock")
    text = string_to_sign(params, method, path)
    given = params["sign"].lower().encode()
    matched = False
    for secret in accepted_secrets:  # compare with every secret, never stopping early
        matched |= hmac.compare_digest(sign(secret, text).encode(), given)
    if not matched:
        raise Refused("bad_signature", "the signature does not match")
    nonces.spend(params["nonce"], now)


def entry_link(mall_base_url: str, channel_code: str, secret: str, member_id: str, **fields: str) -> str:
    """A signed entry link into the mall's store (works once, for 300 s). Optional signed fields:
    ``nickname``, ``mobile``, ``points`` (the member's balance, shown in the store), ``target``."""
    params = {"member_id": member_id, **{k: str(v) for k, v in fields.items()},
              "timestamp": str(int(time.time())), "nonce": secrets.token_hex(16)}
    params["sign"] = sign(secret, string_to_sign(params))
    return f"{mall_base_url.rstrip('/')}/entry/{channel_code}?{urlencode(params, quote_via=quote)}"


def call_mall(mall_base_url: str, secret: str, path: str, payload: dict[str, Any]) -> requests.Response:
    """A signed ``POST`` to the mall, e.g. ``/partner/bank-a/grants``. The exact body bytes sent are the ones
    hashed, so serialise once."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return requests.post(mall_base_url.rstrip("/") + path, data=body, allow_redirects=False, timeout=30,
                         headers=signed_headers(secret, "POST", path, body))


# --- 2. Webhooks from the mall (Standard Webhooks) --------------------------------------------

def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def verify_webhook(webhook_secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
                   public_keys: Iterable[str] = ()) -> str:
    """Check a delivery; returns its ``webhook-id`` (stable across retries: the idempotency key).

    ``webhook-signature`` holds one or more space-separated ``v1,<base64 HMAC-SHA256>`` of
    ``{webhook-id}.{webhook-timestamp}.{raw body}``, keyed with the base64-decoded part of ``whsec_...``;
    during the mall's secret rotation it sends two, and either may match. Once the mall gave us public keys
    (``whpk_``: base64 of a raw Ed25519 key), a ``v1a,<base64 Ed25519>`` signature of the same string must
    verify with one of them too: that one nobody holding only our copy of the secret could have made."""
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}
    webhook_id, stamp, signatures = (lower.get(h, "") for h in ("webhook-id", "webhook-timestamp",
                                                                  "webhook-signature"))
    if not (webhook_id and stamp and signatures):
        raise Refused("missing_header", "webhook-id, webhook-timestamp and webhook-signature are required", 400)
    try:
        timestamp = int(stamp)
    except ValueError:
        raise Refused("invalid_timestamp", "webhook-timestamp must be Unix seconds", 400) from None
    if abs(now - timestamp) > WINDOW_SECONDS:
        raise Refused("timestamp_expired", "webhook-timestamp is outside the tolerance")
    key = base64.b64decode(webhook_secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    matched = False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        matched |= version == "v1" and hmac.compare_digest(expected, given)
    if not matched:
        raise Refused("bad_signature", "no webhook signature matches")
    keys = list(public_keys)
    if keys and not _v1a_verifies(keys, signatures, f"{webhook_id}.{stamp}.".encode() + body):
        raise Refused("bad_signature", "no v1a signature verifies with the mall's public keys")
    return webhook_id


def _v1a_verifies(public_keys: list[str], signatures: str, signed: bytes) -> bool:
    """Whether any ``v1a`` signature verifies with any of the public keys (``cryptography``: Ed25519)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = [Ed25519PublicKey.from_public_bytes(base64.b64decode(k.removeprefix("whpk_"))) for k in public_keys]
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1a":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        for key in keys:
            try:
                key.verify(given, signed)
                return True
            except InvalidSignature:
                pass
    return False


# --- 3. The channel's books: members, wallet, deductions, refunds ----------------------------

@dataclass
class Member:
    member_id: str
    password: str
    points: int = 0
    nickname: str | None = None
    mobile: str | None = None


@dataclass
class Deduction:
    member_id: str
    points: int
    outcome: str  # "deducted", or why it was refused: "insufficient", "rejected", "cancelled"
    refunded: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class Book:
    """One channel's state. Every change happens under ``lock``, so concurrent calls cannot overspend."""

    code: str
    signing_secrets: list[str]  # newest first (we sign with it); during a rotation every one is accepted
    webhook_secret: str = field(default_factory=new_webhook_secret)
    webhook_public_keys: list[str] = field(default_factory=list)  # the mall's whpk_ keys: v1a must verify too
    points_mode: str = "hosted"
    entry_mode: str = "signed"  # how our app opens the store: a signed link, or a one-time code ("code")
    members: dict[str, Member] = field(default_factory=dict)
    deductions: dict[str, Deduction] = field(default_factory=dict)  # our record per mall order_id
    cancelled: set[str] = field(default_factory=set)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # refund_id → {order_id, points}
    codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # one-time entry code → (member, expiry)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    nonces: NonceBook = field(default_factory=NonceBook)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise Refused("invalid_request", f"{name} must be a string of 1 to 128 characters", 400)
    return value


def _points(data: dict) -> int:
    value = data.get("points")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Refused("invalid_request", "points must be a positive whole number", 400)
    return value


def member_exchange(book: Book, data: dict) -> tuple[int, dict]:
    """A one-time code our app handed the mall's entry link → who the member is (the code dies here)."""
    code = _text(data, "code")
    with book.lock:
        member_id, expires_at = book.codes.pop(code, ("", 0.0))
        member = book.members.get(member_id)
    if member is None or expires_at < time.time():
        return 400, {"error": "invalid_code"}
    return 200, {"member_id": member.member_id, "nickname": member.nickname, "mobile": member.mobile,
                 "points": member.points}


def password_verify(book: Book, data: dict) -> tuple[int, dict]:
    member_id, password = _text(data, "member_id"), _text(data, "password")
    with book.lock:
        member = book.members.get(member_id)
    # Compare in constant time; an unknown member is simply "not valid" (no hint that it does not exist).
    valid = hmac.compare_digest((member.password if member else "\0").encode(), password.encode())
    return 200, {"valid": bool(member) and valid}


def points_deduct(book: Book, data: dict) -> tuple[int, dict]:
    """Idempotent by the mall's order id: the first answer for an order id is the answer forever."""
    order_id, member_id, points = _text(data, "order_id"), _text(data, "member_id"), _points(data)
    with book.lock:
        done = book.deductions.get(order_id)
        if done is not None:
            if (done.member_id, done.points) != (member_id, points):
                return 409, {"result": "rejected", "reason": "order_id_reused"}
        elif order_id in book.cancelled:  # the mall gave this order up: never take points for it
            done = book.deductions[order_id] = Deduction(member_id, points, "cancelled")
        elif member_id not in book.members:
            done = book.deductions[order_id] = Deduction(member_id, points, "rejected")
        elif book.members[member_id].points < points:
            done = book.deductions[order_id] = Deduction(member_id, points, "insufficient")
        else:
            book.members[member_id].points -= points
            done = book.deductions[order_id] = Deduction(member_id, points, "deducted")
    if done.outcome == "deducted":
        return 200, {"result": "deducted"}
    return 409, {"result": "insufficient" if done.outcome == "insufficient" else "rejected", "reason": done.outcome}


def points_query(book: Book, data: dict) -> tuple[int, dict]:
    """The mall asks when a deduct's answer was lost: did it happen?"""
    order_id = _text(data, "order_id")
    with book.lock:
        done = book.deductions.get(order_id)
        cancelled = order_id in book.cancelled
    if done is None:
        return 200, {"status": "not_found"}
    if done.outcome == "deducted" and not cancelled:
        return 200, {"status": "deducted", "points": done.points}
    return 200, {"status": "failed", "reason": "cancelled" if cancelled else done.outcome}


def points_cancel(book: Book, data: dict) -> tuple[int, dict]:
    """The mall will not complete the order: refuse any later deduct; give back what was taken."""
    order_id = _text(data, "order_id")
    with book.lock:
        if order_id in book.cancelled:
            return 200, {"result": "cancelled", "refunded_points": 0}
        book.cancelled.add(order_id)
        done = book.deductions.get(order_id)
        back = 0
        if done is not None and done.outcome == "deducted":
            back = done.points - done.refunded
            done.refunded += back
            book.members[done.member_id].points += back
    return 200, {"result": "cancelled", "refunded_points": back}


def points_refund(book: Book, data: dict) -> tuple[int, dict]:
    """Idempotent by ``refund_id``; never more back than was deducted for the order."""
    refund_id, order_id, points = _text(data, "refund_id"), _text(data, "order_id"), _points(data)
    with book.lock:
        known = book.refunds.get(refund_id)
        if known is not None:
            if (known["order_id"], known["points"]) != (order_id, points):
                return 409, {"result": "rejected", "reason": "refund_id_reused"}
            return 200, {"result": "refunded"}
        done = book.deductions.get(order_id)
        if done is None or done.outcome != "deducted" or order_id in book.cancelled:
            return 409, {"result": "rejected", "reason": "not_deducted"}
        if done.refunded + points > done.points:
            return 409, {"result": "rejected", "reason": "exceeds_deduction"}
        done.refunded += points
        book.members[done.member_id].points += points
        book.refunds[refund_id] = {"order_id": order_id, "points": points, "at": time.time()}
    return 200, {"result": "refunded"}


def refund_query(book: Book, data: dict) -> tuple[int, dict]:
    refund_id = _text(data, "refund_id")
    with book.lock:
        known = book.refunds.get(refund_id)
    if known is None:
        return 200, {"status": "not_found"}
    return 200, {"status": "refunded", "order_id": known["order_id"], "points": known["points"]}


def points_balance(book: Book, data: dict) -> tuple[int, dict]:
    """What our app shows as the member's balance: the mall's store shows the same, asked after every move."""
    member_id = _text(data, "member_id")
    with book.lock:
        member = book.members.get(member_id)
        points = member.points if member else None
    if points is None:
        return 404, {"error": "member_not_found"}
    return 200, {"member_id": member_id, "points": points}


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused("invalid_json", "the body must be JSON", 400) from None
    if not isinstance(data, dict):
        raise Refused("invalid_request", "the body must be a JSON object", 400)
    return data


APIS = {"member/exchange": member_exchange, "password/verify": password_verify, "points/deduct": points_deduct,
        "points/query": points_query, "points/cancel": points_cancel, "points/refund": points_refund,
        "points/refund/query": refund_query, "points/balance": points_balance}


def receive_webhook(book: Book, headers: Mapping[str, str], body: bytes) -> tuple[int, dict]:
    """Verify, then record once per ``webhook-id`` (a retry of a delivery we have is answered 200 again).
    Refused deliveries are recorded too, with the reason, so an integrator can see what went wrong."""
    lower = {k.lower(): v for k, v in headers.items()}
    entry: dict[str, Any] = {"webhook_id": lower.get("webhook-id"), "timestamp": lower.get("webhook-timestamp"),
                             "received_at": int(time.time()), "body": body.decode("utf-8", "replace")[:4000]}
    try:
        verify_webhook(book.webhook_secret, headers, body, public_keys=book.webhook_public_keys)
    except Refused as refused:
        with book.lock:
            book.webhooks.append(dict(entry, verified=False, reason=refused.code))
            del book.webhooks[:-500]
        return refused.status, {"error": refused.code, "message": refused.message}
    with book.lock:
        duplicate = any(w["verified"] and w["webhook_id"] == entry["webhook_id"] for w in book.webhooks)
        if not duplicate:
            book.webhooks.append(dict(entry, verified=True, reason=None))
        del book.webhooks[:-500]  # a page's worth is enough to look at
    return 200, {"received": True, "duplicate": duplicate}


# --- 4. The server --------------------------------------------------------------------------

class ReferenceChannel:
    """Channel back ends for one or more channels on ``127.0.0.1``; channel ``c``'s API base URL is
    ``{url}/channels/c``. ``mall_base_url`` is where the mall is (for entry links and grants)."""

    def __init__(self, mall_base_url: str, port: int = 0) -> None:
        self.mall_base_url = mall_base_url.rstrip("/")
        self.books: dict[str, Book] = {}
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    # set-up, as the channel's own systems would do it

    def add_channel(self, code: str, secret: str, points_mode: str, entry_mode: str = "signed",
                    webhook_secret: str | None = None, webhook_public_keys: Iterable[str] = ()) -> Book:
        """``webhook_secret`` is the one the mall generated for the channel (shown once to its ops); without
        it (a back end tried on its own) one is made up here. ``webhook_public_keys``: the mall's ``whpk_``
        keys, once its ops gave the channel a signing key (then ``v1a`` signatures are checked too)."""
        self.books[code] = Book(code, [secret], webhook_secret=webhook_secret or new_webhook_secret(),
                                webhook_public_keys=list(webhook_public_keys), points_mode=points_mode,
                                entry_mode=entry_mode)
        return self.books[code]

    def add_member(self, code: str, member_id: str, password: str, points: int = 0, nickname: str | None = None,
                   mobile: str | None = None) -> Member:
        book = self.books[code]
        with book.lock:
            book.members[member_id] = Member(member_id, password, points, nickname, mobile)
        return book.members[member_id]

    def balance(self, code: str, member_id: str) -> int:
        book = self.books[code]
        with book.lock:
            return book.members[member_id].points

    def api_base_url(self, code: str) -> str:
        return f"{self.url}/channels/{code}"

    def grant(self, code: str, member_id: str, grant_id: str, points: int, expires_at: int) -> requests.Response:
        """Hosted mode: give a member points in the mall's wallet (idempotent by ``grant_id``)."""
        return call_mall(self.mall_base_url, self.books[code].signing_secrets[0], f"/partner/{code}/grants",
                         {"grant_id": grant_id, "member_id": member_id, "points": points, "expires_at": expires_at})

    def open_store_link(self, code: str, member_id: str, entry_mode: str | None = None) -> str:
        """What the channel app's tile does: a fresh signed entry link, or (``code`` entry mode) a one-time
        code the mall exchanges at ``member/exchange``. ``entry_mode`` defaults to the channel's."""
        book = self.books[code]
        member = book.members[member_id]
        if (entry_mode or book.entry_mode) == "code":
            one_time = secrets.token_urlsafe(24)
            with book.lock:
                book.codes[one_time] = (member_id, time.time() + WINDOW_SECONDS)
            return f"{self.mall_base_url}/entry/{code}?{urlencode({'code': one_time})}"
        fields = {k: v for k, v in (("nickname", member.nickname), ("mobile", member.mobile)) if v}
        if book.points_mode == "remote":
            fields["points"] = str(member.points)
        return entry_link(self.mall_base_url, code, book.signing_secrets[0], member_id, **fields)

    # HTTP

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Route one request; returns (status, response headers, body)."""
        split = urlsplit(raw_path)
        parts = split.path.split("/")
        as_json = {"Content-Type": "application/json"}
        if method == "GET" and split.path == "/":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, self.page().encode()
        if method == "GET" and split.path in ("/state.json", "/webhooks.json"):
            data = self.state()
            if split.path == "/webhooks.json":
                data = {code: c["webhooks"] for code, c in data.items()}
            return 200, as_json, json.dumps(data, indent=2, ensure_ascii=False).encode()
        if method == "GET" and len(parts) == 4 and parts[1] == "app" and parts[2] in self.books:
            if parts[3] not in self.books[parts[2]].members:
                return 404, as_json, b'{"error":"no_such_member"}'
            return 302, {"Location": self.open_store_link(parts[2], parts[3])}, b""
        if method != "POST" or len(parts) < 4 or parts[1] != "channels" or parts[2] not in self.books:
            return 404, as_json, b'{"error":"no_such_api"}'
        book = self.books[parts[2]]
        api_path = split.path[len(f"/channels/{parts[2]}"):]  # the PATH that was signed: relative to our base URL
        try:
            if api_path == "/webhooks":
                status, answer = receive_webhook(book, headers, body)
            elif api_path.lstrip("/") in APIS:
                params = request_params(split.query, headers, body)
                verify_signed_request(params, method, api_path, book.signing_secrets, book.nonces)
                status, answer = APIS[api_path.lstrip("/")](book, _json_object(body))
            else:
                status, answer = 404, {"error": "no_such_api"}
        except Refused as refused:
            status, answer = refused.status, {"error": refused.code, "message": refused.message}
        return status, as_json, json.dumps(answer).encode()

    def start(self) -> "ReferenceChannel":
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > 1_000_000:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                status, headers, payload = channel.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                headers = {**headers, "Content-Length": str(len(payload)), "Cache-Control": "no-store"}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                """A browser that closed the page mid-answer is not an error worth a traceback."""
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self._port), Handler)
        threading.Thread(target=self._server.serve_forever, name="reference-channel", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # what an integrator looks at

    def state(self) -> dict[str, Any]:
        out = {}
        for code, book in self.books.items():
            with book.lock:
                out[code] = {
                    "points_mode": book.points_mode, "entry_mode": book.entry_mode,
                    "api_base_url": self.api_base_url(code),
                    "webhook_url": f"{self.api_base_url(code)}/webhooks", "webhook_secret": book.webhook_secret,
                    "members": {m.member_id: {"points": m.points, "nickname": m.nickname}
                                for m in book.members.values()},
                    "deductions": {o: {"member_id": d.member_id, "points": d.points, "outcome": d.outcome,
                                       "refunded": d.refunded, "cancelled": o in book.cancelled}
                                   for o, d in book.deductions.items()},
                    "refunds": dict(book.refunds), "webhooks": list(book.webhooks),
                }
        return out

    def page(self) -> str:
        """The state as a small HTML page (reload to refresh)."""
        e = html.escape
        parts = ["<!doctype html><meta charset='utf-8'><title>Reference channel back end</title>",
                 "<style>body{font:14px sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:left}table{border-collapse:collapse}code{font-size:12px}</style>",
                 "<h1>Reference channel back end</h1><p>State in memory; reload to refresh. "
                 "<a href='/state.json'>state.json</a> · <a href='/webhooks.json'>webhooks.json</a></p>"]
        for code, c in self.state().items():
            parts.append(f"<h2>{e(code)} <small>({e(c['points_mode'])} points, {e(c['entry_mode'])} entry)</small>"
                         f"</h2><p>API base URL <code>{e(c['api_base_url'])}</code> · webhook URL "
                         f"<code>{e(c['webhook_url'])}</code> · webhook secret <code>{e(c['webhook_secret'])}</code>")
            parts.append(_table(["member", "points held here", "open the store"], [
                [e(m), str(v["points"]) if c["points_mode"] == "remote" else "— (the mall keeps the wallet)",
                 f"<a href='/app/{e(code)}/{e(m)}'>open as {e(m)}</a>"] for m, v in c["members"].items()]))
            parts.append("<h3>Deductions</h3>" + _table(["order", "member", "points", "outcome", "refunded"], [
                [e(o), e(d["member_id"]), str(d["points"]),
                 e(d["outcome"]) + (" (cancelled)" if d["cancelled"] else ""), str(d["refunded"])]
                for o, d in c["deductions"].items()]))
            parts.append("<h3>Webhooks received</h3>" + _table(["webhook-id", "verified", "received at", "body"], [
                [e(str(w["webhook_id"])), "yes" if w["verified"] else f"no: {e(w['reason'])}", str(w["received_at"]),
                 f"<code>{e(w['body'][:300])}</code>"] for w in reversed(c["webhooks"])]))
        return "".join(parts)


def _table(headings: list[str], rows: list[list[str]]) -> str:
    """An HTML table from cells that are already escaped."""
    if not rows:
        return "<p>none yet</p>"
    head = "".join(f"<th>{h}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
