"""The invariant audit: every hour, recompute what the counters say from the items themselves.

What is checked, per channel (the rules are pure functions below; ``run`` reads and judges):

- **quota shards** (periods still open or ended within ``LOOKBACK_SECONDS``; older ones no longer move): on each
  shard ``remaining + reserved + spent == limit == grant_room + granted``, nothing negative; ``spent`` equals
  what the period's paid orders took from that shard (``Order.quota_takes``) less what their cancelled or
  refunded parcels gave back to it (``refunds.give_back``'s shares, while the period sold); ``reserved`` what
  its remote orders still awaiting the channel's deduction hold; and the period's ``granted`` the sum of its
  grants;
- **hosted wallets**: ``balance == granted − spent + refunded − expired`` where granted is the sum of the
  member's grants, spent of its paid orders' points, refunded of its parcels' points given back, expired the
  wallet's own count (nothing else records an expiry); and the balance is what its lots hold;
- **orders**: an order's quota takes sum to its points, and so do its parcels' once it is split.

A finding names one subject (``quota:{channel}:{period}``, ``wallet:{channel}:{member}``,
``order:{channel}:{order}``) with each check that failed and both figures. Writes go on while the audit reads,
so a subject is judged only if its items did not move while it was read (shards and wallets are read before
and after, strongly consistent), and a channel with findings is read and judged once more after
``CONFIRM_PAUSE`` seconds (index reads are eventually consistent): only findings seen both times are reported.
A subject that kept moving is counted ``unsettled`` and judged next hour.

**Cost** (one run): a Scan of the channels table; per channel two Queries of its quota shards and a keys-only
Query of its members (``Member`` channel-index, ~16,000 a page); per member one Query of its orders
(``Order`` member-index) and, hosted, one of its grants (``Grant`` member-index), two consistent BatchGetItems
per 100 hosted wallets, and one consistent BatchGetItem per 100 parcels of paid orders: about three reads per
member and hour (100,000 members: ~300,000 read requests an hour). Doubled for a channel with findings.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable

from chalicelib.billing import metering
from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.checkout.checkout import AWAITING, PAID, quota_takes
from chalicelib.checkout.models import Grant, Quota, Wallet
from chalicelib.core.clock import now_iso
from chalicelib.core.models import plain
from chalicelib.settlement.models import AuditRun
from chalicelib.members.models import Member
from chalicelib.orders.models import Order, Parcel
from chalicelib.core.tx import batch_read
from chalicelib.core.observability import count, logger
from chalicelib.orders import allocation, parcels
from chalicelib.orders.orders import lines_of

SCOPE = "invariants"
LOOKBACK_SECONDS = 7 * 86400
CONFIRM_PAUSE = 2.0
MAX_LISTED = 200
KEEP_DAYS = 30


@dataclass(frozen=True)
class Finding:
    subject: str
    channel: str
    checks: tuple[tuple[str, int, int], ...]  # (check, expected from the items, found in the counter)

    def as_dict(self) -> dict:
        return {"subject": self.subject, "channel": self.channel,
                "checks": [{"check": c, "expected": e, "found": f} for c, e, f in self.checks]}


def _returned(parcel: Parcel) -> dict | None:
    if parcel.returned is None:
        return None
    return plain(parcel.returned)


# --- the rules (pure) ----------------------------------------------------------------------------------------

def shard_checks(shard: int, q: Quota) -> list[tuple[str, int, int]]:
    """A shard's own identities: ``remaining + reserved + spent == limit == grant_room + granted``, none negative."""
    remaining, reserved, spent = int(q.remaining), int(q.reserved or 0), int(q.spent or 0)
    limit, grant_room, granted = int(q.limit), int(q.grant_room), int(q.granted or 0)
    failed = []
    if remaining + reserved + spent != limit:
        failed.append((f"shard {shard}: remaining + reserved + spent = limit", limit, remaining + reserved + spent))
    if grant_room + granted != limit:
        failed.append((f"shard {shard}: grant_room + granted = limit", limit, grant_room + granted))
    for name, value in (("remaining", remaining), ("reserved", reserved), ("spent", spent),
                        ("grant_room", grant_room), ("granted", granted)):
        if value < 0:
            failed.append((f"shard {shard}: {name} >= 0", 0, value))
    return failed


def given_back(order: Order, found: list[Parcel]) -> dict[int, int]:
    """What the order's cancelled or refunded parcels gave back to each quota shard (as ``refunds.give_back``)."""
    back: dict[int, int] = defaultdict(int)
    returned = [p for p in found if (_returned(p) or {}).get("quota") == "returned"]
    if not returned:
        return back
    plans = allocation.plan(int(order.points), lines_of(order))
    shares = allocation.shard_shares([p.points for p in plans], quota_takes(order))
    for parcel in returned:
        for shard, used in shares[int(parcel.parcel_id.rsplit("-", 1)[1]) - 1].items():
            back[int(shard)] += int(used)
    return back


def period_checks(shards: dict[int, Quota], orders: Iterable[Order], found: dict[str, list[Parcel]],
                  granted: int) -> list[tuple[str, int, int]]:
    """One period's shards against its orders and grants (``orders`` are the period's, ``granted`` the sum of
    its grants)."""
    spent: dict[int, int] = defaultdict(int)
    reserved: dict[int, int] = defaultdict(int)
    for order in orders:
        if order.status == PAID:
            for shard, used in quota_takes(order).items():
                spent[shard] += used
            for shard, used in given_back(order, found.get(order.order_id, [])).items():
                spent[shard] -= used
        elif order.status == AWAITING:
            for shard, used in quota_takes(order).items():
                reserved[shard] += used
    failed = []
    for shard in sorted(shards):
        failed += shard_checks(shard, shards[shard])
        q = shards[shard]
        if int(q.spent or 0) != spent.get(shard, 0):
            failed.append((f"shard {shard}: spent = orders' takes - given back", spent.get(shard, 0),
                           int(q.spent or 0)))
        if int(q.reserved or 0) != reserved.get(shard, 0):
            failed.append((f"shard {shard}: reserved = awaiting orders' takes", reserved.get(shard, 0),
                           int(q.reserved or 0)))
    for shard in sorted(set(spent) | set(reserved)):
        if shard not in shards:
            failed.append((f"shard {shard}: exists for the orders that took from it", 1, 0))
    total = sum(int(q.granted or 0) for q in shards.values())
    if total != granted:
        failed.append(("granted = the period's grants", granted, total))
    return failed


def wallet_checks(wallet: Wallet, grants: Iterable[Grant], orders: Iterable[Order], found: dict[str, list[Parcel]]
                  ) -> list[tuple[str, int, int]]:
    """A hosted member's wallet against its grants, its paid orders and their parcels given back."""
    granted = sum(int(g.points) for g in grants)
    paid = [o for o in orders if o.status == PAID and o.points_mode == "hosted"]
    spent = sum(int(o.points) for o in paid)
    refunded = sum(int((_returned(p) or {}).get("points", 0)) for o in paid for p in found.get(o.order_id, []))
    expired = int(wallet.expired or 0)
    balance = int(wallet.balance or 0)
    lots = wallet.lots.as_dict() if wallet.lots is not None else {}
    failed = []
    expected = granted - spent + refunded - expired
    if balance != expected:
        failed.append(("balance = granted - spent + refunded - expired", expected, balance))
    held = sum(int(lot["left"]) for lot in lots.values())
    if held != balance:
        failed.append(("balance = points left in its lots", held, balance))
    for name, value, counter in (("granted", granted, wallet.granted), ("spent", spent, wallet.spent),
                                 ("refunded", refunded, wallet.refunded)):
        if value != int(counter or 0):
            failed.append((f"{name} = the items' sum", value, int(counter or 0)))
    return failed


def order_checks(order: Order, found: list[Parcel]) -> list[tuple[str, int, int]]:
    points = int(order.points)
    failed = []
    if order.status in (PAID, AWAITING) and order.quota_takes is not None:
        takes = sum(quota_takes(order).values())
        if takes != points:
            failed.append(("points = quota taken", takes, points))
    if found and sum(int(p.points) for p in found) != points:
        failed.append(("points = its parcels' points", sum(int(p.points) for p in found), points))
    return failed


# --- reading one channel -------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    shards: dict[str, dict[int, Quota]]
    members: list[str]
    wallets: dict[str, Wallet]
    orders: dict[str, list[Order]] = field(default_factory=dict)  # by member
    grants: dict[str, list[Grant]] = field(default_factory=dict)  # by member
    parcels: dict[str, list[Parcel]] = field(default_factory=dict)  # by order


def _shards(code: str, since: float) -> dict[str, dict[int, Quota]]:
    """Every quota shard of the channel by period: their keys from the channel index (keys only, eventually
    consistent: a period opened in the last moment may be missed, and is checked on the next run), then the items
    themselves by key, consistently (what they hold now, not what the index last saw)."""
    keys = [(q.shard_id,) for q in Quota.channel_index.query(code)]
    periods: dict[str, dict[int, Quota]] = defaultdict(dict)
    for start in range(0, len(keys), 100):
        for q in batch_read({Quota: keys[start:start + 100]}, consistent=(Quota,))[Quota]:
            period_id, _, shard = q.period_id.partition("#")
            periods[period_id][int(shard or 0)] = q
    return {pid: shards for pid, shards in periods.items() if 0 in shards and int(shards[0].ends_at) > since}


def _wallets(member_ids: list[str]) -> dict[str, Wallet]:
    found: dict[str, Wallet] = {}
    for start in range(0, len(member_ids), 100):
        keys = [(m,) for m in member_ids[start:start + 100]]
        found |= {w.member_id: w for w in batch_read({Wallet: keys}, consistent=(Wallet,))[Wallet]}
    return found


def _read(channel: Channel, since: float) -> tuple[Snapshot, Snapshot]:
    """The channel's items, with the shards and wallets read again at the end (what moved meanwhile). Wallets
    and grants are read whatever the channel's points mode is now: a channel switched between hosted and remote
    keeps the grants, wallets and orders of its earlier mode (each order stays on the mode it recorded)."""
    members = sorted(m.member_id for m in Member.channel_index.query(channel.code))
    before = Snapshot(_shards(channel.code, since), members, _wallets(members))
    for member_id in members:
        before.orders[member_id] = list(Order.member_index.query(member_id))
        before.grants[member_id] = list(Grant.member_index.query(member_id))
    before.parcels = parcels.of_orders([o for found in before.orders.values() for o in found if o.status == PAID])
    after = Snapshot(_shards(channel.code, since), members, _wallets(members))
    return before, after


def _same(a, b) -> bool:
    return a is not None and b is not None and a.serialize() == b.serialize()


def _judge(channel: Channel, before: Snapshot, after: Snapshot) -> tuple[list[Finding], int, dict[str, int]]:
    """Findings of one read of the channel, how many subjects moved while it was read, and what was checked."""
    findings: list[Finding] = []
    unsettled = 0
    code = channel.code
    orders = [o for found in before.orders.values() for o in found if o.channel_code == code]
    grants = [g for found in before.grants.values() for g in found]
    for period_id, shards in sorted(before.shards.items()):
        moved = after.shards.get(period_id, {})
        if set(moved) != set(shards) or not all(_same(shards[i], moved[i]) for i in shards):
            unsettled += 1
            continue
        failed = period_checks(shards, [o for o in orders if o.period_id == period_id], before.parcels,
                               sum(int(g.points) for g in grants if g.period_id == period_id))
        if failed:
            findings.append(Finding(f"quota:{code}:{period_id}", code, tuple(failed)))
    for member_id, wallet in sorted(before.wallets.items()):
        if not _same(wallet, after.wallets.get(member_id)):
            unsettled += 1
            continue
        failed = wallet_checks(wallet, before.grants.get(member_id, []), before.orders.get(member_id, []),
                               before.parcels)
        if failed:
            findings.append(Finding(f"wallet:{code}:{member_id}", code, tuple(failed)))
    for order in sorted(orders, key=lambda o: o.order_id):
        failed = order_checks(order, before.parcels.get(order.order_id, []))
        if failed:
            findings.append(Finding(f"order:{code}:{order.order_id}", code, tuple(failed)))
    checked = {"periods": len(before.shards), "wallets": len(before.wallets), "members": len(before.members),
               "orders": len(orders)}
    return findings, unsettled, checked


def audit_channel(channel: Channel, now: float, pause: float = CONFIRM_PAUSE) -> tuple[list[Finding], int, dict]:
    """The channel's confirmed findings (seen in two reads ``pause`` seconds apart), unsettled subjects, counts."""
    findings, unsettled, checked = _judge(channel, *_read(channel, now - LOOKBACK_SECONDS))
    if not findings:
        return findings, unsettled, checked
    time.sleep(pause)
    again, unsettled, checked = _judge(channel, *_read(channel, now - LOOKBACK_SECONDS))
    return [f for f in again if f in findings], unsettled, checked


# --- the run -------------------------------------------------------------------------------------------------

def run(codes: Iterable[str] | None = None, now: float | None = None, pause: float = CONFIRM_PAUSE) -> dict:
    """Audit every live channel (or those named, a sandbox too), record the run, log and count each drift
    (``InvariantDrift``). The hourly run leaves sandbox channels out: anyone with a sandbox's code may sign
    members into it, so its members would make the audit's work (about three reads per member) grow at
    will, and its orders move nothing live (no live stock, never settled)."""
    now = time.time() if now is None else now
    started = now_iso(now)
    chosen = [channels.get(c) for c in codes] if codes is not None else [
        c for c in channels.list_all() if not c.sandbox]
    findings: list[Finding] = []
    unsettled = 0
    totals: dict[str, int] = defaultdict(int)
    for channel in sorted(chosen, key=lambda c: c.code):
        try:
            found, moving, checked = audit_channel(channel, now, pause)
        except Exception:  # one channel's failure must not hide the others' drift
            logger.exception("invariant audit failed for a channel", extra={"channel": channel.code})
            count("InvariantAuditFailed")
            continue
        findings += found
        unsettled += moving
        totals["channels"] += 1
        for name, value in checked.items():
            totals[name] += value
        if found:
            metering.metric("InvariantDrift", channel.code, len(found))
    for finding in findings:
        logger.error("invariant drift", extra=finding.as_dict())
    count("InvariantDrift", len(findings))
    summary = {"started_at": started, "checked": dict(totals), "drifts": len(findings), "unsettled": unsettled,
               "findings": [f.as_dict() for f in findings[:MAX_LISTED]]}
    logger.info("invariant audit", extra={k: v for k, v in summary.items() if k != "findings"})
    AuditRun(SCOPE, started, finished_at=now_iso(),
             checked=dict(totals), drifts=len(findings), unsettled=unsettled,
             findings=json.dumps(summary["findings"], sort_keys=True),
             expires_at=timedelta(days=KEEP_DAYS)).save()
    return summary


def latest() -> dict:
    """The last run as ops see it."""
    found = list(AuditRun.query(SCOPE, scan_index_forward=False, limit=1))
    if not found:
        return {"run": None}
    r = found[0]
    return {"run": {"started_at": r.started_at, "finished_at": r.finished_at,
                    "checked": {k: int(v) for k, v in r.checked.as_dict().items()}, "drifts": int(r.drifts),
                    "unsettled": int(r.unsettled), "findings": json.loads(r.findings),
                    "listed": min(int(r.drifts), MAX_LISTED)}}
