"""Refunds of shipped parcels (points and quota go back, the goods stay with the member), and cancels of
parcels not shipped yet (stock too): this module decides how a parcel's points come back, ``parcels`` only
moves its state.

A cancel (``cancel``, or the shipping deadline's ``expire_unshipped``) of a hosted order's parcel is one move
with everything given back (``give_back``); a remote channel's parcel is cancelled through the channel
(``cancel_remote``), as a refund is.

One refund per parcel: its id is derived from the parcel id, so a retried or concurrent request names the
same ``Refund`` item (created once, under ``does_not_exist``) and every later step is a conditional write on
its state. The points returned are exactly those allocated to the parcel's lines at the split, never more.

The points move in one transaction (``_complete``): the refund becomes ``refunded``, the parcel moves
shipped/completed → refunded (``parcels.transition``, with its audit row and ``parcel.refunded`` event), and
``give_back`` (the cancel's helper, without the stock) returns the points to a hosted wallet as a lot
and the quota to the shards the parcel's points came from while that period is open (after it closed, the
points are recorded for settlement instead).

Remote mode: before that transaction the channel must have given the points back. ``points/refund`` is
idempotent by our refund id, so it is safe to send again; a lost answer is settled by ``points/refund/query``
(``refunded`` → complete; ``not_found`` → the channel never applied it, send again later); no answer keeps
the refund ``awaiting_channel`` on a sparse index that ``sweep`` asks about again. A refund the
channel refuses (``409 rejected``) is rejected here too, naming the channel's reason, and nothing moved.
A remote cancel (``cancel_remote``) is such a refund whose parcel waits in ``cancelling`` meanwhile.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.checkout.models import MemberRedemption
from chalicelib.core import audit, config
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import BadRequest, Conflict, Forbidden, NotFound
from chalicelib.core.models import plain
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import LabelledTransaction, Refused, commit_retrying, write_retrying
from chalicelib.orders import parcel_states, parcels
from chalicelib.orders.models import Order, Parcel, Refund
from chalicelib.core.errors import Busy
from chalicelib.checkout.models import Quota, Wallet
from chalicelib.supply.models import Stock
from chalicelib.checkout import quotas
from chalicelib.orders import allocation, record
from chalicelib.partners.saga import Calls, Saga
from chalicelib.sales import offers
from chalicelib.settlement import books, statements

REQUESTED, APPROVED, AWAITING_CHANNEL, REFUNDED, REJECTED = (
    "requested", "approved", "awaiting_channel", "refunded", "rejected")
STATES = (REQUESTED, APPROVED, AWAITING_CHANNEL, REFUNDED, REJECTED)
# The sweep takes a pending refund only once the request at work on it had time to finish its calls.
SWEEP_GRACE_SECONDS = 30
# Seconds before each fast retry of a refund its request left in doubt (the ``refund_retry`` workflow): about a
# minute in all, so a channel's blip costs the member seconds, not the sweep's 5 minutes (still the backstop).
RETRY_WAITS = (2, 4, 8, 16, 32)


def refund_id_for(parcel_id: str) -> str:
    """One refund per parcel, the same id on every retry: the channel dedupes ``points/refund`` by it."""
    return f"RF{parcel_id}"


def get(refund_id: str) -> Refund:
    try:
        return Refund.get(refund_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("refund_not_found", "no such refund") from None


def of_parcel(parcel_id: str) -> Refund | None:
    try:
        return Refund.get(refund_id_for(parcel_id), consistent_read=True)
    except DoesNotExist:
        return None


def _new(parcel: Parcel, reason: str, actor: str, approved: bool, action: str = "refund") -> Refund:
    """The parcel's refund, ``requested`` (a member asks) or ``approved`` (ops refund directly), not yet
    written. The parcel must be in a state ``action`` starts from (a refund: shipped or completed; a cancel:
    awaiting shipment)."""
    if parcel.state not in parcel_states.sources(action):
        raise parcel_states.refusal(parcel.state, action)
    lines = [{"goods_id": l["goods_id"], "sku_id": l["sku_id"], "qty": int(l["qty"]), "points": int(l["points"])}
             for l in parcel.lines]
    if sum(l["points"] for l in lines) != int(parcel.points):
        raise ValueError(f"parcel {parcel.parcel_id}'s lines do not sum to its points")
    # The mode the order was paid in, never the channel's today: the points go back where they were taken
    # from (the channel's wallet, or ours) however the channel has been switched since.
    points_mode = Order.get(parcel.order_id, consistent_read=True).points_mode
    return Refund(refund_id_for(parcel.parcel_id), parcel_id=parcel.parcel_id, order_id=parcel.order_id,
                  channel_code=parcel.channel_code, member_id=parcel.member_id, supplier_id=parcel.supplier_id,
                  points_mode=points_mode, lines=lines,
                  points=int(parcel.points), action=action, state=APPROVED if approved else REQUESTED, reason=reason,
                  requested_by=actor, decided_by=actor if approved else None, sandbox=bool(parcel.sandbox),
                  pending_channel=parcel.channel_code if approved else None)


def _create(parcel: Parcel, reason: str, actor: str, approved: bool) -> Refund | None:
    """The parcel's refund written once (``_new``); None when the parcel already has one."""
    refund = _new(parcel, reason, actor, approved)
    try:
        refund.save(condition=Refund.refund_id.does_not_exist())
    except PutError:
        return None
    return refund


DAY = 86400


def window_closed(completed_at: str | None, window_days: int, now: float) -> bool:
    """A completed parcel's refund window (the channel's ``refund_window_days`` from completion) has passed:
    without one, a refund could be asked for (and a supplier's payment clawed back) at any time."""
    if completed_at is None:
        return False  # not completed: shipped parcels are refundable until they complete
    return now >= datetime.fromisoformat(completed_at).timestamp() + window_days * DAY


def request(member_id: str, channel_code: str, parcel_id: str, reason: str) -> Refund:
    """The member asks for a refund of its shipped parcel, or of a completed one within the channel's refund
    window, once."""
    parcel = parcels.for_member(member_id, channel_code, parcel_id)
    if parcel.state == parcel_states.COMPLETED and window_closed(
            parcel.completed_at, int(channels.get(channel_code).refund_window_days), time.time()):
        raise Conflict("refund_window_closed", "the time to ask for a refund of this parcel has passed")
    refund = _create(parcel, reason, f"member:{member_id}", approved=False)
    if refund is None:
        existing = get(refund_id_for(parcel_id))
        raise Conflict(f"refund_{existing.state}", f"this parcel's refund is already {_words(existing.state)}")
    count("RefundsRequested")
    return refund


def for_member(member_id: str, channel_code: str, parcel_id: str) -> Refund:
    parcels.for_member(member_id, channel_code, parcel_id)
    refund = of_parcel(parcel_id)
    if refund is None:
        raise NotFound("refund_not_found", "this parcel has no refund")
    return refund


def for_supplier(supplier_id: str, refund_id: str) -> Refund:
    """The supplier's own parcel's refund; another supplier's, a sandbox one or none answer the same 404."""
    refund = of_id(refund_id)
    if refund is None or refund.supplier_id != supplier_id or refund.sandbox:
        raise NotFound("refund_not_found", "no such refund")
    return refund


def for_supplier_to_decide(supplier_id: str, refund_id: str) -> Refund:
    """The supplier's own refund, which it may approve or reject only if it bears it (``books.bearer``): a
    refund the platform bears is ops' to decide, or a supplier and a member together could fake a failed
    delivery and have the platform pay (403 ``refund_decided_by_ops``)."""
    refund = for_supplier(supplier_id, refund_id)
    if books.bearer(supplier_id) != statements.SUPPLIER:
        raise Forbidden("refund_decided_by_ops", "the platform bears this refund: ops decide it")
    return refund


def of_id(refund_id: str) -> Refund | None:
    try:
        return Refund.get(refund_id, consistent_read=True)
    except DoesNotExist:
        return None


def refund_parcel(parcel_id: str, actor: str, reason: str) -> Refund:
    """Ops refund any shipped or completed parcel: its refund is created approved, or a request still open
    or rejected is approved now; the points go back at once (remote: through the channel)."""
    try:
        parcel = Parcel.get(parcel_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("parcel_not_found", f"no parcel {parcel_id}") from None
    refund = _create(parcel, reason, actor, approved=True)
    if refund is None:
        refund = get(refund_id_for(parcel_id))
        try:
            write_retrying(lambda: refund.update(
                [Refund.state.set(APPROVED), Refund.decided_by.set(actor), Refund.reject_reason.remove(),
                 Refund.pending_channel.set(refund.channel_code), Refund.updated_at.set(now_iso())],
                condition=Refund.state.is_in(REQUESTED, REJECTED)))
        except UpdateError:
            raise _not_open(refund) from None
    return execute(refund)


def cancel_remote(parcel: Parcel, actor: str) -> Parcel:
    """A remote-mode parcel cancelled before shipment (the member, or the shipping deadline). Its points come
    back only through the channel (``points/refund``, the refund's ``action`` "cancel"), so the parcel first
    leaves shippable state: awaiting_shipment → cancelling in the same transaction that writes its refund
    (awaiting the channel). A supplier's ship then answers 409 ``parcel_cancelling``: goods can never leave
    for a parcel whose points are on their way back. Once the channel gave them back, the parcel is cancelled
    with its stock and quota (``_complete``); refused, it is shippable again (``_channel_refused``) and a
    later cancel asks the channel again under the same refund id; no answer, it stays cancelling for the
    retries and the sweep."""
    existing = of_parcel(parcel.parcel_id)
    if existing is not None and existing.state != REJECTED:
        raise Conflict(f"refund_{existing.state}", f"this parcel's refund is already {_words(existing.state)}")
    refund = _new(parcel, "cancelled before shipment", actor, approved=True, action="cancel")
    refund.state = AWAITING_CHANNEL

    def start(tx: LabelledTransaction, current: Parcel, order: Order) -> list:
        if existing is None:
            tx.put("refund", refund, condition=Refund.refund_id.does_not_exist())
        else:  # the channel refused an earlier cancel: asked again, under the same refund id
            tx.update("refund", existing, [
                Refund.state.set(AWAITING_CHANNEL), Refund.requested_by.set(actor), Refund.decided_by.set(actor),
                Refund.reject_reason.remove(), Refund.pending_channel.set(existing.channel_code),
                Refund.updated_at.set(now_iso())], condition=Refund.state == REJECTED)
        return []

    parcels.transition(parcel, "begin_cancel", actor, extra=start)
    refund = _send_first(get(refund.refund_id), channels.get(parcel.channel_code))
    if refund.state == REJECTED:
        raise Conflict("refund_rejected", "the channel refused to give this parcel's points back")
    return Parcel.get(parcel.parcel_id, consistent_read=True)


def reject(refund: Refund, actor: str, reason: str) -> Refund:
    """A requested refund turned down, with the reason the member sees."""
    try:
        write_retrying(lambda: refund.update(
            [Refund.state.set(REJECTED), Refund.decided_by.set(actor), Refund.reject_reason.set(reason),
             Refund.updated_at.set(now_iso())], condition=Refund.state == REQUESTED))
    except UpdateError:
        raise _not_open(refund) from None
    return refund


def approve(refund: Refund, actor: str) -> Refund:
    """A requested refund accepted: the points go back now (remote: once the channel gave them back)."""
    try:
        write_retrying(lambda: refund.update(
            [Refund.state.set(APPROVED), Refund.decided_by.set(actor),
             Refund.pending_channel.set(refund.channel_code), Refund.updated_at.set(now_iso())],
            condition=Refund.state == REQUESTED))
    except UpdateError:
        raise _not_open(refund) from None
    return execute(refund)


def _words(state: str) -> str:
    return state.replace("_", " ")


def _not_open(refund: Refund) -> Conflict:
    """The 409 for a decision on a refund no longer open: its code names the state it is in."""
    refund.refresh(consistent_read=True)
    return Conflict(f"refund_{refund.state}", f"this refund is already {_words(refund.state)}")


def execute(refund: Refund) -> Refund:
    """Give an approved refund's points back: hosted in one transaction, remote through the channel first."""
    if refund.points_mode == "remote":
        try:
            write_retrying(lambda: refund.update(
                [Refund.state.set(AWAITING_CHANNEL), Refund.pending_channel.set(refund.channel_code),
                 Refund.updated_at.set(now_iso())], condition=Refund.state == APPROVED))
        except UpdateError:
            refund.refresh(consistent_read=True)
            return refund  # another caller took it on
        return _send_first(refund, channels.get(refund.channel_code))
    return _complete(refund)


# --- cancels before shipment: hosted at once, remote through the channel ----------------

def cancel(member_id: str, channel_code: str, parcel_id: str) -> Parcel:
    """The member cancels a parcel not shipped yet: stock, points and quota go back at once."""
    parcel = parcels.for_member(member_id, channel_code, parcel_id)
    return _cancel(parcel, f"member:{member_id}")


def _cancel(parcel: Parcel, actor: str) -> Parcel:
    """Hosted points come back in the parcel's own move; a remote channel's only through the channel."""
    parcel_states.next_state(parcel.state, "cancel")  # a shipped parcel says so before anything else
    order = Order.get(parcel.order_id, consistent_read=True)
    if order.points_mode != "hosted" and int(parcel.points):
        # The channel keeps a remote member's wallet: its points come back only by a refund call to it, and
        # the parcel is cancelled (stock and quota back) once the channel has given them back; it is
        # ``cancelling`` (not shippable) from the moment the cancel starts.
        return cancel_remote(parcel, actor)
    return parcels.transition(parcel, "cancel", actor, extra=lambda tx, current, order: [
        Parcel.returned.set(give_back(tx, order, current, time.time()))])


def give_back(tx: LabelledTransaction, order: Order, parcel: Parcel, now: float, stock: bool = True) -> dict:
    """Add to ``tx`` everything a cancelled parcel gives back; answers what it gave (stored on the parcel).

    - stock: each line's quantity back to its ``Stock`` item (not for a refund of a shipped parcel,
      ``stock=False``: the goods stay with the member; nor for a sandbox order, which took none);
    - quota: the parcel's points back to the very shards the order took them from (``allocation.shard_shares``)
      while its period still sells (``spent`` down, ``remaining`` up, as if never spent); once the period has
      closed it is settled instead (``quota: settlement``) and the closed period is left as it was;
    - hosted points: a new wallet lot ``refund:{parcel_id}`` holding the parcel's points and expiring at the
      end of the order's period. The order does not record which grant lots paid for it; every grant of a
      period expires by its end, so no lot it spent could outlive that, and a refund never gives points a
      longer life than a grant of that period could have had. If the period has already ended, the points
      still come back (``refunded``) and expire at once (folded into ``expired`` by the next sweep); the
      member's view says so (``points_expired``);
    - settlement: the parcel comes off its channel's bill and, refunded after shipment, is booked for its
      supplier (``settlement.books.record_returned``).
    Refunds of shipped parcels reuse this (``_complete``)."""
    stock = stock and order.holds_stock is not False  # a sandbox order took no live stock: none comes back
    lines = sorted(parcel.lines, key=lambda l: (l["goods_id"], l["sku_id"])) if stock else []
    # A flash sale's units go back to its allotment while it runs (``sales.offers``); the rest to stock here.
    for line in offers.give_back(tx, order, lines, now) if lines else []:
        tx.update(f"stock:{line['goods_id']}:{line['sku_id']}", Stock(line["goods_id"], line["sku_id"]),
                  [Stock.stock.add(int(line["qty"]))], condition=Stock.sku_id.exists())
    books.record_returned(tx, parcel, now)  # off the channel's bill (and, refunded after shipment, the supplier's)
    points = int(parcel.points)
    returned: dict = {"points": points, "at": now_iso()}
    if not points:
        return returned
    period = quotas.get(order.channel_code, order.period_id)
    plans = allocation.plan(int(order.points), record.lines_of(order))
    share = allocation.shard_shares([p.points for p in plans], record.quota_takes(order))[
        parcels.parcel_ids(order).index(parcel.parcel_id)]
    if period.selling and period.ends_at > now:
        for shard, used in share.items():
            tx.update(f"quota:{shard}", Quota.item(order.channel_code, quotas.shard_key(order.period_id, shard)),
                      [Quota.spent.add(-used), Quota.remaining.add(used)],
                      condition=(Quota.spent >= used) & (Quota.ends_at > int(now)) & (Quota.selling == True))  # noqa: E712
        returned["quota"] = "returned"
    else:
        returned["quota"] = "settlement"
    if order.points_mode == "hosted":
        expires_at = period.ends_at
        tx.update("wallet", Wallet(order.member_id), [
            Wallet.balance.add(points), Wallet.refunded.add(points),
            Wallet.lots[f"refund:{parcel.parcel_id}"].set({"left": points, "expires_at": expires_at})],
            condition=Wallet.member_id.exists())
        returned["expires_at"] = expires_at
    return returned


def expire_unshipped(order_id: str) -> list[str]:
    """The shipping deadline: cancel every parcel still awaiting shipment, giving everything back; tell ops
    (log and ``ParcelsExpired``). One a supplier ships at the same moment stays shipped. A parcel that cannot
    be given back is logged and counted (``ParcelExpiryRefused``) for ops. A parcel too contended to cancel
    now (``Busy``) does not hold up its siblings; the task then raises ``Busy`` so that Step Functions retries
    it (and, through its retries, the sweep restarts the execution), so Complete still runs after it."""
    cancelled, busy = [], []
    found = parcels.of_order(order_id)
    for parcel in found:
        if parcel.state != parcel_states.AWAITING:
            continue
        try:
            _cancel(parcel, "system:shipping_deadline")
        except Busy:
            busy.append(parcel.parcel_id)
            continue
        except Conflict as refused:
            if refused.code in parcel_states.REFUSAL_CODES.values():
                continue  # shipped (or cancelled) meanwhile
            logger.error("unshipped parcel not cancelled at the deadline",
                         extra={"parcel_id": parcel.parcel_id, "code": refused.code})
            count("ParcelExpiryRefused")
            continue
        cancelled.append(parcel.parcel_id)
    if cancelled and not any(p.sandbox for p in found):  # a sandbox's parcels reach no supplier: expiring is
        logger.warning("parcels not shipped by the deadline were cancelled",  # their normal end, not an alarm
                       extra={"order_id": order_id, "parcel_ids": cancelled})
        count("ParcelsExpired", len(cancelled))
    if busy:
        raise Busy("busy", f"parcels {', '.join(busy)} too contended to cancel at the deadline; retry")
    return cancelled



# --- remote mode: the channel gives the points back -----------------------------------

def _send_first(refund: Refund, channel: Channel) -> Refund:
    """The request's own ``points/refund``; left in doubt, its fast retries start (``retry_soon``)."""
    refund = send(refund, channel)
    if refund.state == AWAITING_CHANNEL:
        retry_soon(refund)
    return refund


@cache
def _sfn() -> Any:
    """The Step Functions client, built on first use (boto3's import costs cold start elsewhere)."""
    import boto3

    return boto3.client("stepfunctions", region_name=config.REGION)


def retry_soon(refund: Refund) -> None:
    """Start the refund's ``refund_retry`` execution: asked again after 2, 4, 8… seconds (``RETRY_WAITS``).
    Never raises: the answer to the member stands whatever happens here, and the sweep is the backstop; a start
    that fails is logged and counted (``RefundRetryNotStarted``, alarmed). Each start has its own name: a
    refund asked again after the channel refused it retries again, and two executions of one refund are
    harmless (every step is a conditional write, the channel dedupes by refund id)."""
    payload = {"refund_id": refund.refund_id, "attempt": 0, "wait_seconds": RETRY_WAITS[0]}
    try:
        _sfn().start_execution(stateMachineArn=config.REFUND_RETRY_STATE_MACHINE_ARN,
                               name=f"{refund.refund_id}-{uuid.uuid4().hex[:12]}", input=json.dumps(payload))
    except Exception:  # noqa: BLE001 - see above
        logger.exception("refund retry not started", extra={"refund_id": refund.refund_id})
        count("RefundRetryNotStarted")


def retry_step(event: dict) -> dict:
    """One fast retry (the workflow's ``AskAgain`` task): a refund still waiting for the channel is asked about,
    and sent again if the channel does not have it (``resolve``). ``done`` once it left ``awaiting_channel`` (or
    is gone) or the retries are used up; else the next wait, doubled."""
    attempt = int(event["attempt"]) + 1
    refund = of_id(str(event["refund_id"]))
    if refund is not None and refund.state == AWAITING_CHANNEL:
        refund = resolve(refund, channels.get(refund.channel_code))
    state = refund.state if refund is not None else None
    return {"refund_id": str(event["refund_id"]), "attempt": attempt, "state": state,
            "wait_seconds": RETRY_WAITS[min(attempt, len(RETRY_WAITS) - 1)],
            "done": state != AWAITING_CHANNEL or attempt >= len(RETRY_WAITS)}


def send(refund: Refund, channel: Channel) -> Refund:
    """``points/refund``, idempotent by our refund id; a lost answer is asked about with the query (``REFUNDS``):
    ``refunded`` → complete; anything else → keep it waiting for the sweep."""
    return REFUNDS.ask(refund, channel, _payload(refund))


def resolve(refund: Refund, channel: Channel) -> Refund:
    """The sweep's step for a waiting refund: ask; the channel does not have it → send it again (safe:
    idempotent by refund id); no answer → wait for the next sweep."""
    return REFUNDS.resolve(refund, channel)


def _payload(refund: Refund) -> dict:
    return {"refund_id": refund.refund_id, "order_id": refund.order_id, "points": int(refund.points)}


def _unanswered(refund: Refund, calls: Calls) -> None:
    write_retrying(lambda: refund.update([Refund.resolve_attempts.add(1), Refund.updated_at.set(now_iso())]))
    count("RefundUnresolved")


def _rejected(refund: Refund, channel: Channel, answer: dict, calls: Calls) -> Refund:
    return _channel_refused(refund, str(answer.get("reason") or "rejected"))


def _channel_refused(refund: Refund, reason: str) -> Refund:
    """The channel refused to give the points back: nothing moved on either side; ops are told. A cancel's
    parcel goes back from cancelling to awaiting shipment in the same transaction (the member still paid)."""
    logger.warning("channel refused refund", extra={"refund_id": refund.refund_id, "reason": reason})
    count("RefundRefusedByChannel")

    def refuse(tx: LabelledTransaction) -> None:
        tx.update("refund", refund, [Refund.state.set(REJECTED), Refund.decided_by.set("channel"),
                                     Refund.reject_reason.set(f"the channel refused the refund: {reason}"),
                                     Refund.pending_channel.remove(), Refund.updated_at.set(now_iso())],
                  condition=Refund.state == AWAITING_CHANNEL)
        audit.add(tx, f"parcel#{refund.parcel_id}", "channel", "refund_refused", "refund", None, reason,
                  label="refund_audit")

    parcel = Parcel.get(refund.parcel_id, consistent_read=True)
    if refund.action == "cancel" and parcel.state == parcel_states.CANCELLING:
        try:
            parcels.transition(parcel, "abandon_cancel", "channel", extra=lambda tx, current, order: refuse(tx) or [])
        except Conflict:
            pass  # settled by another pass meanwhile (the parcel left cancelling with it)
        refund.refresh(consistent_read=True)
        return refund

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        refuse(tx)
        return tx

    return _settle(refund, build)


def pending(channel_code: str, older_than: float = 0) -> list[Refund]:
    """Refunds of one channel approved but not settled yet (waiting for the channel, or their request
    died before the points moved), untouched for at least ``older_than`` seconds."""
    cutoff = now_iso(time.time() - older_than)
    return list(Refund.pending_index.query(channel_code, filter_condition=Refund.updated_at <= cutoff))


def _settle_pending(refund: Refund, channel: Channel) -> Refund:
    """An approved refund is carried out; one waiting for the channel is asked about (and sent again if the
    channel does not have it)."""
    return execute(refund) if refund.state == APPROVED else resolve(refund, channel)


def resolve_pending(channel: Channel, older_than: float = 0) -> dict[str, int]:
    """Settle every pending refund of the channel that can be (``_settle_pending``). Safe beside the request
    still at work on it: every step is a conditional write on the refund's state, and the channel dedupes by
    refund id."""
    return REFUNDS.resolve_pending(channel, older_than)


def sweep() -> dict[str, dict]:
    """The scheduler's pass over every channel's pending refunds (untouched for ``SWEEP_GRACE_SECONDS``):
    none is forgotten. One channel failing is logged and counted and the others go on."""
    return REFUNDS.sweep(SWEEP_GRACE_SECONDS)


# --- the one transaction ----------------------------------------------------------------

def _complete(refund: Refund) -> Refund:
    """The parcel's move (``parcels.transition``: its audit row and event) with the points and quota given
    back (``give_back``; the stock too for a cancel, never for a refund: the goods stay with the
    member) and the refund's own ``refunded``, all in one transaction; once."""
    source = AWAITING_CHANNEL if refund.points_mode == "remote" else APPROVED
    parcel = Parcel.get(refund.parcel_id, consistent_read=True)
    action = "refund"
    if refund.action == "cancel":  # a cancel started before parcels had ``cancelling`` left its parcel awaiting
        action = {parcel_states.CANCELLING: "finish_cancel", parcel_states.AWAITING: "cancel"}.get(parcel.state,
                                                                                                    "refund")

    def extra(tx: LabelledTransaction, current: Parcel, order: Order) -> list:
        returned = give_back(tx, order, current, time.time(), stock=action != "refund")
        points = int(current.points)
        if order.cap_counted and returned.get("quota") == "returned" and points:
            # Remote mode: the points are no longer redeemed in the (still open) period, so the member's cap
            # room comes back with the quota; the counter never goes below what is left of the order's count.
            tx.update("member_cap", MemberRedemption(order.member_id, order.period_id),
                      [MemberRedemption.redeemed.add(-points)], condition=MemberRedemption.redeemed >= points)
        tx.update("refund", refund, [Refund.state.set(REFUNDED), Refund.pending_channel.remove(),
                                     Refund.refunded_at.set(now_iso()), Refund.updated_at.set(now_iso())],
                  condition=Refund.state == source)
        return [Parcel.returned.set(returned)]

    try:
        parcels.transition(parcel, action, refund.decided_by or refund.requested_by, extra=extra)
    except Conflict as refused:
        done = parcel_states.REFUSAL_CODES[parcel_states.REFUNDED], parcel_states.REFUSAL_CODES[parcel_states.CANCELLED]
        if refused.code not in done:
            raise
    refund.refresh(consistent_read=True)
    if refund.state == REFUNDED:
        count("ParcelsRefunded")
    return refund


def _settle(refund: Refund, build) -> Refund:
    """Commit once; if the refund already left the state this step starts from, someone else settled it.
    A refused parcel or quota condition reaches the caller."""
    try:
        commit_retrying(build)
    except Refused as refused:
        if "refund" not in refused.labels:
            raise
    refund.refresh(consistent_read=True)
    return refund


# The channel gives the points back: one remote saga (``partners.saga``), its calls booked as they end.
REFUNDS: Saga[Refund] = Saga(
    what="refund", ask_api="points/refund", query_api="points/refund/query",
    query_payload=lambda r: {"refund_id": r.refund_id}, ids=lambda r: {"refund_id": r.refund_id}, done="refunded",
    refusals=frozenset({"rejected"}), confirmed=lambda refund, channel, calls: _complete(refund), refused=_rejected,
    absent_statuses=frozenset({"not_found"}), absent=None, ask_again=_payload,
    waiting=_unanswered, carried=False, pending=pending,
    state=lambda r: r.state, states=(REFUNDED, REJECTED, AWAITING_CHANNEL, APPROVED), sweep_step=_settle_pending,
    sweep_failed=lambda: count("RefundSweepFailed"))


# --- views -------------------------------------------------------------------------------

def view(refund: Refund) -> dict:
    """The refund as the member sees it: its state, the points, and a rejection's reason."""
    return {"refund_id": refund.refund_id, "parcel_id": refund.parcel_id, "order_id": refund.order_id,
            "state": refund.state, "reason": refund.reason, "reject_reason": refund.reject_reason,
            "points": int(refund.points),
            "lines": [plain(l) for l in refund.lines],
            "created_at": refund.created_at, "updated_at": refund.updated_at, "refunded_at": refund.refunded_at}


def supplier_view(refund: Refund) -> dict:
    return dict(view(refund), decided_by=audit.public_actor(refund.decided_by))


def ops_view(refund: Refund) -> dict:
    return dict(view(refund), channel_code=refund.channel_code, supplier_id=refund.supplier_id,
                points_mode=refund.points_mode, requested_by=refund.requested_by, decided_by=refund.decided_by,
                resolve_attempts=int(refund.resolve_attempts or 0))


def list_for_supplier(supplier_id: str, state: str | None = None) -> list[dict]:
    """The supplier's refunds, newest first (at most 100), optionally only those in ``state``."""
    if state is not None and state not in STATES:
        raise BadRequest("validation_error", f"state is one of {', '.join(STATES)}", "state")
    filters = Refund.sandbox == False  # noqa: E712
    if state is not None:
        filters = filters & (Refund.state == state)
    return [supplier_view(r) for r in Refund.supplier_index.query(
        supplier_id, filter_condition=filters, scan_index_forward=False, limit=100)]
