"""Members' tables: a channel's member, the external-id link, payment authentication state.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _meta


class MemberLink(Model):
    """One channel's external member id → our member id; created only with its member."""

    Meta = _meta("member-links")
    link = UnicodeAttribute(hash_key=True)  # "{channel}#{external_id}"
    member_id = UnicodeAttribute()


class MemberChannelIndex(GlobalSecondaryIndex):
    """Keys only: a channel's members, for the invariant audit's per-channel read (``settlement.invariants``). A member
    is written at its first entry and later only in fields outside the index, so the index costs one write per
    member, once; DynamoDB builds it over the members that already exist."""

    Meta = type("Meta", (), {"index_name": "channel-index", "projection": KeysOnlyProjection()})
    channel_code = UnicodeAttribute(hash_key=True)


class Member(Model):
    """A channel member as we know it: exactly one external id in exactly one channel."""

    Meta = _meta("members")
    member_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    external_id = UnicodeAttribute()
    nickname = UnicodeAttribute(null=True)
    mobile = UnicodeAttribute(null=True)
    remote_points = NumberAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    last_entry_at = UnicodeAttribute(default=now_iso)
    channel_index = MemberChannelIndex()


class PaymentGuard(Model):
    """Per-member payment authentication state: failed attempts, lock, one-time code."""

    Meta = _meta("payment-guards")
    member_id = UnicodeAttribute(hash_key=True)
    failures = NumberAttribute(default=0)
    locked_until = NumberAttribute(default=0)
    otp_hash = UnicodeAttribute(null=True)
    otp_expires_at = NumberAttribute(null=True)
    otp_attempts = NumberAttribute(default=0)
    # Start of the fixed window attempts are counted in (``payment_auth.WINDOW_SECONDS``), and a keyed
    # fingerprint of each distinct password or code tried in it: an attempt is reserved here before it is
    # checked, and a reservation a crashed request never settled expires with its window.
    attempts_window = NumberAttribute(null=True)
    tried = UnicodeSetAttribute(null=True)
