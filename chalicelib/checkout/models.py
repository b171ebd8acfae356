"""Points and checkout tables: quota shards per period, hosted wallets and grants, the remote per-member cap, carts.

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
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.core.clock import now_iso
from chalicelib.core.models import _index_meta, _meta


class QuotaChannelIndex(GlobalSecondaryIndex):
    """A channel's quota shards of every period, keys only: for the invariant audit, the one reader that lists
    them without knowing them (it then reads the items by key, consistently). Keys only, and on attributes that
    are written once, so checkout's debits (non-key attributes) write nothing to it."""

    Meta = type("Meta", (), {"index_name": "channel-index", "projection": KeysOnlyProjection()})
    channel_code = UnicodeAttribute(hash_key=True)
    period_id = UnicodeAttribute(range_key=True)


class Quota(Model):
    """One shard of a channel's redemption quota for one settlement period, in points.

    A period is 1 to 32 shard items (so one hot channel is not capped by one item's write
    ceiling): shard 0 is keyed ``period_id`` itself, shard i > 0 ``{period_id}#{i}``
    (``quotas.shard_key``); every field below is that shard's share and the period's
    figures are the sums. Each shard is its own partition key, ``shard_id`` =
    ``{channel_code}#{shard key}`` (``Quota.item``), as the flash-sale shards are: shards sharing
    one hash key would share one partition's 1,000 WCU/s, which a hot channel's checkouts pass.
    ``period_id`` holds the shard key; ``shards`` the period's shard count, so a period's
    shards are read by key (``quotas.get``), never by a query.
    ``remaining`` is what checkout may still take (condition
    ``remaining >= n``), ``reserved`` holds remote-mode orders waiting for the channel's
    deduction, ``spent`` is confirmed; ``grant_room`` caps hosted grants at the same quota.
    Per shard, ``remaining + reserved + spent == limit == grant_room + granted``.
    ``selling`` is the checkout gate: true only while the channel is active and this is its
    current period. It is written with the channel's status and period changes, so checkout
    conditions on the shards it debits and never on the (single, hot) channel item.

    The table is named ``quota-shards``: its key schema changed from (``channel_code``, ``period_id``), and
    CloudFormation cannot replace a custom-named table in place, so the new key schema is a new table.
    """

    Meta = _meta("quota-shards")
    shard_id = UnicodeAttribute(hash_key=True)  # "{channel_code}#{shard key}"
    channel_code = UnicodeAttribute()
    period_id = UnicodeAttribute()  # the shard key: "{period_id}" (shard 0) or "{period_id}#{i}"
    shards = NumberAttribute()
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
    channel_index = QuotaChannelIndex()

    @staticmethod
    def key(channel_code: str, shard_key: str) -> str:
        """The item's partition key (channel codes and period ids never contain ``#``)."""
        return f"{channel_code}#{shard_key}"

    @classmethod
    def item(cls, channel_code: str, shard_key: str, **attributes) -> "Quota":
        """A shard by its channel and shard key: the item to put (with ``attributes``) or to update."""
        return cls(cls.key(channel_code, shard_key), channel_code=channel_code, period_id=shard_key, **attributes)


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
    # Points given back by cancelled or refunded parcels, each as a lot of its own (``refunds.give_back``):
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
