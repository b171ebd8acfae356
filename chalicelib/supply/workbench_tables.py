"""The supplier workbench's tables: one-time sign-in links and the sessions they become.

Both are keyed by the SHA-256 of their token, so a leaked table holds nothing that signs anyone in.
"""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.core.models import _meta, now_iso


class SupplierSignInLink(Model):
    """A one-time sign-in link to the workbench: consumed by the conditional write that starts its session."""

    Meta = _meta("supplier-signin-links")
    link_hash = UnicodeAttribute(hash_key=True)  # sha256 hex of the link's token
    supplier_id = UnicodeAttribute()
    created_by = UnicodeAttribute()  # "supplier:{id}" (its key holder) or the ops actor
    valid_until = NumberAttribute()  # Unix seconds: refused after (the TTL below only tidies up)
    used_at = UnicodeAttribute(null=True)  # set once, by the sign-in that consumed it
    session_hash = UnicodeAttribute(null=True)  # the session it became
    created_at = UnicodeAttribute(default=now_iso)
    expires_at = TTLAttribute()


class SupplierSession(Model):
    """A workbench session bound to one supplier; signing out deletes it, and it ends at ``valid_until``."""

    Meta = _meta("supplier-sessions")
    session_hash = UnicodeAttribute(hash_key=True)  # sha256 hex of the cookie's token
    supplier_id = UnicodeAttribute()
    csrf_token = UnicodeAttribute()  # sent back in X-CSRF-Token on every state-changing call
    link_hash = UnicodeAttribute()  # the link it came from
    valid_until = NumberAttribute()
    created_at = UnicodeAttribute(default=now_iso)
    expires_at = TTLAttribute()


MODELS: tuple[type[Model], ...] = (SupplierSignInLink, SupplierSession)
