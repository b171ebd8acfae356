"""PynamoDB models: one table per business entity.

The deployment template (``infra/template.py``) is generated from these
classes, so keys, indexes and TTL are declared once, here.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TypeVar

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.core import config

M = TypeVar("M", bound=Model)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _meta(name: str) -> type:
    return type(
        "Meta",
        (),
        {
            "table_name": config.table_name(name),
            "region": config.REGION,
            "host": config.DYNAMODB_ENDPOINT,
            "billing_mode": "PAY_PER_REQUEST",
            "connect_timeout_seconds": 2,
            "read_timeout_seconds": 5,
            "max_retry_attempts": 3,
        },
    )


def _index_meta(name: str) -> type:
    return type("Meta", (), {"index_name": name, "projection": AllProjection()})


class SupplierStatusIndex(GlobalSecondaryIndex):
    Meta = _index_meta("status-index")
    status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Supplier(Model):
    """A supplier account: applied, active, rejected or suspended."""

    Meta = _meta("suppliers")
    supplier_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    contact_name = UnicodeAttribute()
    phone = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    licence_no = UnicodeAttribute()
    bank_account = MapAttribute()
    status = UnicodeAttribute()
    reject_reason = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    # Who bears a refund of a parcel it already shipped (``settlement.statements``): "supplier" (unset) — it
    # comes off the supplier's next statement — or "platform".
    refunds_borne_by = UnicodeAttribute(null=True)
    status_index = SupplierStatusIndex()


class SupplierKeyIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SupplierKey(Model):
    """An API credential; only the SHA-256 of its secret part is kept."""

    Meta = _meta("supplier-keys")
    key_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    created_at = UnicodeAttribute(default=now_iso)
    revoked_at = UnicodeAttribute(null=True)
    supplier_index = SupplierKeyIndex()


class GoodsSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class GoodsStatusIndex(GlobalSecondaryIndex):
    Meta = _index_meta("status-index")
    status = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class GoodsRevisionIndex(GlobalSecondaryIndex):
    """Sparse: only goods with a content revision (``pending`` for ops to review, or ``rejected``)."""
    Meta = _index_meta("revision-index")
    revision_state = UnicodeAttribute(hash_key=True)
    updated_at = UnicodeAttribute(range_key=True)


class Goods(Model):
    """A supplier's goods with its SKUs.

    ``skus`` maps sku_id to ``{spec, settlement_price, base_price, stock}``
    (prices in minor currency units) so one SKU's stock can be changed by a
    conditional update on ``skus.<sku_id>.stock`` without reading the list.
    """

    Meta = _meta("goods")
    goods_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    ref = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    images = ListAttribute(of=UnicodeAttribute, default=list)  # upload ids of the supplier's own images
    category = UnicodeAttribute()
    # The title and description per store language, {"zh-CN": {"title", "description"}, "en": {...}}; the
    # plain fields above are what any language without its own shows (``channels.locales.text_of``).
    locales = MapAttribute(null=True)
    skus = MapAttribute()
    status = UnicodeAttribute()
    reject_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    version = NumberAttribute(default=1)
    # A supplier's change to approved content (title, description, images, category) waits here for
    # review while members keep seeing the approved fields above; ``revision_state`` keys the sparse index.
    revision = MapAttribute(null=True)
    revision_state = UnicodeAttribute(null=True)
    supplier_index = GoodsSupplierIndex()
    status_index = GoodsStatusIndex()
    revision_index = GoodsRevisionIndex()


class Stock(Model):
    """One SKU's stock and the prices checkout guards, kept apart from its goods item.

    A checkout line writes only this small item (2 WCU in a transaction) instead of the whole
    goods item with every SKU, title and description. ``stock`` is authoritative (checkout takes
    it with ``stock >= qty``); ``settlement_price`` and ``base_price`` mirror the goods' SKU and
    ``selling`` is true while the goods is approved, each written in the same transaction that
    changes it on the goods item, so checkout's conditions here guard the prices and the approval
    it read. Goods from before this item get it on first read (``goods.stock_items``).
    """

    Meta = _meta("stock")
    goods_id = UnicodeAttribute(hash_key=True)
    sku_id = UnicodeAttribute(range_key=True)
    stock = NumberAttribute()
    settlement_price = NumberAttribute()
    base_price = NumberAttribute(null=True)
    selling = BooleanAttribute(default=False)


class Audit(Model):
    """Who changed what, when, from which value to which: one row per change."""

    Meta = _meta("audit")
    entity = UnicodeAttribute(hash_key=True)
    at = UnicodeAttribute(range_key=True)
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    field = UnicodeAttribute(null=True)
    old = UnicodeAttribute(null=True)
    new = UnicodeAttribute(null=True)


class Channel(Model):
    """A partner app that sells our goods to its members for points."""

    Meta = _meta("channels")
    code = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    contact_name = UnicodeAttribute()
    phone = UnicodeAttribute()
    settlement_period = UnicodeAttribute()
    # Its settlement rule by the first business day it holds (``periods.with_change``: a change holds from the
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
    # The store's language until a member picks one ("zh-CN" or "en"; unset: "en", as before it existed).
    default_locale = UnicodeAttribute(null=True)
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


class Upload(Model):
    """A signed upload link handed to a supplier, and what its object became."""

    Meta = _meta("uploads")
    upload_id = UnicodeAttribute(hash_key=True)
    supplier_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    key = UnicodeAttribute()
    content_type = UnicodeAttribute()
    status = UnicodeAttribute(default="issued")
    result = MapAttribute(default=dict)
    created_at = UnicodeAttribute(default=now_iso)
    processed_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class Nonce(Model):
    """A signed request's nonce, kept past the time window so a replay is refused."""

    Meta = _meta("nonces")
    key = UnicodeAttribute(hash_key=True)  # "{channel}#{nonce}"
    expires_at = TTLAttribute()


class MemberLink(Model):
    """One channel's external member id → our member id; created only with its member."""

    Meta = _meta("member-links")
    link = UnicodeAttribute(hash_key=True)  # "{channel}#{external_id}"
    member_id = UnicodeAttribute()


class MemberChannelIndex(GlobalSecondaryIndex):
    """Keys only: a channel's members, for the invariant audit's per-channel read (``settlement.audit``). A member
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
    # When ``remote_points`` was last asked of the channel's wallet (``checkout.remote_balance``); None: only
    # the entry link's figure is known.
    remote_points_at = NumberAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    last_entry_at = UnicodeAttribute(default=now_iso)
    channel_index = MemberChannelIndex()


class Topic(Model):
    """An ops-curated collection on a channel's store home, with its own goods order."""

    Meta = _meta("topics")
    channel_code = UnicodeAttribute(hash_key=True)
    topic_id = UnicodeAttribute(range_key=True)
    title = UnicodeAttribute()
    position = NumberAttribute(default=0)
    goods_ids = ListAttribute(of=UnicodeAttribute, default=list)
    updated_at = UnicodeAttribute(default=now_iso)


class Quota(Model):
    """One shard of a channel's redemption quota for one settlement period, in points.

    A period is 1 to 32 shard items (so one hot channel is not capped by one item's write
    ceiling): shard 0 is keyed ``period_id`` itself, shard i > 0 ``{period_id}#{i}``
    (``quotas.shard_key``); every field below is that shard's share and the period's
    figures are the sums. ``remaining`` is what checkout may still take (condition
    ``remaining >= n``), ``reserved`` holds remote-mode orders waiting for the channel's
    deduction, ``spent`` is confirmed; ``grant_room`` caps hosted grants at the same quota.
    Per shard, ``remaining + reserved + spent == limit == grant_room + granted``.
    ``selling`` is the checkout gate: true only while the channel is active and this is its
    current period. It is written with the channel's status and period changes, so checkout
    conditions on the shards it debits and never on the (single, hot) channel item.
    """

    Meta = _meta("quotas")
    channel_code = UnicodeAttribute(hash_key=True)
    period_id = UnicodeAttribute(range_key=True)
    starts_at = NumberAttribute()
    ends_at = NumberAttribute()
    limit = NumberAttribute()
    remaining = NumberAttribute()
    reserved = NumberAttribute(default=0)
    spent = NumberAttribute(default=0)
    grant_room = NumberAttribute()
    granted = NumberAttribute(default=0)
    selling = BooleanAttribute(default=True)
    # The channel's ``pricing_version`` (copied when the period opens, raised with it): checkout's guard
    # that the sub-pool prices it read are still the channel's at commit.
    pricing_version = NumberAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)


class Wallet(Model):
    """A hosted-mode member's points: one lot per grant, each with its own expiry.

    ``balance`` = ``granted`` − ``spent`` + ``refunded`` − ``expired`` always; spending takes
    from lots by earliest expiry, each lot guarded by ``left >= take`` and
    ``expires_at > now`` in the checkout transaction.
    """

    Meta = _meta("wallets")
    member_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    balance = NumberAttribute(default=0)
    granted = NumberAttribute(default=0)
    spent = NumberAttribute(default=0)
    expired = NumberAttribute(default=0)
    # Points given back by cancelled or refunded parcels, each as a lot of its own (``parcels.give_back``):
    # ``balance`` = ``granted`` − ``spent`` + ``refunded`` − ``expired``.
    refunded = NumberAttribute(default=0)
    lots = MapAttribute(default=dict)


class GrantMemberIndex(GlobalSecondaryIndex):
    """A member's grants, for the invariant audit (granted = the sum of them); a grant is written once."""

    Meta = _index_meta("member-index")
    member_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Grant(Model):
    """A channel's points grant, keyed by the channel's own grant id: one grant, once."""

    Meta = _meta("grants")
    grant_key = UnicodeAttribute(hash_key=True)  # "{channel}#{grant_id}"
    member_id = UnicodeAttribute()
    external_id = UnicodeAttribute()
    points = NumberAttribute()
    expires_at = NumberAttribute()
    period_id = UnicodeAttribute()
    created_at = UnicodeAttribute(default=now_iso)
    member_index = GrantMemberIndex()


class MemberRedemption(Model):
    """Points one remote-mode member has redeemed in one period: the per-member cap's counter.

    The channel keeps the member's wallet, so the cap is judged here: checkout adds the order's points
    with ``redeemed <= cap - points`` in its transaction; a release takes them back.
    """

    Meta = _meta("member-redemptions")
    member_id = UnicodeAttribute(hash_key=True)
    period_id = UnicodeAttribute(range_key=True)
    redeemed = NumberAttribute(default=0)


class OrderMemberIndex(GlobalSecondaryIndex):
    Meta = _index_meta("member-index")
    member_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class OrderPendingIndex(GlobalSecondaryIndex):
    """Sparse: only remote-mode orders still waiting for the channel's deduction."""

    Meta = _index_meta("pending-index")
    pending_channel = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class OrderUnsplitIndex(GlobalSecondaryIndex):
    """Sparse: paid orders not yet split into parcels (their fulfilment may never have started)."""

    Meta = _index_meta("unsplit-index")
    unsplit = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Order(Model):
    """A member's order: lines at the channel price with their settlement price and supplier.

    Its table's stream (new and old images) feeds ``partners.order_figures``: metering and partner-call figures
    derived after the fact, so the checkout writes nothing but its one transaction."""

    Meta = type("Meta", (_meta("orders"),), {"stream_view_type": "NEW_AND_OLD_IMAGES"})
    order_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    period_id = UnicodeAttribute()
    request_hash = UnicodeAttribute()
    status = UnicodeAttribute()
    points_mode = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)
    points = NumberAttribute()
    amount = NumberAttribute()
    failure = UnicodeAttribute(null=True)
    pending_channel = UnicodeAttribute(null=True)
    quota_takes = MapAttribute(null=True)  # quota shard number (as a string) → points debited from it
    # Remote mode: the points this order added to the member's ``MemberRedemption`` counter at checkout,
    # all a release may give back (orders from before the counter added nothing and have none).
    cap_counted = NumberAttribute(null=True)
    resolve_attempts = NumberAttribute(default=0)
    sandbox = BooleanAttribute(default=False)  # a sandbox channel's: never reaches a supplier, never settled
    # Whether the order took its lines from the goods' live ``Stock`` (and so gives them back): False for a
    # sandbox order, which only checks the stock is there (``checkout._stock_updates``); None for orders from
    # before, which all took it.
    holds_stock = BooleanAttribute(null=True)
    # Ship-to the member gave at checkout (name, phone, lines): shown to the member and to the supplier
    # of each of its parcels, nobody else. Orders from before it, and API orders without one, have none.
    address = MapAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    # No index by channel: nothing reads one, and each index costs every order 1 WCU more (issue 7 holds a
    # one-line order's transaction to 10 WCU; a remote order already writes member and pending index entries).
    member_index = OrderMemberIndex()
    pending_index = OrderPendingIndex()
    # the channel's code from the write that makes the order paid until its split: the sweep's work list
    unsplit = UnicodeAttribute(null=True)
    unsplit_index = OrderUnsplitIndex()
    # The channel's points per yuan its points were priced at (checkout), copied to the parcels at the split:
    # settlement turns the points into money at this rate. Orders from before it: the channel's rate at the split.
    points_per_yuan = NumberAttribute(null=True)
    # A prepaid channel's order price, taken from its balance in this order's checkout transaction
    # (``billing.debit``), and from which balance shards (shard number as a string → fen): what a release gives back.
    fee = NumberAttribute(null=True)
    fee_takes = MapAttribute(null=True)
    # The channel calls (password check, deduct, query, cancel) that the request writing this order made and that
    # succeeded, as JSON (``reliability.Permit.figure``), each write its own: the orders stream books them into
    # the partner-call figures (``partners.order_figures``), so the request path writes no stats item.
    partner_calls = UnicodeAttribute(null=True)


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


class RateCounter(Model):
    """Uses of one rate-limited scope in one fixed window (``ratelimit.hit``); expires after it."""

    Meta = _meta("rate-counters")
    key = UnicodeAttribute(hash_key=True)  # "{scope}#{window start}"
    count = NumberAttribute(default=0)
    expires_at = TTLAttribute()


class OutboxPendingIndex(GlobalSecondaryIndex):
    """Sparse: only events still to be delivered, by when they are next due."""

    Meta = _index_meta("pending-index")
    pending = UnicodeAttribute(hash_key=True)  # the channel code while undelivered; removed once delivered or parked
    due_at = NumberAttribute(range_key=True)


class OutboxParkedIndex(GlobalSecondaryIndex):
    """Sparse: events whose last retry failed, waiting for ops to redrive them."""

    Meta = _index_meta("parked-index")
    parked = UnicodeAttribute(hash_key=True)  # the channel code while parked
    created_at = UnicodeAttribute(range_key=True)


class OutboxEvent(Model):
    """An event for a channel's webhook, written in the same transaction as the change that causes it.

    ``event_id`` is the Standard Webhooks ``webhook-id``: stable, the same on every retry, so the channel
    can dedupe. ``payload`` is the exact JSON body sent, frozen at the change."""

    Meta = _meta("outbox")
    event_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    kind = UnicodeAttribute()
    payload = UnicodeAttribute()
    state = UnicodeAttribute(default="pending")  # pending | delivered | parked
    attempts = NumberAttribute(default=0)
    last_error = UnicodeAttribute(null=True)
    pending = UnicodeAttribute(null=True)
    due_at = NumberAttribute(null=True)
    parked = UnicodeAttribute(null=True)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    delivered_at = UnicodeAttribute(null=True)
    # Failures before this (Unix seconds) are retried, later ones park the event; unset: created_at plus the
    # retry window (``webhooks``). A redrive starts a new window.
    retry_until = NumberAttribute(null=True)
    pending_index = OutboxPendingIndex()
    parked_index = OutboxParkedIndex()


class Cart(Model):
    """A member's cart in a cart-enabled channel: lines only (``{goods_id, sku_id, qty}``), priced when read.

    Every change rewrites the lines under a condition on ``version`` (``carts``), so concurrent changes never
    lose a line or pass the line bound; ``expires_at`` (TTL) is pushed back by each change."""

    Meta = _meta("carts")
    member_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute, default=list)
    version = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(default=now_iso)
    expires_at = TTLAttribute(null=True)


class ParcelOrderIndex(GlobalSecondaryIndex):
    Meta = _index_meta("order-index")
    order_id = UnicodeAttribute(hash_key=True)


class ParcelSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Parcel(Model):
    """One supplier's part of a paid order (a sub-order), shipped and refunded on its own.

    ``parcel_id`` is ``{order_id}-{n}``, n = 1.. over the order's suppliers sorted by id, so a re-run of the
    split writes the same keys (refused by ``does_not_exist``). ``lines`` keep the prices frozen at checkout
    and the points allocated to each line (``allocation``); ``state`` moves only by ``parcel_states``, each
    move a conditional write on the state read. A sandbox order's parcels are never shown to a supplier."""

    Meta = _meta("parcels")
    parcel_id = UnicodeAttribute(hash_key=True)
    order_id = UnicodeAttribute()
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    supplier_id = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, price, settlement_price, points, title, spec
    points = NumberAttribute()
    amount = NumberAttribute()
    state = UnicodeAttribute()
    carrier = UnicodeAttribute(null=True)
    tracking_no = UnicodeAttribute(null=True)
    shipped_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    # What a cancel gave back: ``points``, the refund lot's ``expires_at`` (hosted) and ``quota``: "returned"
    # to its open period, or "settlement" when the period had closed (settled against the channel instead).
    returned = MapAttribute(null=True)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    order_index = ParcelOrderIndex()
    supplier_index = ParcelSupplierIndex()
    # The order's points rate (``Order.points_per_yuan``), so a return is valued at the rate its billing was.
    points_per_yuan = NumberAttribute(null=True)


class RefundPendingIndex(GlobalSecondaryIndex):
    """Sparse: only remote-mode refunds still waiting for the channel's answer (the sweep's list)."""

    Meta = _index_meta("pending-index")
    pending_channel = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class RefundSupplierIndex(GlobalSecondaryIndex):
    Meta = _index_meta("supplier-index")
    supplier_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Refund(Model):
    """The refund of one shipped (or completed) parcel: points go back, the goods stay with the member.

    ``refund_id`` is derived from the parcel id (``refunds.refund_id_for``), so a retried or concurrent
    request names the same refund and a parcel is refunded at most once; it is also the id the channel's
    ``points/refund`` is idempotent by. ``state``: requested → approved → (remote: awaiting_channel →)
    refunded, or rejected (by the supplier or ops, with ``reject_reason``; or by the channel's refusal).
    ``lines`` and ``points`` are the parcel's, with the points allocated to each line: never more than paid."""

    Meta = _meta("refunds")
    refund_id = UnicodeAttribute(hash_key=True)
    parcel_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    channel_code = UnicodeAttribute()
    member_id = UnicodeAttribute()
    supplier_id = UnicodeAttribute()
    points_mode = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, points
    points = NumberAttribute()
    # "refund": a shipped parcel's points back, the goods stay; "cancel": a remote-mode parcel cancelled
    # before shipment, whose points only the channel can give back (then stock and quota go back too).
    action = UnicodeAttribute(default="refund")
    state = UnicodeAttribute()
    reason = UnicodeAttribute()
    requested_by = UnicodeAttribute()
    decided_by = UnicodeAttribute(null=True)
    reject_reason = UnicodeAttribute(null=True)
    pending_channel = UnicodeAttribute(null=True)
    resolve_attempts = NumberAttribute(default=0)
    sandbox = BooleanAttribute(default=False)
    created_at = UnicodeAttribute(default=now_iso)
    updated_at = UnicodeAttribute(default=now_iso)
    refunded_at = UnicodeAttribute(null=True)
    pending_index = RefundPendingIndex()
    supplier_index = RefundSupplierIndex()


class PartnerBreaker(Model):
    """The circuit breaker of one channel's API (``partners.reliability``; rules in ``partners.breaker``)."""

    Meta = _meta("partner-breakers")
    channel_code = UnicodeAttribute(hash_key=True)
    api = UnicodeAttribute(range_key=True)  # "points/deduct", …, "webhook"
    state = UnicodeAttribute(default="closed")
    failures = NumberAttribute(default=0)  # calls that failed since it last closed
    open_until = NumberAttribute(null=True)
    probe = UnicodeAttribute(null=True)  # the correlation id of the probe in flight (half-open)
    probe_until = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    changed_at = NumberAttribute(null=True)


class PartnerStats(Model):
    """One minute of one channel's calls to one API: counts by outcome and a latency histogram, all raised
    with atomic ADDs (``partners.reliability``); expires after a week."""

    Meta = _meta("partner-stats")
    channel_code = UnicodeAttribute(hash_key=True)
    minute_api = UnicodeAttribute(range_key=True)  # "{minute:010d}#{api}": a time range is one Query
    api = UnicodeAttribute()
    calls = NumberAttribute(default=0)  # calls made (a call's resends are one call)
    errors = NumberAttribute(default=0)  # calls that failed (their last attempt did)
    attempts = NumberAttribute(null=True)  # requests sent, resends included; the kinds below count these
    ok = NumberAttribute(null=True)
    client_error = NumberAttribute(null=True)
    timeout = NumberAttribute(null=True)
    connect_error = NumberAttribute(null=True)
    server_error = NumberAttribute(null=True)
    bad_response = NumberAttribute(null=True)
    refused = NumberAttribute(null=True)  # calls the open breaker refused (never sent)
    # latency histogram: h00 counts calls within ``breaker.BOUNDS_MS[0]``, h01 within the next edge, …
    h00 = NumberAttribute(null=True)
    h01 = NumberAttribute(null=True)
    h02 = NumberAttribute(null=True)
    h03 = NumberAttribute(null=True)
    h04 = NumberAttribute(null=True)
    h05 = NumberAttribute(null=True)
    h06 = NumberAttribute(null=True)
    h07 = NumberAttribute(null=True)
    h08 = NumberAttribute(null=True)
    h09 = NumberAttribute(null=True)
    h10 = NumberAttribute(null=True)
    h11 = NumberAttribute(null=True)
    expires_at = TTLAttribute()


class ChannelDay(Model):
    """One shard of one channel's operating counters for one business day (``partners.metering``), every field
    raised with an atomic ADD as its event happens, so reading a range of days is a Query, never a scan.

    ``meter`` is ``{channel}#{shard}``: each increment picks one of ``metering.SHARDS`` items at random, so a
    busy channel's counters are spread over several partitions (one item takes at most 1,000 writes a second);
    a day's figures are the sums over its shards."""

    Meta = _meta("channel-days")
    meter = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)  # "YYYY-MM-DD" in the business time zone (``metering.day_of``)
    entries = NumberAttribute(null=True)  # members who entered this day (each counted once a day)
    month_members = NumberAttribute(null=True)  # members whose first entry of the month was this day
    orders = NumberAttribute(null=True)  # orders paid
    points = NumberAttribute(null=True)  # points they redeemed
    gmv = NumberAttribute(null=True)  # their amount at channel prices, fen
    cost = NumberAttribute(null=True)  # their amount at settlement prices, fen
    refunds = NumberAttribute(null=True)  # parcels refunded or cancelled after payment
    refund_points = NumberAttribute(null=True)
    refund_amount = NumberAttribute(null=True)  # at channel prices, fen
    refused_quota = NumberAttribute(null=True)  # checkouts refused, by reason (``metering.REASONS``)
    refused_balance = NumberAttribute(null=True)
    refused_stock = NumberAttribute(null=True)
    refused_period = NumberAttribute(null=True)
    refused_password = NumberAttribute(null=True)
    calls = NumberAttribute(null=True)  # signed server-to-server calls the channel made to us (metered)
    calls_refused = NumberAttribute(null=True)  # calls refused because the prepaid balance ran out


class MeterMark(Model):
    """"Already counted": a member's entry in a day or a month, an order paid. Put with ``does_not_exist`` before
    the counter is raised, so a repeated event never counts twice; expires when it can no longer repeat."""

    Meta = _meta("meter-marks")
    mark = UnicodeAttribute(hash_key=True)  # "{channel}#d#{day}#{member}", "{channel}#m#{month}#{member}", "o#{order}"
    expires_at = TTLAttribute()


class ParkedRecord(Model):
    """A stream record a consumer could not read (``partners.order_figures``), kept for ops instead of being
    retried forever (alarmed: ``StreamRecordParked``); expires after two weeks."""

    Meta = _meta("parked-records")
    record_id = UnicodeAttribute(hash_key=True)  # "{source}#{eventID}", e.g. "orders#..."
    record = UnicodeAttribute()  # the record as delivered, JSON
    error = UnicodeAttribute()
    parked_at = UnicodeAttribute(default=now_iso)
    expires_at = TTLAttribute()


class BillingPlan(Model):
    """A channel's billing plan from one business day on (``partners.billing``); the plan of a day is the one
    with the latest ``effective_from`` not after it. Amounts in fen."""

    Meta = _meta("billing-plans")
    channel_code = UnicodeAttribute(hash_key=True)
    effective_from = UnicodeAttribute(range_key=True)  # "YYYY-MM-DD"
    kind = UnicodeAttribute()  # none | per_call | per_member | prepaid | package
    call_price = NumberAttribute(default=0)
    member_price = NumberAttribute(default=0)
    order_price = NumberAttribute(default=0)
    monthly_fee = NumberAttribute(default=0)
    included_calls = NumberAttribute(default=0)
    overage_price = NumberAttribute(default=0)
    alert_below = NumberAttribute(default=0)
    set_by = UnicodeAttribute()
    set_at = UnicodeAttribute(default=now_iso)


class PrepaidAccount(Model):
    """One shard of a prepaid channel's balance in fen (``billing.PREPAID_SHARDS`` items; the balance is their
    sum): top-ups add, each metered call or order takes its price with ``balance >= take`` on the shards it takes
    from (``billing``), so none goes below zero. Per shard, ``balance = topped_up - spent``."""

    Meta = _meta("prepaid-accounts")
    channel_code = UnicodeAttribute(hash_key=True)  # shard 0: the channel code; shard i: "{code}#{i}"
    balance = NumberAttribute(default=0)
    topped_up = NumberAttribute(default=0)
    spent = NumberAttribute(default=0)
    updated_at = UnicodeAttribute(default=now_iso)


class PrepaidEntry(Model):
    """A movement of a prepaid balance that must happen once: a top-up (``topup#{id}``, ops' id), written in the
    same transaction as the balance change; ``order#{order_id}``: an order's debit from before orders carried
    their own (``Order.fee``), given back once by ``billing.give_back_legacy``."""

    Meta = _meta("prepaid-entries")
    channel_code = UnicodeAttribute(hash_key=True)
    entry_id = UnicodeAttribute(range_key=True)
    amount = NumberAttribute()
    actor = UnicodeAttribute()
    note = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)



class BookEntry(Model):
    """A parcel's event that settlement counts, written in the same transaction as the event (``settlement.books``):
    billed to its channel (the split), payable to its supplier (shipped), returned to its channel (cancelled or
    refunded), refunded after shipment (its supplier's). Read back by the statement of its days with one Query
    per month and shard, never by a scan; the lines are frozen as the parcel has them (prices, settlement
    prices, points)."""

    Meta = _meta("settlement-books")
    book = UnicodeAttribute(hash_key=True)  # "{event}#{party}#{YYYY-MM}#{shard}"
    entry = UnicodeAttribute(range_key=True)  # "{business day}#{parcel_id}": a range of days is one Query
    parcel_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    lines = ListAttribute(of=MapAttribute)  # goods_id, sku_id, qty, price, settlement_price, points
    points_per_yuan = NumberAttribute()
    billed_day = UnicodeAttribute(null=True)  # a return's: the business day its parcel was billed
    after_shipment = BooleanAttribute(default=False)  # a return's: a refund of a shipped parcel, not a cancel
    borne_by = UnicodeAttribute(null=True)  # a refund after shipment's: "supplier" or "platform"


class SettledDay(Model):
    """Which statement settles one party's business day: claimed once, by a conditional put, so a day is never
    in two statements (a channel that moves between weekly and monthly periods) nor lost."""

    Meta = _meta("settled-days")
    party_day = UnicodeAttribute(hash_key=True)  # "{party}#{day}"
    statement_id = UnicodeAttribute()


class SettlementPeriod(Model):
    """One run of settlement over a period (``settlement.runs``): ``freezing`` from the first start (the parties
    and their pages are fixed then, in S3) until every statement is written, then ``settled``. A period with no
    item is still open (or not yet started)."""

    Meta = _meta("settlement-periods")
    period_id = UnicodeAttribute(hash_key=True)  # "2026-01", "2026-W05" (``settlement.periods``)
    kind = UnicodeAttribute()
    state = UnicodeAttribute()
    parties = NumberAttribute(default=0)
    pages_key = UnicodeAttribute()
    runs = NumberAttribute(default=0)  # how many times a run froze it (a re-run changes no statement)
    frozen_at = UnicodeAttribute(default=now_iso)
    settled_at = UnicodeAttribute(null=True)
    totals = MapAttribute(null=True)


class StatementPartyIndex(GlobalSecondaryIndex):
    Meta = _index_meta("party-index")
    party = UnicodeAttribute(hash_key=True)
    period_id = UnicodeAttribute(range_key=True)


class Statement(Model):
    """A party's statement for a period, written once and never changed: its id derives from (period, party),
    its lines are the CSV export in S3 (``export_key``, with the SHA-256 and length of those exact bytes), its
    totals are here. Party: ``channel.{code}``, ``supplier.{id}`` or ``platform`` (the margin)."""

    Meta = _meta("statements")
    statement_id = UnicodeAttribute(hash_key=True)  # "{period_id}.{party}"
    period_id = UnicodeAttribute()
    party = UnicodeAttribute()
    days = ListAttribute(of=UnicodeAttribute, default=list)  # the business days it settles
    totals = MapAttribute(default=dict)
    export_key = UnicodeAttribute()
    sha256 = UnicodeAttribute()
    byte_length = NumberAttribute()
    # A channel statement's part of the platform margin (``runs.margin_key``, named by its content like the
    # export): what the platform's statement reads. None for suppliers and the platform.
    margin_key = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(default=now_iso)
    party_index = StatementPartyIndex()


class LedgerUpload(Model):
    """A signed upload link handed to a channel for its ledger of one settlement period, and what the file became
    (``settlement.ledgers``): ``issued``, then ``processed`` (with the reconciliation's id) or ``refused``."""

    Meta = _meta("ledger-uploads")
    upload_id = UnicodeAttribute(hash_key=True)
    channel_code = UnicodeAttribute()
    period_id = UnicodeAttribute()
    key = UnicodeAttribute()
    status = UnicodeAttribute(default="issued")
    result_id = UnicodeAttribute(null=True)
    refusal = MapAttribute(null=True)  # {code, message, errors: [{line, field, reason}]}
    created_at = UnicodeAttribute(default=now_iso)
    processed_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class Reconciliation(Model):
    """A channel's ledger for a period matched against our books, written once: ``result_id`` derives from
    (channel, period, SHA-256 of the ledger's bytes), so the same ledger imported again names this same result.
    Totals and counts are here; every difference is in the JSON document ``result_key`` (S3), whose SHA-256 is
    ``result_sha256``."""

    Meta = _meta("reconciliations")
    channel_period = UnicodeAttribute(hash_key=True)  # "{channel}#{period_id}"
    result_id = UnicodeAttribute(range_key=True)
    channel_code = UnicodeAttribute()
    period_id = UnicodeAttribute()
    ledger_sha256 = UnicodeAttribute()
    ledger_bytes = NumberAttribute()
    source = UnicodeAttribute()  # "upload" | "post"
    rows = NumberAttribute()
    sandbox = BooleanAttribute(default=False)
    period_open = BooleanAttribute(default=False)  # the period had not ended when it was matched
    counts = MapAttribute()
    totals = MapAttribute()
    result_key = UnicodeAttribute()
    result_sha256 = UnicodeAttribute()
    created_at = UnicodeAttribute(default=now_iso)


class AuditRun(Model):
    """One run of the invariant audit (``settlement.audit``): what it checked and every drift it found (the first
    ``audit.MAX_LISTED`` listed; all are in the run's log lines). Kept 30 days."""

    Meta = _meta("audit-runs")
    scope = UnicodeAttribute(hash_key=True)  # "invariants"
    started_at = UnicodeAttribute(range_key=True)
    finished_at = UnicodeAttribute()
    checked = MapAttribute()
    drifts = NumberAttribute()
    unsettled = NumberAttribute(default=0)
    findings = UnicodeAttribute()  # JSON list
    expires_at = TTLAttribute()


class SandboxCall(Model):
    """A kind of signed call made to a sandbox channel, accepted or refused (``partners.kit.sandbox_log``): counted,
    with when it was last seen; the integration guide's checklist is ticked from them. Kept 30 days after the last."""

    Meta = _meta("sandbox-calls")
    channel_code = UnicodeAttribute(hash_key=True)
    call = UnicodeAttribute(range_key=True)  # "{METHOD} {route}#{accepted or the refusal's code}"
    method = UnicodeAttribute()
    route = UnicodeAttribute()  # the route as declared, e.g. "/partner/{code}/grants"
    outcome = UnicodeAttribute()
    count = NumberAttribute(default=0)
    last_at = NumberAttribute()
    expires_at = TTLAttribute()


ALL_MODELS: tuple[type[Model], ...] = (
    Supplier, SupplierKey, Goods, Stock, Audit, Channel, PoolItem, Upload, Nonce, MemberLink, Member, Topic,
    Quota, Wallet, Grant, MemberRedemption, Order, PaymentGuard, RateCounter, OutboxEvent, Cart,
    Parcel, Refund, PartnerBreaker, PartnerStats, ChannelDay, MeterMark, ParkedRecord, BillingPlan, PrepaidAccount, PrepaidEntry,
    BookEntry, SettledDay, SettlementPeriod, Statement,
    LedgerUpload, Reconciliation, AuditRun, SandboxCall,
)


def get_owned(model: type[M], key: str, owner_attr: str, owner: str) -> M | None:
    """The item if it exists and belongs to ``owner``, else None: callers answer both cases alike,
    so nobody learns that another owner's item exists."""
    try:
        item = model.get(key)
    except DoesNotExist:
        return None
    return item if getattr(item, owner_attr) == owner else None


def _one_client() -> None:
    """Every table through one botocore client: PynamoDB builds one per model (38 here), and each costs
    50-100 ms of CPU the first time a process touches its table. The models' settings are all ``_meta``'s."""
    meta = _meta("")
    shared = Connection(region=meta.region, host=meta.host, connect_timeout_seconds=meta.connect_timeout_seconds,
                        read_timeout_seconds=meta.read_timeout_seconds, max_retry_attempts=meta.max_retry_attempts)
    for model in ALL_MODELS:
        table = model._get_connection()
        for meta_table in table.connection._tables.values():  # the schema each model registered on its own
            shared.add_meta_table(meta_table)
        table.connection = shared


_one_client()


def create_tables() -> None:
    """Create every table that does not exist yet (local stack and tests); PynamoDB enables TTL too."""
    client = ALL_MODELS[0]._get_connection().connection.client
    existing = {name for page in client.get_paginator("list_tables").paginate() for name in page["TableNames"]}
    for model in ALL_MODELS:
        if model.Meta.table_name not in existing:
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
