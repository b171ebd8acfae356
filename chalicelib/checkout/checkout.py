"""Checkout: one atomic commit of order, quota, wallet and stock.

Everything that limits a redemption is a condition inside one
``TransactWriteItems``: the channel is active and still in this period, the
quota shard(s) debited have room, are in the period and carry the channel's
pricing version read (no sub-pool price or points rate changed since), the
wallet lots hold the points and are unexpired, each SKU has stock at the
settlement and base price read, and the order id (derived from the member's
idempotency key) is unused. Over-redemption is impossible because no write happens unless
every condition holds at once.

Remote mode reserves quota and stock in that transaction, then asks the
channel to deduct; ``settle_remote`` confirms, releases, or leaves the order
waiting for the channel's query API, never guessing.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Sequence

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.billing import billing
from chalicelib.billing.models import PrepaidAccount
from chalicelib.channels import channels, pools
from chalicelib.channels.models import Channel, PoolItem
from chalicelib.channels.pricing import points_for
from chalicelib.checkout import quotas
from chalicelib.checkout.models import MemberRedemption, Quota, Wallet
from chalicelib.checkout.points import allocate
from chalicelib.checkout.wallets import wallet_of
from chalicelib.core import cache, shards
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Busy, Conflict, DomainError, Forbidden, NotFound, Unprocessable
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import (
    AGAIN,
    Commit,
    Done,
    LabelledTransaction,
    Refused,
    batch_read,
    commit_retrying,
    retrying,
    write_retrying,
)
from chalicelib.members import members, payment_auth
from chalicelib.members.models import Member, PaymentGuard
from chalicelib.orders import fulfilment
from chalicelib.orders.models import Order
from chalicelib.orders.orders import lines_of
from chalicelib.partners import breaker, channel_api, reliability
from chalicelib.partners.models import PartnerBreaker
from chalicelib.orders.record import AWAITING, FAILED, PAID, quota_takes, shares
from chalicelib.partners.saga import Calls, Saga
from chalicelib.sales import offers
from chalicelib.sales import starts as sale_starts
from chalicelib.sales.sales import price_in_fen
from chalicelib.supply import goods as goods_mod
from chalicelib.supply.models import Goods, Stock

MAX_LINES = 20
MAX_QTY = 99
COMMIT_ATTEMPTS = 40
# How long the request that created a remote order owns its deduct: longer than its deduct, query and cancel
# calls can take. A replay finding the order untouched for longer takes the deduct over (its creator died).
DEDUCT_LEASE_SECONDS = 30
DEDUCT = "points/deduct"


@dataclass(frozen=True)
class LineRequest:
    goods_id: str
    sku_id: str
    qty: int
    sale_id: str | None = None  # bought in this flash sale, at its price, from its allotment (``sales.offers``)


@dataclass(frozen=True)
class PricedLine:
    goods_id: str
    sku_id: str
    qty: int
    price: int
    points: int
    settlement_price: int
    supplier_id: str
    title: str
    spec: str


def order_id_for(channel_code: str, member_id: str, key: str) -> str:
    """Same member + same idempotency key → same order id, so the order itself is the idempotency record."""
    return "O" + hashlib.sha256(f"{channel_code}#{member_id}#{key}".encode()).hexdigest()[:19].upper()


def _request_hash(lines: Sequence[LineRequest]) -> str:
    return hashlib.sha256(json.dumps(sorted((l.goods_id, l.sku_id, l.qty, *([l.sale_id] if l.sale_id else []))
                                            for l in lines)).encode()).hexdigest()


def _validate(channel: Channel, lines: Sequence[LineRequest]) -> None:
    if not lines:
        raise Unprocessable("validation_error", "an order needs at least one line", "lines")
    if len(lines) > 1 and not channel.cart_enabled:
        raise Unprocessable("cart_disabled", "this channel sells one item per order (buy now)", "lines")
    if len(lines) > MAX_LINES:
        raise Unprocessable("validation_error", f"at most {MAX_LINES} lines", "lines")
    if len({(l.goods_id, l.sku_id) for l in lines}) != len(lines):
        raise Unprocessable("validation_error", "each SKU once per order", "lines")
    for i, line in enumerate(lines):
        if not 1 <= line.qty <= MAX_QTY:
            raise Unprocessable("validation_error", f"qty must be 1 to {MAX_QTY}", f"lines.{i}.qty")


@dataclass(frozen=True)
class Reads:
    """What checkout reads by key, from one ``BatchGetItem`` (``_read``)."""

    order: Order | None
    member: Member | None
    wallet: Wallet | None
    items: dict[str, PoolItem]
    goods: dict[str, Goods]
    quota: quotas.Period | None  # None: read it with ``quotas.current`` (no shard count, or no period)
    guard: PaymentGuard | None  # where a one-time code confirms the payment (blank if the member has none)
    # The breakers of the channel APIs this order will call (password check, remote deduct), where stored.
    breakers: dict[str, PartnerBreaker]
    prepaid: dict[int, int]  # a prepaid channel's balance by shard, when it charges orders a price (else empty)


def _read(channel: Channel, member_id: str, order_id: str, lines: Sequence[LineRequest], fee: bool) -> Reads:
    """The order (a replay?), member, wallet, sub-pool items, goods, their lines' ``Stock`` items, the
    period's quota shards, (OTP) the payment guard and (``fee``) the prepaid balance shards in one round trip; goods from before ``Stock``
    items get theirs here (backfill on read), channels from before the shard count a Query for the shards.

    Sub-pool items are read strongly consistent and after the channel (the route's read): with the
    shards' condition on the channel's pricing version, they are the prices in force at commit."""
    ids = sorted({l.goods_id for l in lines})
    stock_keys = sorted({(l.goods_id, l.sku_id) for l in lines})
    shard_keys = quotas.shard_keys(channel) or []
    version = quotas.pricing_version(channel)
    consistent = (Order, Wallet, PoolItem, Quota, PaymentGuard, PrepaidAccount)
    others = {Order: [(order_id,)], Member: [(member_id,)],
              Wallet: [(member_id,)] if channel.points_mode == "hosted" else [],
              Quota: [(Quota.key(channel.code, k),) for k in shard_keys],
              PaymentGuard: [(member_id,)] if channel.payment_auth == "otp" else [],
              PrepaidAccount: billing.account_keys(channel.code) if fee else []}
    # The hot single items (sub-pool item by pricing version, goods, Stock, breakers) from the short-lived
    # cache (``core.cache``: why each is safe), the rest with the misses in the one BatchGetItem.
    fetched: dict = {}

    def read(missing: dict) -> dict:
        fetched.update(batch_read({**others, **missing}, consistent=consistent))
        return fetched

    hot = cache.read_through({PoolItem: [(channel.code, g) for g in ids], Goods: [(g,) for g in ids],
                              Stock: stock_keys, PartnerBreaker: [(channel.code, api) for api in _partner_apis(channel)]},
                             lambda model: version if model is PoolItem else None, read)
    found = {**(fetched or batch_read(others, consistent=consistent)), **hot}
    goods = {g.goods_id: g for g in found[Goods]}
    have = {(s.goods_id, s.sku_id) for s in found[Stock]}
    missing = {gid for gid, sku in stock_keys if (gid, sku) not in have and gid in goods
               and sku in goods_mod.skus_of(goods[gid])}
    if missing:
        goods_mod.stock_items([goods[g] for g in sorted(missing)])
    first = lambda items: items[0] if items else None  # noqa: E731
    quota = quotas.of_items(channel.code, channel.current_period, found[Quota]) if shard_keys else None
    guard = (first(found[PaymentGuard]) or payment_auth.blank_guard(member_id)) if channel.payment_auth == "otp" \
        else None
    return Reads(first(found[Order]), first(found[Member]), first(found[Wallet]),
                 {i.goods_id: i for i in found[PoolItem]}, goods, quota, guard,
                 {b.api: b for b in found[PartnerBreaker]},
                 billing.balances(channel.code, found[PrepaidAccount]) if fee else {})


def _partner_apis(channel: Channel) -> list[str]:
    """The channel APIs an order calls: its payment password check, and in remote mode its deduct."""
    return ([payment_auth.PASSWORD_API] if channel.payment_auth != "otp" else []) + (
        [DEDUCT] if channel.points_mode == "remote" else [])


def _price(channel: Channel, lines: Sequence[LineRequest], reads: Reads) -> tuple[list[PricedLine], dict[str, Goods],
                                                                                  dict[str, PoolItem]]:
    """Prices from the channel's sub-pool now, never from the client."""
    items, found = reads.items, reads.goods
    rate = int(channel.points_per_yuan)
    priced = []
    for line in lines:
        item, goods = items.get(line.goods_id), found.get(line.goods_id)
        if item is None or goods is None or goods.status != goods_mod.APPROVED:
            raise NotFound("goods_unavailable", f"goods {line.goods_id} is not on sale here")
        sku = pools.priced_skus(item, goods).get(line.sku_id)
        if sku is not None and not sku.valid:  # e.g. a price stored past the API: never sold, never minted
            raise Conflict("price_not_sellable", f"SKU {line.sku_id} of {line.goods_id} has no sellable price")
        if sku is None or not sku.sellable:
            raise NotFound("goods_unavailable", f"SKU {line.sku_id} of {line.goods_id} is not on sale here")
        spec = goods_mod.skus_of(goods)[line.sku_id]["spec"]
        priced.append(PricedLine(line.goods_id, line.sku_id, line.qty, sku.price, points_for(sku.price, rate),
                                 sku.settlement, goods.supplier_id, goods.title, spec))
    return priced, found, items


def _order(order_id: str, channel: Channel, member: Member, period_id: str, lines: list[PricedLine],
           request_hash: str) -> Order:
    remote = channel.points_mode == "remote"
    points = sum(l.points * l.qty for l in lines)
    return Order(
        order_id, channel_code=channel.code, member_id=member.member_id, period_id=period_id,
        request_hash=request_hash, status=AWAITING if remote else PAID, points_mode=channel.points_mode,
        lines=[{"goods_id": l.goods_id, "sku_id": l.sku_id, "qty": l.qty, "price": l.price, "points": l.points,
                "settlement_price": l.settlement_price, "supplier_id": l.supplier_id, "title": l.title,
                "spec": l.spec} for l in lines],
        points=points, amount=sum(l.price * l.qty for l in lines),
        pending_channel=channel.code if remote else None, sandbox=bool(channel.sandbox),
        holds_stock=not channel.sandbox,  # a sandbox order never takes live stock (``_stock_updates``)
        unsplit=None if remote else channel.code,  # paid at this commit: on the unsplit index until split
        cap_counted=points if remote else None,  # what ``_count_redemption`` adds in the same transaction
        points_per_yuan=int(channel.points_per_yuan),  # the rate ``_price`` used (pricing version guards it)
    )


def _stock_updates(tx: LabelledTransaction, lines: list[PricedLine], found: dict[str, Goods], sign: int,
                   guard_prices: bool, sandbox: bool = False) -> None:
    """One update of each line's small ``Stock`` item (2 WCU), never of the goods item itself.

    Taking stock also guards, on that item, that the goods is still approved and every price the
    line's price derives from (settlement and base sale price) is still the one read.

    A sandbox order (``sandbox``) only checks those conditions and takes nothing: live stock is for live
    members, and anyone with a sandbox channel's code may sign its members in (``Order.holds_stock``)."""
    for line in sorted(lines, key=lambda l: (l.goods_id, l.sku_id)):
        check = Stock.stock >= line.qty if sign < 0 else Stock.sku_id.exists()
        if guard_prices:
            base = int(goods_mod.skus_of(found[line.goods_id])[line.sku_id]["base_price"])
            check = check & (Stock.settlement_price == line.settlement_price) & (Stock.base_price == base) & (
                Stock.selling == True)  # noqa: E712
        if sandbox:
            tx.check(f"stock:{line.goods_id}", Stock, line.goods_id, line.sku_id, condition=check)
        else:
            tx.update(f"stock:{line.goods_id}", Stock(line.goods_id, line.sku_id),
                      [Stock.stock.add(sign * line.qty)], condition=check)


def _not_selling(channel: Channel) -> DomainError:
    """The period's shards stopped selling: the channel was suspended, or a new period replaced this one."""
    if channels.get(channel.code).status != channels.ACTIVE:
        return Forbidden("channel_suspended", f"channel {channel.code} is suspended")
    return Conflict("period_ended", "the quota period changed; try again")


def _goods_refusal(goods_ids: list[str], lines: list[PricedLine], items: dict[str, PoolItem]) -> DomainError:
    """A refused goods item, read again to say why: it left approval, a price the order uses moved, or stock."""
    found = {g.goods_id: g for g in Goods.batch_get(goods_ids, consistent_read=True)}
    for goods_id in goods_ids:  # what was refused is read again by the next checkout, not taken from the cache
        cache.forget((Goods.__name__, None, goods_id))
    for line in (l for l in lines if l.goods_id in goods_ids):
        goods = found.get(line.goods_id)
        if goods is None or goods.status != goods_mod.APPROVED:
            return NotFound("goods_unavailable", f"goods {line.goods_id} is no longer on sale")
        sku = pools.priced_skus(items[line.goods_id], goods).get(line.sku_id)
        if sku is None or (sku.price, sku.settlement) != (line.price, line.settlement_price):
            return Conflict("price_changed", "the price changed; review the order and try again")
    return Conflict("out_of_stock", "not enough stock for this order")


def _refusal(refused: Refused, channel: Channel, quota: quotas.Period, now: float, lines: list[PricedLine],
             items: dict[str, PoolItem]) -> DomainError:
    labels = refused.labels
    if any(l.startswith("quota:") for l in labels):
        if now >= int(quota.ends_at) or now < int(quota.starts_at):
            return Conflict("period_ended", "the channel's quota period is not open")
        return Conflict("quota_exhausted", "the channel's redemption quota is used up")
    if "wallet" in labels:
        return Conflict("insufficient_points", "not enough unexpired points")
    if "member_cap" in labels:
        cap = int(channel.member_points_cap)
        return Conflict("member_cap_exceeded", f"a member may redeem at most {cap} points per quota period")
    if "otp" in labels:
        return Conflict("otp_used", "this code was already used; request a new one")
    goods_ids = sorted({l.split(":")[1] for l in labels if l.startswith("stock:")})  # stock:{goods}[:{sku}]
    if goods_ids:
        return _goods_refusal(goods_ids, lines, items)
    return Conflict("price_changed", "the price changed; review the order and try again")


def place(channel: Channel, member_id: str, key: str, lines: Sequence[LineRequest], password: str | None = None,
          otp: str | None = None, now: float | None = None, address: dict | None = None) -> tuple[Order, bool]:
    """Place (or replay) an order in an active channel the caller has just read (the route's own check).

    ``address`` (validated ``schemas.Address``) is stored with the order. Returns the order and whether this
    call created it. On a prepaid plan with an order price, the price is taken in the order's own transaction:
    once per order id, never for an order that does not exist; a replay takes nothing (402
    ``prepaid_exhausted`` before anything else when the balance cannot pay)."""
    if not 8 <= len(key) <= 64:
        raise Unprocessable("validation_error", "Idempotency-Key must be 8 to 64 characters", "Idempotency-Key")
    order_id = order_id_for(channel.code, member_id, key)
    request_hash = _request_hash(lines)
    sold_out = offers.sold_out_here(channel.code, lines)
    if sold_out:  # one read (a replay still answers its order), nothing else
        replay = _existing(order_id, request_hash)
        if replay is not None:
            return _finish(replay, channel, replay=True), False
        raise offers.refused("sale_sold_out", channel.code, sold_out)
    fee = billing.order_plan(channel)
    reads = _read(channel, member_id, order_id, lines, fee is not None)
    if reads.order is not None:
        return _finish(_matching(reads.order, request_hash), channel, replay=True), False
    _validate(channel, lines)
    member = reads.member
    if member is None or member.channel_code != channel.code:
        raise NotFound("member_not_found", "no such member")
    if fee is not None and sum(reads.prepaid.values()) < fee.order_price:
        raise billing.exhausted(channel.code)
    breakers = {api: reliability.state_of(reads.breakers.get(api)) for api in _partner_apis(channel)}
    for api, state in breakers.items():  # one the order needs keeps failing: refuse before anything is written
        channel_api.refuse_if_open(channel, api, state)
    # A flash-sale line's refusals (not started, ended, limit reached, sold out) before the payment check: the
    # crowd that missed a sale costs no channel call and no write.
    offer = offers.offer(channel.code, member.member_id, lines, time.time() if now is None else now)
    with Calls(channel.code) as calls:  # the password check's figures: on the order, if one is written
        proof = payment_auth.confirm(channel, member, password, otp, now, reads.guard,
                                     breakers.get(payment_auth.PASSWORD_API), calls.figures)
        try:
            return _commit(channel, member, order_id, request_hash, lines, reads, proof, now, address, fee, calls,
                           offer)
        finally:
            proof.settle()  # refused, or a replay: a right answer gives its attempt slot back (else the commit did)


def _commit(channel: Channel, member: Member, order_id: str, request_hash: str, lines: Sequence[LineRequest],
            reads: Reads, proof: payment_auth.Proof, now: float | None, address: dict | None,
            fee: billing.Plan | None, calls: Calls, offer: offers.Offer | None) -> tuple[Order, bool]:
    """Price and commit the order, reading again after each lost race (the first attempt uses ``reads`` and
    ``offer``, the flash-sale part read before the payment check)."""
    current = {"channel": channel, "offer": offer}  # read again (strongly) when ops re-priced it meanwhile

    def read(attempt: int) -> Reads:
        if not attempt:
            return reads
        again = _read(current["channel"], member.member_id, order_id, lines, fee is not None)
        current["offer"] = offers.offer(channel.code, member.member_id, lines, time.time() if now is None else now)
        return again

    def build(reads: Reads) -> Commit | Done | object:
        channel = current["channel"]
        offer = current["offer"]
        now_ = time.time() if now is None else now
        quota = reads.quota or quotas.current(channel)
        version = quotas.pricing_version(channel)
        if quota.selling and quota.pricing_versions != {version}:
            # Ops re-priced after the channel was read, or between the reads: read the channel (strongly) and
            # then everything again, so the sub-pool prices read are those of the version the shards carry.
            current["channel"] = _reread(channel)
            return AGAIN
        if not quota.selling:
            raise _not_selling(channel)
        if not int(quota.starts_at) <= now_ < int(quota.ends_at):
            raise Conflict("period_ended", "the channel's quota period is not open")
        priced, found, items = _price(channel, lines, reads)
        # A flash-sale line: its sale's price, and its allotment instead of stock (refusals: ``offers.offer``).
        if offer is not None:
            sale_price = price_in_fen(offer.price_points, int(channel.points_per_yuan))
            priced = [replace(l, points=offer.price_points, price=sale_price) if offer.covers(l) else l
                      for l in priced]
        wallet = (reads.wallet or wallet_of(member)) if channel.points_mode == "hosted" else None
        # Read the clock again after every read, just before the write, and stamp the order with it: the
        # conditions below (period, lot expiry) must not be judged on a time that went stale while reading.
        now_ = time.time() if now is None else now
        if not int(quota.starts_at) <= now_ < int(quota.ends_at):
            raise Conflict("period_ended", "the channel's quota period is not open")
        order = _order(order_id, channel, member, quota.period_id, priced, request_hash)
        order.created_at = order.updated_at = now_iso(now_)
        order.address = address
        if calls.figures:
            order.partner_calls = json.dumps(calls.figures, separators=(",", ":"))
        points = int(order.points)
        takes = shards.take(quota.by_shard("remaining"), points)
        if takes is None:
            replay = _existing(order_id, request_hash)  # a concurrent send of this order may be what took it
            if replay is not None:
                return Done((_finish(replay, channel, replay=True), False))
            count("CheckoutRefused")
            raise Conflict("quota_exhausted", "the channel's redemption quota is used up")
        order.quota_takes = {str(shard): used for shard, used in takes.items()}
        fee_takes = billing.take(reads.prepaid, fee.order_price) if fee is not None else None
        if fee is not None:
            if fee_takes is None:
                raise billing.exhausted(channel.code)
            order.fee, order.fee_takes = fee.order_price, {str(shard): n for shard, n in fee_takes.items()}
        tx = LabelledTransaction(_request_token(order_id))
        if offer is not None:  # the shard take and the member's count; the order's line records them
            offer.add(tx, order.lines, now_)
        tx.put("order", order, condition=Order.order_id.does_not_exist())
        for shard, used in takes.items():  # the period and pricing conditions ride on every shard debited
            held = Quota.reserved.add(used) if channel.points_mode == "remote" else Quota.spent.add(used)
            tx.update(f"quota:{shard}", quota.shards[shard], [Quota.remaining.add(-used), held],
                      condition=(Quota.remaining >= used) & (Quota.starts_at <= int(now_))
                      & (Quota.ends_at > int(now_)) & (Quota.selling == True)  # noqa: E712
                      & quotas.priced_at(version))
        if wallet is not None:
            _debit_wallet(tx, wallet, points, now_)
        else:
            _count_redemption(tx, channel, member, quota.period_id, points)
        _stock_updates(tx, [l for l in priced if offer is None or not offer.covers(l)], found, -1, guard_prices=True,
                       sandbox=not order.holds_stock)
        if fee_takes:
            billing.debit(tx, channel.code, fee_takes)
        proof.bind(tx)

        def refused(refused: Refused) -> Done | object:
            if "order" in refused.labels:
                replay = _existing(order_id, request_hash, wait=True)
                if replay is not None:
                    return Done((_finish(replay, channel, replay=True), False))
            rest = [l for l in refused.labels if not l.startswith(("quota:", "prepaid:", "sale:"))]
            if len(rest) < len(refused.labels) or rest == ["wallet"]:
                # Another order took the chosen quota, balance or sale shard or spent from the same lots, or ops
                # re-priced (the shard's pricing version moved): read again. The reads decide a real refusal
                # (quota total short, period over, points short, balance short); a new pricing version is seen
                # there and re-read.
                return AGAIN
            count("CheckoutRefused")
            raise _refusal(refused, channel, quota, now_, priced, items) from None

        def placed() -> tuple[Order, bool]:
            calls.attached()
            proof.committed()
            count("OrdersPlaced")
            if fee is not None:
                billing.alert(channel.code, fee, sum(reads.prepaid.values()) - fee.order_price, fee.order_price)
            return _finish(order, channel, member,
                           deduct_breaker=reliability.state_of(reads.breakers.get(DEDUCT))), True

        return Commit(tx, placed, refused)

    return retrying(read, build, COMMIT_ATTEMPTS, exhausted=_too_many_orders)


def _too_many_orders() -> tuple[Order, bool]:
    raise Busy("busy", "too many orders at once; retry with the same Idempotency-Key")


def _reread(channel: Channel) -> Channel:
    try:
        return Channel.get(channel.code, consistent_read=True)
    except DoesNotExist:
        raise NotFound("channel_not_found", f"no channel {channel.code}") from None


def _request_token(order_id: str) -> str:
    """The ``ClientRequestToken`` of one built transaction (at most 36 characters).

    When a commit's response is lost (a timeout after DynamoDB committed), botocore resends the same
    request; with this token DynamoDB answers the resend as the success it was, instead of refusing it on
    the order's own ``does_not_exist`` condition, which read as "a duplicate" and skipped the deduct. A
    rebuilt attempt, or a later request for the same order, carries different items and so gets its own
    token (never ``IdempotentParameterMismatch``): the order id names it, a random part keeps it to this one
    request body."""
    return f"{order_id}-{secrets.token_hex(6)}"


def _finish(order: Order, channel: Channel, member: Member | None = None, replay: bool = False,
            deduct_breaker: breaker.State | None = None) -> Order:
    """Everything a committed order still needs from a request, on the first call and on a replay.

    A replay may be the member's retry after a first call that committed and then died: a remote order
    still awaiting the channel's deduction, untouched for ``DEDUCT_LEASE_SECONDS``, gets its deduct now
    (idempotent by order id at the channel; refused there once we cancelled it). A replay while the first
    call is still at work answers the order as it is. This is also where a paid order's fulfilment
    starts (``fulfilment.start``), so that a replay starts whatever the first call did not."""
    if order.status == AWAITING and (not replay or _take_over(order)):
        order = settle_remote(order, channel, member or members.get(order.member_id, channel.code), deduct_breaker)
    # hosted: at commit; remote: once the channel confirmed (idempotent by order id). A flash sale's orders
    # start from the buffer instead, at a rate the account's quota holds (``sales.starts``).
    if order.status == PAID and not sale_starts.buffered(order):
        fulfilment.start(order, channel)
    return order


def _take_over(order: Order) -> bool:
    """Claim an awaiting order's deduct from a creator presumed dead (one claimant wins: conditional write)."""
    if order.updated_at > now_iso(time.time() - DEDUCT_LEASE_SECONDS):
        return False
    try:
        order.update([Order.updated_at.set(now_iso())],
                      condition=(Order.status == AWAITING) & (Order.updated_at == order.updated_at))
    except UpdateError:
        return False
    return True


def _count_redemption(tx: LabelledTransaction, channel: Channel, member: Member, period_id: str, points: int) -> None:
    """Remote mode's per-member cap: points the member redeemed in this period (orders not released), one
    counter item per member and period, raised in the order's transaction only while it stays within the cap."""
    cap = int(channel.member_points_cap)
    if points > cap:
        raise Conflict("member_cap_exceeded", f"a member may redeem at most {cap} points per quota period")
    tx.update("member_cap", MemberRedemption(member.member_id, period_id), [MemberRedemption.redeemed.add(points)],
              condition=MemberRedemption.redeemed.does_not_exist() | (MemberRedemption.redeemed <= cap - points))


def _debit_wallet(tx: LabelledTransaction, wallet: Wallet, points: int, now: float) -> None:
    take = allocate(wallet.lots.as_dict(), points, now)
    actions = [Wallet.balance.add(-points), Wallet.spent.add(points)]
    condition = None
    for grant_id, used in take.items():
        lot = Wallet.lots[grant_id]
        actions.append(lot["left"].add(-used))
        check = (lot["left"] >= used) & (lot["expires_at"] > int(now))
        condition = check if condition is None else condition & check
    tx.update("wallet", wallet, actions, condition=condition)


def _existing(order_id: str, request_hash: str, wait: bool = False) -> Order | None:
    for _ in range(20 if wait else 1):
        try:
            order = Order.get(order_id, consistent_read=True)
        except DoesNotExist:
            if wait:
                time.sleep(0.02)
            continue
        return _matching(order, request_hash)
    return None


def _matching(order: Order, request_hash: str) -> Order:
    """The order an Idempotency-Key made, if this request is that order's."""
    if order.request_hash != request_hash:
        raise Conflict("idempotency_key_reused", "this Idempotency-Key was used for a different order",
                       "Idempotency-Key")
    return order


# --- remote mode: the channel keeps the wallet ---------------------------------
# The deduct is one remote saga (``partners.saga``, ``DEDUCTION`` below): deducted → paid (``_confirm``),
# refused or not deducted → cancelled at the channel and released (``_cancel``), no answer → the order waits.

def settle_remote(order: Order, channel: Channel, member: Member, breaker_state: breaker.State | None = None
                  ) -> Order:
    """Ask the channel to deduct (idempotent by our order id); resolve any doubt with its query.
    ``breaker_state``: the deduct API's breaker as the checkout read it before its commit, to spare a read.
    The calls' figures ride on the order's next write (``Calls``)."""
    payload = {"order_id": order.order_id, "member_id": member.external_id, "points": int(order.points)}
    return DEDUCTION.ask(order, channel, payload, breaker_state)


def _carried(calls: Calls) -> list:
    """The order update that carries the calls' figures (none: leave the order's earlier ones as they are)."""
    return [Order.partner_calls.set(json.dumps(calls.figures, separators=(",", ":")))] if calls.figures else []


def _refused(order: Order, channel: Channel, answer: dict, calls: Calls) -> Order:
    return _cancel(order, channel, f"channel refused: {answer.get('result')}", calls)


def _not_deducted(order: Order, channel: Channel, calls: Calls) -> Order:
    return _cancel(order, channel, "channel has no deduction for this order", calls)


def _cancel(order: Order, channel: Channel, reason: str, calls: Calls) -> Order:
    """Release an order only once the channel acknowledged its cancel (contract: it then refuses any later
    deduct for the order and refunds one already applied). Without it, a deduct still in flight — a resend,
    a member's replay — could take points for an order we had released. No acknowledgement: keep waiting."""
    try:
        answer = channel_api.call(channel, "points/cancel", {"order_id": order.order_id}, deferred=calls.figures)
    except channel_api.PartnerError:
        return DEDUCTION.keep_waiting(order, calls)
    if answer["_status"] >= 300 or answer.get("result") != "cancelled":
        logger.warning("cancel not acknowledged", extra={"order_id": order.order_id, "status": answer["_status"]})
        return DEDUCTION.keep_waiting(order, calls)
    return _release(order, reason, calls)


def _unanswered(order: Order, calls: Calls) -> None:
    write_retrying(lambda: order.update([Order.resolve_attempts.add(1), Order.updated_at.set(now_iso()),
                                         *_carried(calls)]))
    count("RemoteUnresolved")


def _move_quota(tx: LabelledTransaction, order: Order, to: str) -> None:
    """Reserved points back to ``remaining`` or on to ``spent``, on exactly the shards the order debited."""
    for shard, used in quota_takes(order).items():
        target = Quota.spent if to == "spent" else Quota.remaining
        tx.update(f"quota:{shard}", Quota.item(order.channel_code, quotas.shard_key(order.period_id, shard)),
                  [Quota.reserved.add(-used), target.add(used)])


def _confirm(order: Order, channel: Channel, calls: Calls) -> Order:
    at = now_iso()

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("order", order, [Order.status.set(PAID), Order.pending_channel.remove(),
                                   Order.unsplit.set(order.channel_code), Order.updated_at.set(at),
                                   *_carried(calls)],
                  condition=Order.status == AWAITING)
        _move_quota(tx, order, "spent")
        return tx

    return _settle(order, build, calls, {"status": PAID, "pending_channel": None, "unsplit": order.channel_code,
                                         "updated_at": at})


def _release(order: Order, reason: str, calls: Calls) -> Order:
    """Give back quota and stock; points were never taken by the channel."""
    lines = [PricedLine(l["goods_id"], l["sku_id"], int(l["qty"]), 0, 0, 0, "", "", "") for l in lines_of(order)]
    goods_mod.stock_items(Goods.batch_get(sorted({l.goods_id for l in lines})))  # orders from before Stock items
    at = now_iso()

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        tx.update("order", order, [Order.status.set(FAILED), Order.failure.set(reason),
                                   Order.pending_channel.remove(), Order.updated_at.set(at),
                                   *_carried(calls)],
                  condition=Order.status == AWAITING)
        _move_quota(tx, order, "remaining")
        if order.cap_counted:  # the member's cap room comes back: exactly what this order took of it
            tx.update("member_cap", MemberRedemption(order.member_id, order.period_id),
                      [MemberRedemption.redeemed.add(-int(order.cap_counted))])
        if order.holds_stock is not False:  # only what the order took comes back (a sale's: to its allotment)
            back = offers.give_back(tx, order, lines_of(order), time.time())
            _stock_updates(tx, [l for l in lines if any((b["goods_id"], b["sku_id"]) == (l.goods_id, l.sku_id)
                                                        for b in back)], {}, +1, guard_prices=False)
        if order.fee_takes:  # a prepaid channel's order price comes back with the release: once, as it is
            billing.credit(tx, order.channel_code, shares(order.fee_takes))
        return tx

    fee_carried = order.fee is not None
    order = _settle(order, build, calls, {"status": FAILED, "failure": reason, "pending_channel": None,
                                          "updated_at": at})
    if order.status == FAILED and not fee_carried:
        billing.give_back_legacy(order.channel_code, order.order_id)  # an order charged before it carried its fee
    return order


def _settle(order: Order, build, calls: Calls, changes: dict) -> Order:
    """Move an awaiting order on, once, and answer it as it now is: with ``changes`` (what the committed write
    set) when this call moved it, else read again — it already left "awaiting": someone else settled it (and
    this request's call figures are booked apart)."""
    try:
        commit_retrying(build, COMMIT_ATTEMPTS)
    except Refused:
        order.refresh(consistent_read=True)
        return order
    calls.attached()
    for name, value in changes.items():
        setattr(order, name, value)
    return order


def pending(channel_code: str, older_than: float = 0) -> list[Order]:
    """Orders of one channel awaiting its deduction, placed at least ``older_than`` seconds ago."""
    return list(Order.pending_index.query(channel_code, Order.created_at <= now_iso(time.time() - older_than)))


def _resolve_and_start(order: Order, channel: Channel) -> Order:
    """A pending order asked about again; confirmed by this sweep, its fulfilment starts here."""
    order = DEDUCTION.resolve(order, channel)
    if order.status == PAID:
        fulfilment.start(order, channel)
    return order


def resolve_pending(channel: Channel, older_than: float = 0) -> dict[str, int]:
    """Every order of one channel still awaiting the channel's deduction (placed ``older_than`` seconds ago
    or earlier) is asked about again."""
    return DEDUCTION.resolve_pending(channel, older_than)


def sweep_remote() -> dict[str, dict]:
    """The scheduler's sweep over every channel, suspended ones included (their members' orders still hold
    quota and wait for an answer), and hosted ones too: an order keeps the points mode it recorded, so one
    placed before ops switched its channel to hosted still waits for the channel's answer (the sparse pending
    index makes a channel with none one empty Query). Each channel on its own: one that fails is logged and
    counted (``RemoteSweepFailed``) and answers ``{"error": ...}``; the others go on.

    Only orders older than ``DEDUCT_LEASE_SECONDS`` are swept: a younger one's deduct may still be on its
    way to the channel from the request that placed it, and a sweep that queried it now would find nothing
    and cancel an order the member is about to pay for."""
    return DEDUCTION.sweep(DEDUCT_LEASE_SECONDS)


DEDUCTION: Saga[Order] = Saga(
    what="deduct", ask_api=DEDUCT, query_api="points/query", query_payload=lambda o: {"order_id": o.order_id},
    ids=lambda o: {"order_id": o.order_id}, done="deducted",
    refusals=frozenset({"insufficient", "rejected", "frozen", "cancelled"}), confirmed=_confirm, refused=_refused,
    absent_statuses=frozenset({"not_found", "failed"}), absent=_not_deducted, ask_again=None,
    waiting=_unanswered, carried=True, pending=pending,
    state=lambda o: o.status, states=(PAID, FAILED, AWAITING), sweep_step=_resolve_and_start,
    sweep_failed=lambda: count("RemoteSweepFailed"))
