"""Channels: the partner apps we sell inside, configured by ops, never coded.

A channel's signing secret is generated here and rotated with an overlap
window during which the previous secret is still accepted, and our own calls
to the channel stay on the previous secret until the channel proves it has
the new one. Whether a channel is a sandbox is fixed when it is created.
"""
from __future__ import annotations

import base64
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.models import Model

from chalicelib.channels import endpoints, settlement_rules
from chalicelib.channels.models import Channel
from chalicelib.checkout import quotas
from chalicelib.channels import locales
from chalicelib.checkout.models import Quota
from chalicelib.core import audit, budget
from chalicelib.core.clock import business_day, next_day, now_iso
from chalicelib.core.errors import Conflict, NotFound
from chalicelib.core.models import plain
from chalicelib.core.tx import condition_failed, transaction
from chalicelib.core.errors import Unprocessable
from chalicelib.core.tx import Contended, LabelledTransaction, Refused, commit_retrying

if TYPE_CHECKING:  # annotations only: pydantic loads with the first request that sends a body
    from chalicelib.core.schemas import ChannelCreate, ChannelFields

ACTIVE, SUSPENDED = "active", "suspended"
# Limits and money terms are audited with their old and new values.
AUDITED = ("points_mode", "points_per_yuan", "member_points_cap", "redemption_quota", "settlement_period",
           "api_base_url", "entry_mode", "sandbox", "cart_enabled", "default_locale", "payment_auth", "webhook_url",
           "shipping_deadline_hours", "receipt_days", "api_timeout_seconds", "refund_window_days")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: "whsec_" and the base64 of 32 random bytes (the key itself)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def get(code: str) -> Channel:
    try:
        return Channel.get(code)
    except DoesNotExist:
        raise NotFound("channel_not_found", f"no channel {code}") from None


def entry_link(channel: Channel, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/entry/{channel.code}"


def view(c: Channel, base_url: str) -> dict:
    """Everything ops see of a channel, except its secret."""
    return {
        "code": c.code, "name": c.name, "contact_name": c.contact_name, "phone": c.phone,
        "settlement_period": c.settlement_period,
        "settlement_rules": [{"from": day, "kind": kind} for day, kind in sorted((rules_of(c) or {}).items())],
        "points_mode": c.points_mode,
        "points_per_yuan": int(c.points_per_yuan), "member_points_cap": int(c.member_points_cap),
        "redemption_quota": int(c.redemption_quota), "api_base_url": c.api_base_url,
        "entry_mode": c.entry_mode, "sandbox": c.sandbox, "cart_enabled": c.cart_enabled,
        "default_locale": c.default_locale or locales.DEFAULT, "payment_auth": c.payment_auth, "status": c.status,
        "current_period": c.current_period,
        "previous_secret_until": int(c.previous_secret_until) if c.previous_secret_until else None,
        "secret_proven_at": int(c.secret_proven_at) if c.secret_proven_at else None,
        "webhook_url": c.webhook_url, "webhook_secret_set": bool(c.webhook_secret),
        "shipping_deadline_hours": int(c.shipping_deadline_hours), "receipt_days": int(c.receipt_days),
        "refund_window_days": int(c.refund_window_days),
        "previous_webhook_secret_until": int(c.previous_webhook_secret_until)
        if c.previous_webhook_secret_until else None,
        "api_timeout_seconds": float(c.api_timeout_seconds) if c.api_timeout_seconds is not None else None,
        "entry_link": entry_link(c, base_url), "created_at": c.created_at, "updated_at": c.updated_at,
    }


def _plain(fields: ChannelFields) -> dict:
    values = fields.model_dump(exclude_none=True)
    for url in ("api_base_url", "webhook_url"):
        if url in values:
            values[url] = str(values[url])
    return values


def _check_urls(values: dict) -> None:
    for field in ("api_base_url", "webhook_url"):
        if field in values:
            endpoints.check_base_url(values[field], field=field)


def create(data: ChannelCreate, actor: str) -> Channel:
    values = _plain(data)
    _check_urls(values)
    channel = Channel(values.pop("code"), secret=new_secret(), webhook_secret=new_webhook_secret(), **values)
    try:
        with transaction() as tx:
            tx.save(channel, condition=Channel.code.does_not_exist())
            audit.add(tx, f"channel#{channel.code}", actor, "created", None, None,
                      {k: values[k] for k in AUDITED if k in values})
    except TransactWriteError as exc:
        if condition_failed(exc):
            raise Conflict("channel_exists", f"channel {channel.code} already exists", "code") from None
        raise
    return channel


def _update(channel: Channel, actions: list, changes: list[tuple[str, str, object, object]], actor: str,
            condition=None, also: Iterable[tuple[Model, list]] = (), reprice: bool = False) -> Channel:
    """Update the channel (and ``also`` the items that must change with it) with one audit row per change;
    ``reprice``: every price in points moves, so the channel's pricing version rises (``quotas.reprice``)."""
    condition = Channel.code.exists() if condition is None else condition
    tx = LabelledTransaction()
    if reprice:
        quotas.reprice(tx, channel, actions, condition)
    else:
        tx.update("channel", channel, actions + [Channel.updated_at.set(now_iso())], condition=condition)
    for i, (item, item_actions) in enumerate(also):
        tx.update(f"also:{i}", item, item_actions)
    for i, (action, field, old, new) in enumerate(changes):
        audit.add(tx, f"channel#{channel.code}", actor, action, field, old, new, label=f"audit:{i}")
    try:
        tx.commit()
    except (Refused, Contended):
        # A condition that no longer holds, or (on DynamoDB) a transaction that lost a race on the same item.
        raise Conflict("concurrent_update", f"channel {channel.code} changed meanwhile; retry") from None
    channel.refresh()
    return channel


def edit(code: str, fields: ChannelFields, actor: str) -> Channel:
    channel = get(code)
    values = _plain(fields)
    if "sandbox" in values and values["sandbox"] != channel.sandbox:
        # A sandbox's route explains signatures and its orders are never settled: a live channel must never
        # gain that route, and a sandbox's test data must never become money.
        raise Conflict("sandbox_immutable", "whether a channel is a sandbox is set at creation and never changes",
                       "sandbox")
    _check_urls(values)
    changed = {k: v for k, v in values.items() if getattr(channel, k) != v}
    if not changed:
        return channel
    actions = [getattr(Channel, k).set(v) for k, v in changed.items()]
    changes = [("edited", k, getattr(channel, k), v) for k, v in changed.items()]
    guard = Channel.code.exists()
    if "settlement_period" in changed:
        # Days already booked keep the rule they had: the new one holds from the next business day, and the
        # rules are rewritten from the ones read, so only if nobody changed the rule meanwhile.
        tomorrow = next_day(business_day())
        actions.append(Channel.settlement_rules.set(settlement_rules.with_change(
            rules_of(channel), channel.settlement_period, changed["settlement_period"], tomorrow)))
        guard = guard & (Channel.settlement_period == channel.settlement_period)
    # A new rate moves every price in points: re-priced, as a sub-pool change is.
    return _update(channel, actions, changes, actor, guard, reprice="points_per_yuan" in changed)


def open_period(code: str, period_id: str, starts_at: int, ends_at: int, quota_points: int | None,
                actor: str, shards: int = 1) -> quotas.Period:
    channel = get(code)
    if ends_at <= starts_at:
        raise Unprocessable("validation_error", "ends_at must be after starts_at", "ends_at")
    if not 1 <= shards <= quotas.MAX_SHARDS:
        raise Unprocessable("validation_error", f"shards must be 1 to {quotas.MAX_SHARDS}", "shards")
    if period_id == channel.current_period:
        # The transaction below would put and update the same shard items, which DynamoDB refuses outright
        # (ValidationException), so this case never reaches it; any other existing id fails the put's condition.
        raise Conflict("period_exists", f"channel {code} already has quota period {period_id}", "period_id")
    limit = int(channel.redemption_quota) if quota_points is None else quota_points
    selling = channel.status == ACTIVE
    version = quotas.pricing_version(channel)  # the new shards carry it; the channel's condition below keeps it current
    items = {i: Quota.item(code, quotas.shard_key(period_id, i), shards=shards, starts_at=starts_at, ends_at=ends_at,
                           limit=share, remaining=share, reserved=0, spent=0, grant_room=share, granted=0,
                           selling=selling, pricing_version=version)
             for i, share in enumerate(quotas.split(limit, shards))}
    previous = quotas.current(channel) if channel.current_period else None

    def build() -> LabelledTransaction:
        tx = LabelledTransaction()
        for i, item in items.items():
            tx.put(f"period:{i}", item, condition=Quota.shard_id.does_not_exist())
        for i, item in (previous.shards.items() if previous else ()):
            tx.update(f"closed:{i}", item, [Quota.selling.set(False)])  # the old period stops selling with it
        same_version = (Channel.pricing_version == version) if version else (
            Channel.pricing_version.does_not_exist() | (Channel.pricing_version == 0))
        tx.update("channel", channel, [Channel.current_period.set(period_id), Channel.quota_shards.set(shards),
                                       Channel.updated_at.set(now_iso())],
                  condition=(Channel.status == channel.status) & quotas.same_period(channel) & same_version)
        audit.add(tx, f"channel#{code}", actor, "period_opened", "current_period", channel.current_period,
                  {"period_id": period_id, "quota": limit, "shards": shards, "starts_at": starts_at, "ends_at": ends_at})
        return tx

    try:
        commit_retrying(build)
    except Refused as refused:
        if "channel" in refused.labels:
            raise Conflict("concurrent_update", f"channel {code} changed meanwhile; retry") from None
        raise Conflict("period_exists", f"channel {code} already has quota period {period_id}", "period_id") from None
    return quotas.Period(code, period_id, items)


def rules_of(channel: Channel) -> dict[str, str] | None:
    """The channel's settlement rule by the day it holds from (``settlement_rules.rule_on``); None: never changed."""
    rules = channel.settlement_rules
    if rules is None:
        return None
    return {str(k): str(v) for k, v in plain(rules).items()}


def set_status(code: str, status: str, actor: str) -> Channel:
    """Suspend or resume at once: entry reads the status on every request, and checkout conditions on the
    current period's quota shards, whose ``selling`` flag changes in the same transaction as the status."""
    channel = get(code)
    if channel.status == status:
        return channel
    shards = list(quotas.current(channel).shards.values()) if channel.current_period else []
    guard = (Channel.status == channel.status) & (
        Channel.current_period == channel.current_period if channel.current_period
        else Channel.current_period.does_not_exist())
    return _update(channel, [Channel.status.set(status)],
                   [("suspended" if status == SUSPENDED else "resumed", "status", channel.status, status)], actor,
                   guard, [(q, [Quota.selling.set(status == ACTIVE)]) for q in shards])


def in_overlap(channel: Channel, now: float) -> bool:
    return bool(channel.previous_secret and channel.previous_secret_until and now < channel.previous_secret_until)


def rotate_secret(code: str, overlap_seconds: int, actor: str) -> tuple[Channel, str]:
    """New secret now; the current one stays valid for ``overlap_seconds``.

    Refused inside an overlap: a second rotation would drop the secret the channel (and our own
    outbound calls, until the channel proves it has the new one) may still be using."""
    channel = get(code)
    now = int(time.time())
    if in_overlap(channel, now):
        raise Conflict("rotation_in_progress", f"the previous secret of {code} is valid until "
                       f"{int(channel.previous_secret_until)}; rotate again after that")
    secret = new_secret()
    until = now + overlap_seconds
    try:
        channel = _update(
            channel,
            [Channel.previous_secret.set(channel.secret), Channel.previous_secret_until.set(until),
             Channel.secret.set(secret), Channel.secret_proven_at.remove()],
            [("secret_rotated", "secret", None, {"previous_secret_until": until})], actor,
            (Channel.secret == channel.secret) & (Channel.previous_secret_until.does_not_exist()
                                                  | (Channel.previous_secret_until <= now)),
        )
    except Conflict:
        if in_overlap(get(code), time.time()):
            raise Conflict("rotation_in_progress", f"the secret of {code} was rotated meanwhile") from None
        raise
    return channel, secret


def rotate_webhook_secret(code: str, overlap_seconds: int, actor: str) -> tuple[Channel, str]:
    """New webhook secret now; deliveries carry a signature with the current one too for ``overlap_seconds``.

    Also how a channel from before webhook secrets gets its first. Refused inside an overlap, like the
    signing secret: a second rotation would drop the key the channel may still verify with."""
    channel = get(code)
    now = int(time.time())
    if channel.previous_webhook_secret_until and now < channel.previous_webhook_secret_until:
        raise Conflict("rotation_in_progress", f"the previous webhook secret of {code} is valid until "
                       f"{int(channel.previous_webhook_secret_until)}; rotate again after that")
    secret = new_webhook_secret()
    until = now + overlap_seconds
    keep = channel.webhook_secret is not None and overlap_seconds > 0
    actions = [Channel.webhook_secret.set(secret)] + (
        [Channel.previous_webhook_secret.set(channel.webhook_secret), Channel.previous_webhook_secret_until.set(until)]
        if keep else [Channel.previous_webhook_secret.remove(), Channel.previous_webhook_secret_until.remove()])
    current = (Channel.webhook_secret == channel.webhook_secret if channel.webhook_secret
               else Channel.webhook_secret.does_not_exist())
    channel = _update(channel, actions,
                      [("webhook_secret_rotated", "webhook_secret", None,
                        {"previous_webhook_secret_until": until if keep else None})], actor, current)
    return channel, secret


def webhook_secrets(channel: Channel, now: float | None = None) -> list[str]:
    """The webhook secrets a delivery is signed with right now: the current one, and the previous during its
    overlap (Standard Webhooks: several space-separated signatures, the receiver accepts any it can verify)."""
    now = time.time() if now is None else now
    previous = channel.previous_webhook_secret
    overlap = previous and channel.previous_webhook_secret_until and now < channel.previous_webhook_secret_until
    return [s for s in (channel.webhook_secret, previous if overlap else None) if s]


def rotate_webhook_signing_key(code: str, overlap_seconds: int, actor: str) -> Channel:
    """New Ed25519 key for ``v1a`` signatures now (the first one too); for ``overlap_seconds`` deliveries carry
    the previous key's signature as well, so a channel switches to the new public key when it likes. Refused
    inside an overlap (a second rotation would drop the key the channel may still verify with)."""
    from chalicelib.channels import webhook_signing

    channel = get(code)
    now = int(time.time())
    if channel.previous_webhook_signing_key_until and now < channel.previous_webhook_signing_key_until:
        raise Conflict("rotation_in_progress", f"the previous webhook signing key of {code} is valid until "
                       f"{int(channel.previous_webhook_signing_key_until)}; rotate again after that")
    key, until = webhook_signing.new_signing_key(), now + overlap_seconds
    keep = channel.webhook_signing_key is not None and overlap_seconds > 0
    actions = [Channel.webhook_signing_key.set(key)] + (
        [Channel.previous_webhook_signing_key.set(channel.webhook_signing_key),
         Channel.previous_webhook_signing_key_until.set(until)] if keep else
        [Channel.previous_webhook_signing_key.remove(), Channel.previous_webhook_signing_key_until.remove()])
    current = (Channel.webhook_signing_key == channel.webhook_signing_key if channel.webhook_signing_key
               else Channel.webhook_signing_key.does_not_exist())
    return _update(channel, actions, [("webhook_signing_key_rotated", "webhook_signing_key", None,
                                       {"public_key": webhook_signing.public_key(key),
                                        "previous_until": until if keep else None})], actor, current)


def webhook_signing_keys(channel: Channel, now: float | None = None) -> list[str]:
    """The private keys a delivery is signed with (``v1a``) right now: the current one, and the previous
    during its overlap."""
    now = time.time() if now is None else now
    previous = channel.previous_webhook_signing_key
    overlap = previous and channel.previous_webhook_signing_key_until and now < channel.previous_webhook_signing_key_until
    return [k for k in (channel.webhook_signing_key, previous if overlap else None) if k]


def accepted_secrets(channel: Channel, now: float | None = None) -> list[str]:
    """The secrets a signature may use right now: the current one, and the previous during its overlap."""
    now = time.time() if now is None else now
    return [channel.secret, channel.previous_secret] if in_overlap(channel, now) else [channel.secret]


def outbound_secret(channel: Channel, now: float | None = None) -> str:
    """The secret our calls to the channel are signed with: the previous one during an overlap until the
    channel has signed a request with the new one (it may not have deployed it yet)."""
    now = time.time() if now is None else now
    return channel.previous_secret if in_overlap(channel, now) and not channel.secret_proven_at else channel.secret


def record_proof(channel: Channel, secret: str, now: float | None = None) -> None:
    """An accepted request signed with ``secret``: if that is the rotated-in secret and not yet proven, mark it.

    Conditional on the secret still being current and unproven, so concurrent first requests mark it (and
    audit it) once; losing that race, or a transaction conflict, leaves it for the winner or the next request."""
    now = time.time() if now is None else now
    if secret != channel.secret or channel.secret_proven_at or not in_overlap(channel, now):
        return
    try:
        with transaction() as tx:
            tx.update(channel, [Channel.secret_proven_at.set(int(now))],
                      condition=(Channel.secret == secret) & Channel.secret_proven_at.does_not_exist())
            audit.add(tx, f"channel#{channel.code}", f"channel:{channel.code}", "secret_proven", "secret", None,
                      {"proven_at": int(now)})
    except TransactWriteError as exc:
        if not (condition_failed(exc) or exc.cause_response_code in ("TransactionCanceledException",
                                                                      "TransactionConflictException")):
            raise
    channel.secret_proven_at = channel.secret_proven_at or int(now)  # this request proved it, whoever recorded it


def list_all() -> list[Channel]:
    return sorted(Channel.scan(), key=lambda c: c.code)


def audit_trail(code: str) -> list[dict]:
    return audit.history(f"channel#{code}")


SWEEP_WORKERS = 16
SWEEP_BUDGET = 80.0  # seconds; the sweep Lambdas' timeout is 120 s


def sweep_each(work: Callable[[Channel], Any], counted: Callable[[], None], channels: Iterable[Channel] | None = None,
               budget_seconds: float = SWEEP_BUDGET) -> dict[str, Any]:
    """A scheduled sweep: what ``work`` answered per channel, or ``{"error": code}`` for one that failed
    (logged, and ``counted`` for its alarm), so one channel's fault never stops the others'. The channels run
    side by side, each with the same budget for its calls to its back end (``budget.within``: none
    starts that would end after ``budget_seconds``), so one slow channel costs only its own work, and the
    sweep ends in time for whatever its Lambda does next."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.core.observability import logger

    until = time.monotonic() + budget_seconds

    def one(channel: Channel) -> Any:
        try:
            with budget.within(until):
                return work(channel)
        except Exception as error:  # noqa: BLE001 - any fault of one channel must not stop the others
            logger.exception("sweep failed for a channel", extra={"channel": channel.code})
            counted()
            return {"error": getattr(error, "code", type(error).__name__)}

    todo = list(list_all() if channels is None else channels)
    if not todo:
        return {}
    with ThreadPoolExecutor(min(SWEEP_WORKERS, len(todo)), thread_name_prefix="sweep") as pool:
        return dict(zip([c.code for c in todo], pool.map(one, todo)))
