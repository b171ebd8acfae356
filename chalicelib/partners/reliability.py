"""Every call to a channel passes its circuit breaker and is counted, in DynamoDB, so that every Lambda
instance sees the same breaker and the same figures.

The hot path stays small: ``admit`` reads the breaker with one eventually consistent GetItem (checkout reads it in
its batch read instead), and ``Permit.finish`` adds the call's attempts to the minute's stats item with one
UpdateItem of atomic ADDs — except a call that succeeded for a request that writes an order anyway: its figures
ride on the order and the orders stream books them (``partners.order_figures``), so a checkout writes nothing here.
The stats write's answer (the minute's calls and failures so far) is what a failed call judges opening on (with the
previous minute's, read only then, if this minute alone is not enough). A success writes nothing more; a
failed call also adds one to the breaker's count of failures since it last closed. Every transition is a
conditional write (``breaker`` has the rules): one writer opens it, exactly one caller claims the
half-open probe, and only that probe closes or reopens it.

``stats`` is the one reader of the figures for everyone else (ops' partner-health view, metering,
operating data): calls, errors, error rate and p95 latency since a time.

A scheduled sweep's time budget per channel, which a call must fit in before it starts, is ``core.budget``.
"""
from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.core import config
from chalicelib.core.observability import count, logger
from chalicelib.core.tx import condition_failed, write_retrying
from chalicelib.partners import breaker
from chalicelib.partners.breaker import CLOSED, HALF_OPEN, OPEN
from chalicelib.partners.models import PartnerBreaker, PartnerStats

OPEN_SECONDS = 30.0
STATS_DAYS = 8  # a week of minutes, and a day's margin for whoever reads "the last 7 days"
ERROR_MAX = 200


def open_seconds() -> float:
    """How long an opened breaker refuses calls; the local stage may shorten it
    (``PARTNER_BREAKER_OPEN_SECONDS``) so tests see it close again in seconds."""
    override = os.environ.get("PARTNER_BREAKER_OPEN_SECONDS") if config.IS_LOCAL else None
    return float(override) if override else OPEN_SECONDS


def new_correlation_id() -> str:
    """The id of one logical call, sent to the partner (``X-Correlation-Id``), logged, and returned in our
    error: the one string both sides can quote about it."""
    return "cm-" + secrets.token_hex(12)



class BreakerOpen(Exception):
    """The breaker refused the call: nothing was sent."""

    def __init__(self, channel_code: str, api: str, correlation_id: str, retry_at: float | None) -> None:
        super().__init__(f"{channel_code} {api}")
        self.channel_code, self.api, self.correlation_id, self.retry_at = channel_code, api, correlation_id, retry_at


def state_of(item: PartnerBreaker | None) -> breaker.State:
    """The breaker an item holds; None (no item) is a closed breaker."""
    if item is None:
        return breaker.State()
    return breaker.State(item.state or CLOSED, float(item.open_until or 0), float(item.probe_until or 0))


def read(channel_code: str, api: str, consistent: bool = False) -> breaker.State:
    """The breaker as stored (one GetItem, eventually consistent unless asked: a stale "closed" lets one more
    call through, a stale "open" is read again before it refuses anyone)."""
    try:
        return state_of(PartnerBreaker.get(channel_code, api, consistent_read=consistent))
    except DoesNotExist:
        return breaker.State()


def refuses(state: breaker.State, now: float | None = None) -> bool:
    """Whether a caller would be refused now (callers that read the item themselves, e.g. in a batch)."""
    return breaker.decide(state, time.time() if now is None else now) == breaker.REFUSE


def _update(item: Any, actions: list, condition) -> bool:
    """A conditional write; False when the condition no longer held (another caller moved the breaker)."""
    try:
        item.update(actions=actions, condition=condition)
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


@dataclass
class Permit:
    """One admitted call: its attempts are counted here and written once by ``finish``."""

    channel_code: str
    api: str
    correlation_id: str
    probe: bool
    open_seconds: float
    started: float = field(default_factory=time.time)
    kinds: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)
    last: str | None = None
    detail: str = ""

    def attempt(self, kind: str, millis: float, detail: str = "") -> None:
        """One request sent and how it ended (``breaker.KINDS``)."""
        self.kinds[kind] += 1
        self.latency[breaker.bucket(millis)] += 1
        self.last, self.detail = kind, detail or kind

    def figure(self) -> dict[str, Any]:
        """This call's figures, as ``book`` adds them to the minute's stats item (compact: carried on an order)."""
        return {"id": self.correlation_id, "api": self.api, "minute": int(self.started // 60),
                "kinds": dict(self.kinds), "h": {str(i): n for i, n in self.latency.items()}}

    def finish(self, deferred: list[dict[str, Any]] | None = None) -> None:
        """Book the attempts (stats) and the call's outcome (breaker): the last attempt decides it.

        ``deferred``: the caller writes a record anyway (checkout, its order) and carries a call that succeeded
        on it (``figure``) for the orders stream to book (``partners.order_figures``): then nothing is written
        here. A failed call or a probe is booked at once, as the breaker judges on it."""
        now = time.time()
        if deferred is not None and self.kinds and not self.probe and not breaker.failed(self.last or ""):
            deferred.append(self.figure())
            return
        minute = self._book_stats() if self.kinds else None
        if self.probe:
            self._settle_probe(now)
        elif minute is not None and breaker.failed(self.last or ""):
            since_closed = self._count_failure()
            figures = minute if breaker.opens(*minute, since_closed) else self._with_previous_minute(*minute)
            if breaker.opens(*figures, since_closed):
                self._open(now, *figures)

    def _count_failure(self) -> int:
        """One more failed call since the breaker last closed (an atomic ADD); the count after it."""
        key = PartnerBreaker(self.channel_code, self.api)
        key.update(actions=[PartnerBreaker.failures.add(1)])
        return int(key.failures)

    def _with_previous_minute(self, calls: int, errors: int) -> tuple[int, int]:
        """This minute's figures and the previous minute's together (one GetItem, after a failed call only), so
        a run of failures across a minute's turn is judged whole."""
        try:
            before = PartnerStats.get(self.channel_code, f"{int(self.started // 60) - 1:010d}#{self.api}")
        except DoesNotExist:
            return calls, errors
        return calls + int(before.calls or 0), errors + int(before.errors or 0)

    def _book_stats(self) -> tuple[int, int]:
        """Add the attempts to the minute's item; its calls and failures so far, as the write answered them."""
        errors = int(breaker.failed(self.last or ""))
        item, actions = stats_update(self.channel_code, self.api, int(self.started // 60), 1, errors, self.kinds,
                                     self.latency)
        write_retrying(lambda: item.update(actions=actions))  # the stream's transactions write these items too
        calls, failed = int(item.calls), int(item.errors)
        if errors and breaker.rate_alarming(calls, failed):
            count("PartnerErrorRateHigh")  # this channel's API fails a fifth of its calls this minute: page ops
        return calls, failed

    def _open(self, now: float, calls: int, errors: int) -> None:
        """The partner looks dead: open a closed breaker (one writer wins; the others find it open)."""
        after = breaker.opened(now, self.open_seconds)
        if _update(PartnerBreaker(self.channel_code, self.api),
                   [PartnerBreaker.state.set(OPEN), PartnerBreaker.open_until.set(after.open_until),
                    PartnerBreaker.last_error.set(self.detail[:ERROR_MAX]), PartnerBreaker.changed_at.set(now)],
                   PartnerBreaker.state.does_not_exist() | (PartnerBreaker.state == CLOSED)):
            self._opened(after.open_until, f"opened ({errors} of {calls} calls failed)")

    def _settle_probe(self, now: float) -> None:
        """The probe's outcome closes or reopens the breaker; a probe that sent nothing hands it back at once."""
        key = PartnerBreaker(self.channel_code, self.api)
        mine = (PartnerBreaker.state == HALF_OPEN) & (PartnerBreaker.probe == self.correlation_id)
        release = [PartnerBreaker.probe.remove(), PartnerBreaker.probe_until.remove(), PartnerBreaker.changed_at.set(now)]
        if self.last is None:
            _update(key, [PartnerBreaker.state.set(OPEN), PartnerBreaker.open_until.set(now), *release], mine)
        elif breaker.failed(self.last):
            after = breaker.opened(now, self.open_seconds)
            if _update(key, [PartnerBreaker.state.set(OPEN), PartnerBreaker.open_until.set(after.open_until),
                             PartnerBreaker.last_error.set(self.detail[:ERROR_MAX]), *release], mine):
                self._opened(after.open_until, "reopened")
        elif _update(key, [PartnerBreaker.state.set(CLOSED), PartnerBreaker.failures.set(0),
                           PartnerBreaker.open_until.remove(), *release], mine):
            logger.info("partner breaker closed", extra={"channel": self.channel_code, "api": self.api,
                                                         "correlation_id": self.correlation_id})

    def _opened(self, until: float, how: str) -> None:
        count("PartnerBreakerOpened")
        logger.warning(f"partner breaker {how}", extra={
            "channel": self.channel_code, "api": self.api, "until": round(until, 3), "error": self.detail,
            "correlation_id": self.correlation_id})


def stats_update(channel_code: str, api: str, minute: int, calls: int, errors: int, kinds: Counter,
                 latency: Counter) -> tuple[PartnerStats, list]:
    """The minute's stats item and the ADDs that book ``calls`` calls of ``api`` into it."""
    item = PartnerStats(channel_code, f"{minute:010d}#{api}")
    actions = [PartnerStats.api.set(api), PartnerStats.calls.add(calls), PartnerStats.errors.add(errors),
               PartnerStats.attempts.add(sum(kinds.values())),
               PartnerStats.expires_at.set(datetime.fromtimestamp((minute + 1) * 60 + STATS_DAYS * 86400,
                                                                  timezone.utc))]
    actions += [getattr(PartnerStats, kind).add(n) for kind, n in sorted(kinds.items()) if n]
    actions += [getattr(PartnerStats, f"h{int(i):02d}").add(n) for i, n in sorted(latency.items()) if n]
    return item, actions


def book(channel_code: str, figures: list[dict[str, Any]]) -> None:
    """Book deferred figures (``Permit.figure``) now: those of a request whose record was not written after all
    (a checkout refused after its password check)."""
    for figure in figures:
        item, actions = stats_update(channel_code, figure["api"], int(figure["minute"]), 1, 0,
                                     Counter(figure["kinds"]), Counter(figure["h"]))
        write_retrying(lambda: item.update(actions=actions))  # the stream's transactions write these items too


def admit(channel_code: str, api: str, lease: float, open_for: float | None = None, now: float | None = None,
          state: breaker.State | None = None) -> Permit:
    """Let one call to the channel's API through, as a normal call or as the half-open probe (claimed with a
    lease of ``lease`` seconds, the call's longest run); raise ``BreakerOpen`` when it must not be made.
    Should the call open the breaker, it stays open ``open_for`` seconds (default ``open_seconds()``).
    ``state``: the breaker as the caller read it moments ago (checkout, in its batch read), to spare a read."""
    now = time.time() if now is None else now
    open_for = open_seconds() if open_for is None else open_for
    state = read(channel_code, api) if state is None else state
    decision = breaker.decide(state, now)
    correlation_id = new_correlation_id()
    if decision == breaker.CALL:
        return Permit(channel_code, api, correlation_id, False, open_for)
    if decision == breaker.PROBE:
        claim = breaker.claimed(state, now, lease)
        lapsed = ((PartnerBreaker.state == OPEN) & (PartnerBreaker.open_until <= now)) | (
            (PartnerBreaker.state == HALF_OPEN) & (PartnerBreaker.probe_until <= now))
        if _update(PartnerBreaker(channel_code, api),
                   [PartnerBreaker.state.set(HALF_OPEN), PartnerBreaker.probe.set(correlation_id),
                    PartnerBreaker.probe_until.set(claim.probe_until), PartnerBreaker.changed_at.set(now)], lapsed):
            logger.info("partner breaker probing", extra={"channel": channel_code, "api": api,
                                                          "correlation_id": correlation_id})
            return Permit(channel_code, api, correlation_id, True, open_for)
        if breaker.decide(read(channel_code, api, consistent=True), now) == breaker.CALL:
            return Permit(channel_code, api, correlation_id, False, open_for)  # a probe closed it meanwhile
        retry_at = now + lease  # another caller's probe is in flight
    else:
        retry_at = breaker.retry_at(state)
    refused(channel_code, api, correlation_id, now)
    raise BreakerOpen(channel_code, api, correlation_id, retry_at)


def close(channel_code: str, api: str) -> None:
    """Ops say the channel's endpoint works again (a redrive): closed now, no wait for a probe. A probe still in
    flight then finds the breaker no longer its own and leaves it."""
    PartnerBreaker(channel_code, api, state=CLOSED, changed_at=time.time()).save()


def hold_open(channel_code: str, api: str, until: float, why: str) -> None:
    """The partner asked us to wait (``Retry-After``): its breaker is open until ``until``, calls refused
    meanwhile, then one probes. Never shortens an open period already longer."""
    now = time.time()
    if _update(PartnerBreaker(channel_code, api),
               [PartnerBreaker.state.set(OPEN), PartnerBreaker.open_until.set(round(until, 3)),
                PartnerBreaker.probe.remove(), PartnerBreaker.probe_until.remove(),
                PartnerBreaker.last_error.set(why[:ERROR_MAX]), PartnerBreaker.changed_at.set(now)],
               PartnerBreaker.open_until.does_not_exist() | (PartnerBreaker.state != OPEN)
               | (PartnerBreaker.open_until < until)):
        logger.info("partner asked us to wait", extra={"channel": channel_code, "api": api, "until": round(until, 3)})


def refused(channel_code: str, api: str, correlation_id: str, now: float | None = None) -> None:
    """Count and log a call the open breaker refused (nothing was sent)."""
    now = time.time() if now is None else now
    logger.info("partner call refused: breaker open", extra={"channel": channel_code, "api": api,
                                                             "correlation_id": correlation_id})
    minute = int(now // 60)
    item = PartnerStats(channel_code, f"{minute:010d}#{api}")
    write_retrying(lambda: item.update(actions=[
        PartnerStats.api.set(api), PartnerStats.refused.add(1),
        PartnerStats.expires_at.set(datetime.fromtimestamp((minute + 1) * 60 + STATS_DAYS * 86400, timezone.utc))]))
    count("PartnerCallsRefused")


# --- the figures --------------------------------------------------------------------------------------

def _rows(channel_code: str, since_epoch: int) -> Iterable[PartnerStats]:
    """The channel's minute items from the minute holding ``since_epoch`` on (one Query, paged)."""
    return PartnerStats.query(channel_code, PartnerStats.minute_api >= f"{int(since_epoch) // 60:010d}")


def _summary(rows: Iterable[PartnerStats]) -> dict[str, Any]:
    totals: Counter = Counter()
    kinds: Counter = Counter()
    latency: Counter = Counter()
    for row in rows:
        for name in ("calls", "errors", "attempts", "refused"):
            totals[name] += int(getattr(row, name) or 0)
        for kind in breaker.KINDS:
            kinds[kind] += int(getattr(row, kind) or 0)
        for i in range(len(breaker.BOUNDS_MS)):
            latency[i] += int(getattr(row, f"h{i:02d}") or 0)
    calls, errors = totals["calls"], totals["errors"]
    return {"calls": calls, "errors": errors, "error_rate": breaker.error_rate(calls, errors),
            "p95_ms": breaker.percentile(latency), "attempts": totals["attempts"], "refused": totals["refused"],
            "by_kind": {k: kinds[k] for k in breaker.KINDS if kinds[k]}}


def stats(channel_code: str, api: str | None, since_epoch: int) -> dict[str, Any]:
    """The channel's calls to ``api`` (every API when None) from the minute holding ``since_epoch`` on:
    ``calls`` (a call's resends are one call), ``errors`` (calls whose last attempt failed: no connection,
    timeout, 5xx, garbage, redirect), ``error_rate``, ``p95_ms`` (per attempt; the upper edge of the
    histogram bucket, None without calls), ``attempts`` (requests sent), ``by_kind`` (attempts by outcome)
    and ``refused`` (calls the open breaker refused: never sent, not in ``calls``)."""
    return _summary(r for r in _rows(channel_code, since_epoch) if api is None or r.api == api)


def _view(item: PartnerBreaker, now: float) -> dict[str, Any]:
    state = state_of(item)
    return {"state": state.state, "failed_since_closed": int(item.failures or 0), "refusing": refuses(state, now),
            "retry_at": breaker.retry_at(state) if state.state != CLOSED else None, "last_error": item.last_error}


def health(channel_code: str, now: float | None = None) -> dict[str, Any]:
    """What ops see of a channel's partner: per API, its breaker and its figures over the last hour and day,
    and the same over every API (two Queries: the breakers, and the day's minutes)."""
    now = time.time() if now is None else now
    hour_from = f"{int(now - 3600) // 60:010d}"
    rows = list(_rows(channel_code, int(now - 86400)))
    breakers = {b.api: b for b in PartnerBreaker.query(channel_code)}
    apis = sorted({r.api for r in rows} | set(breakers))
    closed = {"state": CLOSED, "failed_since_closed": 0, "refusing": False, "retry_at": None, "last_error": None}

    def windows(mine: list[PartnerStats]) -> dict[str, Any]:
        return {"last_hour": _summary(r for r in mine if r.minute_api >= hour_from), "last_day": _summary(mine)}

    return {"channel": channel_code, "at": int(now), **windows(rows),
            "apis": {api: {"breaker": _view(breakers[api], now) if api in breakers else closed,
                           **windows([r for r in rows if r.api == api])} for api in apis}}
