"""Member sessions: a signed, expiring token bound to one member in one channel.

Stateless (HMAC over the payload), so any Lambda can check it without a read;
the channel's status is still read on each request, so a suspension acts at once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from chalicelib.core import config
from chalicelib.core.errors import Unauthorized


@dataclass(frozen=True)
class Session:
    member_id: str
    channel_code: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str) -> str:
    return _b64(hmac.new(config.session_key().encode(), payload.encode(), hashlib.sha256).digest())


def issue(member_id: str, channel_code: str, now: float | None = None) -> tuple[str, Session]:
    expires = int(now if now is not None else time.time()) + config.SESSION_SECONDS
    payload = _b64(json.dumps({"m": member_id, "c": channel_code, "x": expires}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(payload)}", Session(member_id, channel_code, expires)


def read(token: str | None, now: float | None = None) -> Session:
    if not token or token.count(".") != 1:
        raise Unauthorized("session_required", "sign in through your app's entry link")
    payload, mac = token.split(".")
    if not mac.isascii() or not hmac.compare_digest(_mac(payload), mac):  # compare_digest refuses non-ASCII str
        raise Unauthorized("invalid_session", "this session is not valid")
    try:
        data = json.loads(_unb64(payload))
        session = Session(str(data["m"]), str(data["c"]), int(data["x"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthorized("invalid_session", "this session is not valid") from None
    if session.expires_at < (now if now is not None else time.time()):
        raise Unauthorized("session_expired", "this session has expired; enter again from your app")
    return session


def cookie(token: str) -> str:
    """HttpOnly and SameSite always; Secure everywhere but the plain-HTTP local stack."""
    secure = "" if config.IS_LOCAL else "; Secure"
    return f"cm_session={token}; Path=/; Max-Age={config.SESSION_SECONDS}; HttpOnly; SameSite=Lax{secure}"
