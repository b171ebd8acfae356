"""Channels' tables: the channel itself, its sub-pool items, store topics, and signed requests' nonces.

The deployment template (``infra/template.py``) is generated from these classes (listed with every other
area's in ``chalicelib/tables.py``), so keys, indexes and TTL are declared once, here."""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _meta


class Channel(Model):
    """A partner app that sells our goods to its members for points."""

    Meta = _meta("channels")
    code = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    contact_name = UnicodeAttribute()
    phone = UnicodeAttribute()
    settlement_period = UnicodeAttribute()
    # Its settlement rule by the first business day it holds (``settlement_rules.with_change``: a change holds from the
    # next day); none until the first change, when ``settlement_period`` held on every day.
    settlement_rules = MapAttribute(null=True)
    points_mode = UnicodeAttribute()
    points_per_yuan = NumberAttribute()
    member_points_cap = NumberAttribute()
    redemption_quota = NumberAttribute()
    api_base_url = UnicodeAttribute(null=True)
    entry_mode = UnicodeAttribute(default="signed")
    sandbox = BooleanAttribute(default=False)
    cart_enabled = BooleanAttribute(default=False)
    secret = UnicodeAttribute()
    previous_secret = UnicodeAttribute(null=True)
    previous_secret_until = NumberAttribute(null=True)
    # When the channel first signed a request with the current secret during an overlap (its proof
    # that it has it); until then, and until the overlap ends, our calls to it use the previous one.
    secret_proven_at = NumberAttribute(null=True)
    status = UnicodeAttribute(default="active")
    current_period = UnicodeAttribute(null=True)
    # How many quota shard items the current period has (written with ``current_period``), so checkout
    # reads them by key in its one BatchGetItem; channels from before it are found by a Query.
    quota_shards = NumberAttribute(null=True)
    # Raised, with the same field on every shard of the current period, by every change of what the
    # channel sells at which price (sub-pool items, points per yuan): checkout conditions the shards it
    # debits on the version it read with the channel, instead of a condition check per sub-pool item.
    pricing_version = NumberAttribute(null=True)
    payment_auth = UnicodeAttribute(default="channel_password")
    # Order fulfilment (``fulfilment.start``): a parcel unshipped this long after payment is cancelled and
    # refunded; a shipped one completes this long after the shipping deadline unless the member confirms first.
    shipping_deadline_hours = NumberAttribute(default=72)
    receipt_days = NumberAttribute(default=10)
    # A member may ask for a refund of a completed parcel for this many days after it completed (0: never).
    refund_window_days = NumberAttribute(default=15)
    # Where order events go (``webhooks``), signed per Standard Webhooks with ``webhook_secret``
    # ("whsec_" + base64), a key apart from the signing secret; during a rotation's overlap the
    # previous one signs too (both signatures sent), so the channel may switch when it likes.
    webhook_url = UnicodeAttribute(null=True)
    webhook_secret = UnicodeAttribute(null=True)
    previous_webhook_secret = UnicodeAttribute(null=True)
    previous_webhook_secret_until = NumberAttribute(null=True)
    # Asymmetric signatures beside them (Standard Webhooks ``v1a``, Ed25519): our private key ("whsk_"), the
    # channel verifies with its public key; rotated the same way (both signatures during the overlap).
    webhook_signing_key = UnicodeAttribute(null=True)
    previous_webhook_signing_key = UnicodeAttribute(null=True)
    previous_webhook_signing_key_until = NumberAttribute(null=True)
    # Set when the receiver answered 410 Gone: no delivery is attempted until ops enable the endpoint again.
    webhook_disabled_at = NumberAttribute(null=True)
    webhook_disabled_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    # How long we wait for the channel's API to answer (seconds, 0.5–10; unset: ``channel_api.READ_TIMEOUT``).
    api_timeout_seconds = NumberAttribute(null=True)


class PoolItem(Model):
    """A master-pool goods picked into one channel's sub-pool.

    ``prices`` maps sku_id to its rule: ``{"price": n}`` or
    ``{"markup": {...}}``, with ``allow_loss`` when ops accepted a price
    below settlement. A SKU without a rule sells at the base sale price.
    """

    Meta = _meta("pool")
    channel_code = UnicodeAttribute(hash_key=True)
    goods_id = UnicodeAttribute(range_key=True)
    prices = MapAttribute(default=dict)
    added_by = UnicodeAttribute()
    added_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)


class Nonce(Model):
    """A signed request's nonce, kept past the time window so a replay is refused."""

    Meta = _meta("nonces")
    key = UnicodeAttribute(hash_key=True)  # "{channel}#{nonce}"
    expires_at = TTLAttribute()


class Topic(Model):
    """An ops-curated collection on a channel's store home, with its own goods order."""

    Meta = _meta("topics")
    channel_code = UnicodeAttribute(hash_key=True)
    topic_id = UnicodeAttribute(range_key=True)
    title = UnicodeAttribute()
    position = NumberAttribute(default=0)
    goods_ids = ListAttribute(of=UnicodeAttribute, default=list)
    updated_at = UnicodeAttribute(default=now_iso)
