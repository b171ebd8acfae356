"""Supplier onboarding and API credentials.

Two ways in: a supplier applies and ops approve or reject, or ops create the
account directly. Each active supplier holds API keys shown once, stored as a
SHA-256 of their secret part, revocable and rotatable.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError

from chalicelib.core import audit
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from chalicelib.core.models import get_owned
from chalicelib.core.tx import condition_failed, transaction
from chalicelib.supply.models import Supplier, SupplierKey

if TYPE_CHECKING:  # annotations only: pydantic loads with the first request that sends a body
    from chalicelib.core.schemas import SupplierApplication

KEY_PREFIX = "cmk"
KEY_ID = re.compile(r"[A-Za-z0-9]{1,64}")  # a key id is a key: bounded before it is looked up
STATUSES = ("applied", "active", "rejected")


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    api_key: str  # plaintext, returned once and never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def view(s: Supplier) -> dict:
    return {
        "supplier_id": s.supplier_id, "name": s.name, "contact_name": s.contact_name, "phone": s.phone,
        "email": s.email, "licence_no": s.licence_no, "bank_account": s.bank_account.as_dict(),
        "status": s.status, "reject_reason": s.reject_reason, "created_by": s.created_by,
        "created_at": s.created_at, "updated_at": s.updated_at,
    }


def supplier_view(s: Supplier) -> dict:
    """The supplier's own view of its account: who created it only as "self" or "platform"."""
    return dict(view(s), created_by=audit.public_actor(s.created_by))


def get(supplier_id: str) -> Supplier:
    try:
        return Supplier.get(supplier_id)
    except DoesNotExist:
        raise NotFound("supplier_not_found", f"no supplier {supplier_id}") from None


def _new(app: SupplierApplication, status: str, created_by: str) -> Supplier:
    return Supplier(
        f"S{uuid.uuid4().hex[:12].upper()}", name=app.name, contact_name=app.contact_name, phone=app.phone,
        email=app.email, licence_no=app.licence_no, bank_account=app.bank_account.model_dump(),
        status=status, created_by=created_by,
    )


def apply(app: SupplierApplication) -> Supplier:
    """A supplier's own application; it waits for ops to approve or reject it."""
    supplier = _new(app, "applied", "self")
    with transaction() as tx:
        tx.save(supplier, condition=Supplier.supplier_id.does_not_exist())
        audit.add(tx, f"supplier#{supplier.supplier_id}", "self", "applied", "status", None, "applied")
    return supplier


def _key_item(supplier_id: str) -> tuple[SupplierKey, IssuedKey]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    item = SupplierKey(key_id, supplier_id=supplier_id, secret_hash=_hash(secret))
    return item, IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}")


def create_by_ops(app: SupplierApplication, actor: str) -> tuple[Supplier, IssuedKey]:
    """Ops open the account themselves and hand its first key over."""
    supplier = _new(app, "active", actor)
    key, issued = _key_item(supplier.supplier_id)
    with transaction() as tx:
        tx.save(supplier, condition=Supplier.supplier_id.does_not_exist())
        tx.save(key, condition=SupplierKey.key_id.does_not_exist())
        audit.add(tx, f"supplier#{supplier.supplier_id}", actor, "created", "status", None, "active")
    return supplier, issued


def _decide(supplier: Supplier, status: str, action: str, actor: str, extra: list,
            key: SupplierKey | None = None) -> Supplier:
    """Move an application to ``status``, once: a second decision finds it no longer ``applied``."""
    try:
        with transaction() as tx:
            tx.update(supplier, [Supplier.status.set(status), Supplier.updated_at.set(now_iso())] + extra,
                      condition=Supplier.status == "applied")
            if key is not None:
                tx.save(key, condition=SupplierKey.key_id.does_not_exist())
            audit.add(tx, f"supplier#{supplier.supplier_id}", actor, action, "status", supplier.status, status)
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise Conflict("supplier_not_pending",
                           f"supplier {supplier.supplier_id} is {supplier.status}, not applied") from None
        raise
    supplier.refresh()
    return supplier


def approve(supplier_id: str, actor: str) -> tuple[Supplier, IssuedKey]:
    """Activate an application and hand over its first API key."""
    key, issued = _key_item(supplier_id)
    return _decide(get(supplier_id), "active", "approved", actor, [], key), issued


def reject(supplier_id: str, reason: str, actor: str) -> Supplier:
    return _decide(get(supplier_id), "rejected", "rejected", actor, [Supplier.reject_reason.set(reason)])


def list_by_status(status: str) -> list[Supplier]:
    if status not in STATUSES:
        raise Unprocessable("validation_error", f"status must be one of {', '.join(STATUSES)}", "status")
    return list(Supplier.status_index.query(status, scan_index_forward=False, limit=500))


def issue_key(supplier_id: str, actor: str, revoke_existing: bool = False) -> IssuedKey:
    """Rotate: a new key now; old keys keep working unless revoked here or later."""
    supplier = get(supplier_id)
    if supplier.status != "active":
        raise Conflict("supplier_not_active", f"supplier {supplier_id} is {supplier.status}")
    key, issued = _key_item(supplier_id)
    key.save(condition=SupplierKey.key_id.does_not_exist())
    audit.row(f"supplier#{supplier_id}", actor, "key_issued", "key", None, key.key_id).save()
    if revoke_existing:
        for old in list_keys(supplier_id):
            if old.key_id != key.key_id and old.status == "active":
                revoke_key(supplier_id, old.key_id, actor)
    return issued


def list_keys(supplier_id: str) -> list[SupplierKey]:
    return list(SupplierKey.supplier_index.query(supplier_id))


def revoke_key(supplier_id: str, key_id: str, actor: str) -> None:
    key = get_owned(SupplierKey, key_id, "supplier_id", supplier_id)
    if key is None:
        raise NotFound("key_not_found", f"supplier {supplier_id} has no key {key_id}")
    try:
        key.update([SupplierKey.status.set("revoked"), SupplierKey.revoked_at.set(now_iso())],
                   condition=SupplierKey.status == "active")
    except UpdateError as exc:
        if condition_failed(exc):
            return  # already revoked: revoking is idempotent
        raise
    audit.row(f"supplier#{supplier_id}", actor, "key_revoked", "key", key_id, None).save()


def key_view(k: SupplierKey) -> dict:
    return {"key_id": k.key_id, "status": k.status, "created_at": k.created_at, "revoked_at": k.revoked_at}


def authenticate(api_key: str | None) -> Supplier:
    """The active supplier an API key belongs to, or ``Unauthorized``."""
    parts = (api_key or "").split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not KEY_ID.fullmatch(parts[1]) or len(parts[2]) > 128:
        raise Unauthorized("invalid_api_key", "missing or malformed supplier API key")
    _, key_id, secret = parts
    try:
        key = SupplierKey.get(key_id)
    except DoesNotExist:
        key = None
    if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)) or key.status != "active":
        raise Unauthorized("invalid_api_key", "unknown or revoked supplier API key")
    supplier = get(key.supplier_id)
    if supplier.status != "active":
        raise Forbidden("supplier_not_active", "this supplier account is not active")
    return supplier

