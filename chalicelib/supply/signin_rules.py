"""The workbench sign-in rules, pure: token shapes, when a link or a session is refused, CSRF, the cookie.

A supplier's staff sign in without ever seeing an API key: the key holder (or ops) makes a one-time link, the
link becomes a session cookie, and the cookie is one more proof of "this supplier" beside the key.
"""
from __future__ import annotations

import hashlib
import hmac
import re

LINK_PREFIX, SESSION_PREFIX = "wbl", "wbs"
LINK_SECONDS = 15 * 60  # short-lived: a link is meant to be clicked now, by the person it was sent to
SESSION_SECONDS = 8 * 3600  # a working day; then a new link
COOKIE = "cm_supplier"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the tables key by: the token itself is never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str | None, prefix: str) -> bool:
    """``{prefix}_{43 url-safe characters}``: anything else is refused before any read."""
    head, _, secret = (token or "").partition("_")
    return head == prefix and bool(_TOKEN.fullmatch(secret))


def link_refusal(valid_until: int, used: bool, now: float) -> str | None:
    """Why a sign-in link cannot start a session now (its code), or None. Used is told before expired: the
    person who clicked a used link should hear that someone else already did."""
    if used:
        return "signin_link_used"
    if now >= valid_until:
        return "signin_link_expired"
    return None


def session_refusal(valid_until: int, now: float) -> str | None:
    return "workbench_session_expired" if now >= valid_until else None


def csrf_refusal(method: str, sent: str | None, expected: str) -> str | None:
    """A cookie rides along on any request the browser makes, so a state-changing call must also carry the
    session's CSRF token, which only a page of our own origin can read (``GET /supplier/session``)."""
    if method.upper() in SAFE_METHODS:
        return None
    if not sent:
        return "csrf_token_required"
    if not sent.isascii() or not hmac.compare_digest(sent, expected):
        return "csrf_token_invalid"
    return None


def cookie(token: str, max_age: int, secure: bool) -> str:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure outside the
    plain-HTTP local stack."""
    return f"{COOKIE}={token}; Path=/; Max-Age={max(0, max_age)}; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else "")


def cleared_cookie(secure: bool) -> str:
    return cookie("", 0, secure)


def cookie_value(header: str | None, name: str = COOKIE) -> str | None:
    """The named cookie in a ``Cookie`` header (the first, as browsers send the most specific first)."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None
