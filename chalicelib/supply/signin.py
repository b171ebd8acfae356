"""Workbench sign-in: one-time links made by a supplier's key holder or ops, consumed into session cookies.

A link is consumed by the same transaction that writes its session, conditional on the link being unused and
unexpired, so two racing clicks give exactly one session. Sessions are items (not signed tokens), so signing
out ends one at once; each request reads it strongly consistent and checks the supplier is still active.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from pynamodb.exceptions import DoesNotExist

from chalicelib.core import audit, config
from chalicelib.core.errors import Forbidden, Unauthorized
from chalicelib.core.clock import now_iso
from chalicelib.core.tx import LabelledTransaction, Refused, commit_retrying
from chalicelib.supply import signin_rules as rules
from chalicelib.supply import suppliers
from chalicelib.supply.models import Supplier, SupplierSession, SupplierSignInLink

RECORD_SECONDS = 7 * 24 * 3600  # links and sessions are kept this long past their end, for the audit trail


@dataclass(frozen=True)
class SignedIn:
    token: str  # the cookie's value: shown once, never stored
    session: SupplierSession


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _active(supplier_id: str) -> Supplier:
    supplier = suppliers.get(supplier_id)
    if supplier.status != "active":
        raise Forbidden("supplier_not_active", "this supplier account is not active")
    return supplier


def create_link(supplier_id: str, actor: str, base_url: str, now: float | None = None) -> dict:
    """A one-time link into the workbench for ``supplier_id``. The token rides in the URL's fragment, which
    browsers never send to a server (no access log, no Referer holds it), and the page posts it to sign in."""
    now = time.time() if now is None else now
    _active(supplier_id)
    token = f"{rules.LINK_PREFIX}_{secrets.token_urlsafe(32)}"
    valid_until = int(now) + rules.LINK_SECONDS
    link = SupplierSignInLink(rules.token_hash(token), supplier_id=supplier_id, created_by=actor,
                              valid_until=valid_until, expires_at=_at(valid_until + RECORD_SECONDS))
    link.save(condition=SupplierSignInLink.link_hash.does_not_exist())
    audit.row(f"supplier#{supplier_id}", actor, "signin_link_created", "signin_link", None,
              link.link_hash[:12]).save()
    return {"url": f"{base_url}/workbench#signin={token}", "supplier_id": supplier_id,
            "expires_in": rules.LINK_SECONDS, "expires_at": _iso(valid_until)}


def _link(token: str | None) -> SupplierSignInLink:
    invalid = Unauthorized("invalid_signin_link", "this sign-in link is not valid; ask for a new one")
    if not rules.well_formed(token, rules.LINK_PREFIX):
        raise invalid
    try:
        return SupplierSignInLink.get(rules.token_hash(token or ""), consistent_read=True)
    except DoesNotExist:
        raise invalid from None


def _refuse_link(code: str) -> Unauthorized:
    if code == "signin_link_used":
        return Unauthorized(code, "this sign-in link was used already; ask for a new one")
    return Unauthorized(code, "this sign-in link has expired; ask for a new one")


def sign_in(token: str | None, now: float | None = None) -> SignedIn:
    """Consume the link and start its session, in one transaction: the link's update is conditional on it being
    still unused and unexpired, so of any number of racing uses exactly one commits."""
    now = time.time() if now is None else now
    link = _link(token)
    refusal = rules.link_refusal(int(link.valid_until), link.used_at is not None, now)
    if refusal:
        raise _refuse_link(refusal)
    _active(link.supplier_id)
    session_token = f"{rules.SESSION_PREFIX}_{secrets.token_urlsafe(32)}"
    valid_until = int(now) + rules.SESSION_SECONDS
    session = SupplierSession(rules.token_hash(session_token), supplier_id=link.supplier_id,
                              csrf_token=secrets.token_urlsafe(24), link_hash=link.link_hash,
                              valid_until=valid_until, expires_at=_at(valid_until + RECORD_SECONDS))

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("link", link, [SupplierSignInLink.used_at.set(now_iso()),
                                 SupplierSignInLink.session_hash.set(session.session_hash)],
                  condition=SupplierSignInLink.used_at.does_not_exist()
                  & (SupplierSignInLink.valid_until > int(now)))
        tx.put("session", session, condition=SupplierSession.session_hash.does_not_exist())
        return tx

    try:
        commit_retrying(build)
    except Refused:
        link.refresh(consistent_read=True)
        raise _refuse_link(rules.link_refusal(int(link.valid_until), link.used_at is not None, now)
                           or "signin_link_used") from None
    audit.row(f"supplier#{link.supplier_id}", link.created_by, "workbench_signed_in", "session", None,
              session.session_hash[:12]).save()
    return SignedIn(session_token, session)


def session_of(token: str | None, now: float | None = None) -> SupplierSession:
    """The live session behind a cookie (read strongly consistent: a sign-out acts at once)."""
    now = time.time() if now is None else now
    invalid = Unauthorized("workbench_session_required", "sign in to the workbench with a sign-in link")
    if not rules.well_formed(token, rules.SESSION_PREFIX):
        raise invalid
    try:
        session = SupplierSession.get(rules.token_hash(token or ""), consistent_read=True)
    except DoesNotExist:
        raise invalid from None
    if rules.session_refusal(int(session.valid_until), now):
        raise Unauthorized("workbench_session_expired", "your workbench session has ended; sign in again")
    return session


def check_csrf(session: SupplierSession, method: str, sent: str | None) -> None:
    refusal = rules.csrf_refusal(method, sent, session.csrf_token)
    if refusal:
        raise Forbidden(refusal, f"state-changing calls from the workbench need the {rules.CSRF_HEADER} header "
                                 "of this session")


def supplier_of(token: str | None, method: str, csrf_sent: str | None) -> Supplier:
    """The supplier a workbench cookie proves: live session, CSRF token on a state-changing call, supplier
    still active."""
    session = session_of(token)
    check_csrf(session, method, csrf_sent)
    return _active(session.supplier_id)


def view(session: SupplierSession, supplier: Supplier) -> dict:
    return {"supplier": suppliers.supplier_view(supplier), "csrf_token": session.csrf_token,
            "expires_at": _iso(int(session.valid_until))}


def sign_out(token: str | None, csrf_sent: str | None) -> None:
    """End the session now (its cookie is cleared by the route)."""
    session = session_of(token)
    check_csrf(session, "DELETE", csrf_sent)
    session.delete()


def secure_cookies() -> bool:
    return not config.IS_LOCAL
