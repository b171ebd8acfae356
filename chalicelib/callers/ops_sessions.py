"""Ops browser sessions on the local stack: the printed ops token, typed once into the sign-in page, becomes a
signed, expiring session in an ``HttpOnly; SameSite=Strict`` cookie, so an ops page opens from a link.

The cookie never carries the token: it is ``payload.mac``, the MAC keyed by a key derived from the token (HMAC
of the token over a fixed label), so only a holder of the token can mint one, and a new token (each ``make run``)
ends every session. A session admits reads; a state-changing call with the cookie must also send the session's
CSRF token (``X-CSRF-Token``), which pages hand out and a cross-site form cannot know. Deployed stages never
look at this cookie (ops there are IAM callers: ``callers.ops_actor``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from chalicelib.core import config
from chalicelib.core.errors import Forbidden, Unauthorized

COOKIE = "cm_ops"
SECONDS = 8 * 3600  # one working day; sign in again after
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class OpsSession:
    session_id: str
    expires_at: int

    @property
    def csrf(self) -> str:
        """The session's CSRF token: bound to this session, derived (nothing to store), never the cookie."""
        return _mac(f"csrf.{self.session_id}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key() -> bytes:
    if not (config.IS_LOCAL and config.LOCAL_OPS_TOKEN):
        raise Unauthorized("ops_auth_required", "ops browser sessions exist on the local stack only")
    return hmac.new(config.LOCAL_OPS_TOKEN.encode(), b"channel-mall ops session v1", hashlib.sha256).digest()


def _mac(payload: str) -> str:
    return _b64(hmac.new(_key(), payload.encode(), hashlib.sha256).digest())


def token_matches(offered: str | None) -> bool:
    """Whether ``offered`` is the local ops token (constant time; nothing matches outside the local stack)."""
    expected = config.LOCAL_OPS_TOKEN if config.IS_LOCAL else ""
    return bool(expected and offered and offered.isascii() and hmac.compare_digest(offered, expected))


def issue(now: float | None = None) -> tuple[str, OpsSession]:
    """A new session: the cookie value and what it stands for."""
    session = OpsSession(secrets.token_hex(12), int(time.time() if now is None else now) + SECONDS)
    payload = _b64(json.dumps({"s": session.session_id, "x": session.expires_at}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(payload)}", session


def read(value: str, now: float | None = None) -> OpsSession:
    """The session a cookie value stands for; ``ops_session_invalid`` or ``ops_session_expired`` otherwise."""
    payload, _, mac = value.partition(".")
    if not (payload and mac.isascii() and hmac.compare_digest(_mac(payload), mac)):
        raise Unauthorized("ops_session_invalid", "this ops session is not valid: sign in again at /ops/sign-in")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        session = OpsSession(str(data["s"]), int(data["x"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthorized("ops_session_invalid", "this ops session is not valid") from None
    if session.expires_at <= (time.time() if now is None else now):
        raise Unauthorized("ops_session_expired", "this ops session has expired: sign in again at /ops/sign-in")
    return session


def admit(cookie_value: str, method: str, csrf: str | None, now: float | None = None) -> OpsSession:
    """A request carrying the ops cookie: reads are admitted with a valid session; anything that changes state
    needs the session's CSRF token as well (a cookie alone is what a cross-site request can carry)."""
    session = read(cookie_value, now)
    if method.upper() not in SAFE_METHODS:
        if not (csrf and csrf.isascii() and hmac.compare_digest(csrf, session.csrf)):
            raise Forbidden("csrf_required", f"a state-changing ops call with the session cookie needs the "
                                             f"session's {CSRF_HEADER} header (or the ops token as Bearer)")
    return session


def cookie(value: str) -> str:
    return f"{COOKIE}={value}; Path=/ops; Max-Age={SECONDS}; HttpOnly; SameSite=Strict"


def cleared() -> str:
    return f"{COOKIE}=; Path=/ops; Max-Age=0; HttpOnly; SameSite=Strict"
