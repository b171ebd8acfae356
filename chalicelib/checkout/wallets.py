"""Hosted points: grants from the channel's server into members' wallets, and expiry.

A grant is one transaction: the grant record (the channel's grant id, once),
the wallet credit (guarded by the per-member cap) and the grant room of the
quota shard(s) it takes from (each guarded, so total grants never exceed the
quota; another grant taking a chosen shard first means read again, not refuse).

The per-member cap in hosted mode bounds the *live* points a member holds:
unexpired points still in lots. A grant folds the wallet's dead lots (expired:
their points move to ``expired``; spent: already counted in ``spent``) out of
the item in the same conditional write that credits it, so the stored balance
it is judged on counts live points only, and the item keeps only live lots
instead of growing by one lot per grant forever (DynamoDB's 400 KB item limit).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.channels.models import Channel
from chalicelib.checkout import quotas
from chalicelib.checkout.models import Grant, Quota, Wallet
from chalicelib.checkout.points import dead_lots, expiring_soon, spendable, totals
from chalicelib.core import shards
from chalicelib.core.errors import Busy, Conflict, Unprocessable
from chalicelib.core.tx import LabelledTransaction, Refused
from chalicelib.members.models import Member
from chalicelib.core.tx import AGAIN, Commit, Done, retrying
from chalicelib.members import members

GRANT_ATTEMPTS = 40


@dataclass(frozen=True)
class GrantResult:
    grant: Grant
    created: bool


def wallet_of(member: Member) -> Wallet:
    """The member's wallet, created empty on first use so lot paths can be updated in place."""
    try:
        return Wallet.get(member.member_id, consistent_read=True)
    except DoesNotExist:
        wallet = Wallet(member.member_id, channel_code=member.channel_code, balance=0, granted=0, spent=0,
                        expired=0, lots={})
        try:
            wallet.save(condition=Wallet.member_id.does_not_exist())
        except PutError:
            pass  # created by a concurrent call
        return Wallet.get(member.member_id, consistent_read=True)


def grant(channel: Channel, external_id: str, grant_id: str, points: int, expires_at: int,
          now: float | None = None) -> GrantResult:
    now = time.time() if now is None else now
    if channel.points_mode != "hosted":
        raise Conflict("not_hosted_mode", f"channel {channel.code} keeps its own wallet (remote mode)")
    key = f"{channel.code}#{grant_id}"
    try:
        existing = Grant.get(key, consistent_read=True)
    except DoesNotExist:
        existing = None
    if existing is not None:
        return _replayed(existing, external_id, points, expires_at)
    quota = quotas.current(channel)
    if expires_at > int(quota.ends_at):
        raise Unprocessable("expiry_after_period_end",
                            f"points must expire by the quota period's end {int(quota.ends_at)}", "expires_at")
    if expires_at <= now:
        raise Unprocessable("validation_error", "expires_at must be in the future", "expires_at")
    cap = int(channel.member_points_cap)
    if points > cap:
        raise Conflict("member_cap_exceeded", f"a member may hold at most {cap} points")
    member = members.enter(channel.code, external_id)
    wallet = wallet_of(member)
    record = Grant(key, member_id=member.member_id, external_id=external_id, points=points, expires_at=expires_at,
                   period_id=quota.period_id)
    over_cap = Conflict("member_cap_exceeded", f"this grant would take the member over {cap} live points")

    def read(attempt: int) -> tuple[quotas.Period, Wallet]:
        if not attempt:
            return quota, wallet
        # A chosen shard was taken, or the lots moved, meanwhile: read both again.
        return quotas.get(channel.code, quota.period_id, len(quota.shards)), Wallet.get(member.member_id, consistent_read=True)

    def build(read: tuple[quotas.Period, Wallet]) -> Commit[GrantResult] | Done[GrantResult]:
        quota, wallet = read
        now = time.time()
        lots = wallet.lots.as_dict()
        takes = shards.take(quota.by_shard("grant_room"), points)
        if takes is None:
            try:  # a concurrent send of this grant may be what took the room: answer it as a replay
                return Done(_replayed(Grant.get(key, consistent_read=True), external_id, points, expires_at))
            except DoesNotExist:
                pass
            if spendable(lots, now) > cap - points:  # both limits bind: the member's cap is named, as before
                raise over_cap
            raise Conflict("grant_quota_exhausted", "grants would exceed the channel's quota for this quota period")
        if spendable(lots, now) > cap - points:
            raise over_cap
        tx = LabelledTransaction()
        tx.put("grant", record, condition=Grant.grant_key.does_not_exist())
        actions, fold_condition, expired = _fold(lots, now)
        # Judged on the stored balance less the expired points folded out in this very write: live points.
        condition = Wallet.balance <= cap - points + expired
        if fold_condition is not None:
            condition = condition & fold_condition
        tx.update("wallet", wallet, actions + [
            Wallet.balance.add(points), Wallet.granted.add(points),
            Wallet.lots[grant_id].set({"left": points, "expires_at": expires_at})], condition=condition)
        for shard, used in takes.items():
            tx.update(f"quota:{shard}", quota.shards[shard], [Quota.grant_room.add(-used), Quota.granted.add(used)],
                      condition=(Quota.grant_room >= used) & (Quota.ends_at > int(now)))

        def refused(refused: Refused) -> Done[GrantResult] | object:
            if "grant" in refused.labels:
                return Done(_replayed(Grant.get(key, consistent_read=True), external_id, points, expires_at))
            if "wallet" in refused.labels and not _lots_moved(member.member_id, lots):
                raise over_cap from None
            return AGAIN

        return Commit(tx, lambda: GrantResult(record, True), refused)

    return retrying(read, build, GRANT_ATTEMPTS, exhausted=_too_many_grants)


def _too_many_grants() -> GrantResult:
    raise Busy("busy", "too many concurrent grants; retry with the same grant id")


def _replayed(existing: Grant, external_id: str, points: int, expires_at: int) -> GrantResult:
    if (existing.external_id, int(existing.points), int(existing.expires_at)) != (external_id, points, expires_at):
        raise Conflict("grant_id_reused", "this grant id was already used for a different grant", "grant_id")
    return GrantResult(existing, False)


def _fold(lots: dict, now: float) -> tuple[list, object, int]:
    """Update actions and condition that take the dead lots out of a wallet: expired points leave the balance
    for ``expired``, spent lots (already in ``spent``) just go. Each lot is guarded on the ``left`` it was read
    with, so a lot a concurrent write changed or folded first refuses the write (read again). Also returns the
    points expired by it."""
    dead = dead_lots(lots, now)
    expired = sum(dead.values())
    actions = [Wallet.balance.add(-expired), Wallet.expired.add(expired)] if expired else []
    condition = None
    for grant_id, left in dead.items():
        actions.append(Wallet.lots[grant_id].remove())
        check = Wallet.lots[grant_id]["left"] == left
        condition = check if condition is None else condition & check
    return actions, condition, expired


def _lots_moved(member_id: str, lots: dict) -> bool:
    """After a refused grant: did the lots change since they were read (a race: retry), or is the cap real?"""
    return Wallet.get(member_id, consistent_read=True).lots.as_dict() != lots


def sweep(member_id: str, now: float | None = None) -> int:
    """Fold expired and spent lots out of the wallet; returns the points expired now."""
    now = time.time() if now is None else now
    try:
        wallet = Wallet.get(member_id, consistent_read=True)
    except DoesNotExist:
        return 0
    actions, condition, expired = _fold(wallet.lots.as_dict(), now)
    if condition is None:
        return 0
    try:
        wallet.update(actions, condition=condition)
    except UpdateError:
        return 0  # spent or swept concurrently; the next sweep sees the new state
    return expired


def view(member: Member, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    sweep(member.member_id, now)
    wallet = wallet_of(member)
    lots = wallet.lots.as_dict()
    sums = totals(int(wallet.granted or 0), int(wallet.spent or 0), int(wallet.refunded or 0),
                  int(wallet.expired or 0), lots, now)
    return {"balance": sums["available"], "granted": sums["received"], "spent": sums["spent"],
            "returned": sums["returned"], "expired": sums["expired"], "expiring_soon": expiring_soon(lots, now)}


def grant_view(g: Grant, created: bool) -> dict:
    return {"grant_id": g.grant_key.split("#", 1)[1], "member_id": g.external_id, "points": int(g.points),
            "expires_at": int(g.expires_at), "period_id": g.period_id, "created": created}


MOVEMENTS_MAX = 50


def channel_view(channel: Channel, external_id: str, now: float | None = None) -> dict:
    """What a hosted channel may show its member of "your points in the mall" (signed ``GET
    /partner/{code}/members/{id}/points``): the spendable balance and the totals behind it, the live lots
    with their expiry (soonest first, the order checkout spends them in), and the latest movements (grants,
    redemptions, points given back by cancels and refunds), newest first. A remote channel keeps its members'
    points itself: 409 ``points_not_hosted``."""
    from chalicelib.core.errors import NotFound
    from chalicelib.members.models import MemberLink
    from chalicelib.orders import parcel_states, parcels
    from chalicelib.orders.models import Order

    if channel.points_mode != "hosted":
        raise Conflict("points_not_hosted", f"channel {channel.code} keeps its members' points itself")
    try:
        member_id = MemberLink.get(members.link_key(channel.code, external_id)).member_id
    except DoesNotExist:
        raise NotFound("member_not_found", f"no member {external_id} in channel {channel.code}") from None
    now = time.time() if now is None else now
    sweep(member_id, now)
    try:
        wallet = Wallet.get(member_id, consistent_read=True)
    except DoesNotExist:
        wallet = Wallet(member_id, channel_code=channel.code)
    lots = wallet.lots.as_dict()
    live = sorted(({"lot_id": lot_id, "points": int(l["left"]), "expires_at": int(l["expires_at"])}
                   for lot_id, l in lots.items() if int(l["left"]) > 0 and int(l["expires_at"]) > now),
                  key=lambda l: (l["expires_at"], l["lot_id"]))
    moves = [{"kind": "grant", "points": int(g.points), "at": g.created_at, "grant_id": g.grant_key.split("#", 1)[1],
              "expires_at": int(g.expires_at)}
             for g in Grant.member_index.query(member_id, scan_index_forward=False, limit=MOVEMENTS_MAX)]
    orders = [o for o in Order.member_index.query(member_id, scan_index_forward=False, limit=MOVEMENTS_MAX)
              if o.channel_code == channel.code and o.points_mode == "hosted" and o.status != "failed"]
    moves += [{"kind": "redeem", "points": -int(o.points), "at": o.created_at, "order_id": o.order_id}
              for o in orders]
    for order_parcels in parcels.of_orders(orders).values():
        for parcel in order_parcels:
            if parcel.state in (parcel_states.CANCELLED, parcel_states.REFUNDED):  # its points came back as a lot
                moves.append({"kind": "refund" if parcel.state == parcel_states.REFUNDED else "cancel",
                              "points": int(parcel.points), "at": parcel.updated_at,
                              "order_id": parcel.order_id, "parcel_id": parcel.parcel_id})
    moves.sort(key=lambda m: m["at"], reverse=True)
    return {"member_id": external_id, "balance": spendable(lots, now), "granted": int(wallet.granted or 0),
            "spent": int(wallet.spent or 0), "refunded": int(wallet.refunded or 0),
            "expired": int(wallet.expired or 0), "lots": live, "movements": moves[:MOVEMENTS_MAX]}
