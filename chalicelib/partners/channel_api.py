"""Calls to a channel's back end: signed per the contract (version 2: method and path bound),
with the secret the rotation rule picks, only to allowed addresses (connecting to exactly the address
that was checked, TLS still verified for the host's name), never following a redirect.

Reliability (``reliability``, rules in ``breaker``): each call passes the channel's circuit breaker for
that API (refused at once while it is open: ``partner_unavailable``, 503), ends within a total deadline
(connect + read timeout, resends included, however slowly the channel drips its answer; not started when
it would outlast a sweep's budget for the channel), waits at most the channel's own
timeout (``api_timeout_seconds``) for each read, carries a correlation id (``X-Correlation-Id``, logged, and in our
error when the call fails) and is counted per channel and API. A request is sent again, after a backoff
with full jitter, only when that cannot do anything twice: it never reached the channel (no connection,
or a 503, which says the request was not processed), or the API is idempotent by contract (deduct, query,
cancel, refund and its query, keyed by our ids) and the failure was a 502 or 504 or a dropped
connection. A read timeout is never repeated (the caller's query resolves it); a probe is one attempt."""
from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from chalicelib.channels import channels, endpoints
from chalicelib.channels.models import Channel
from chalicelib.channels.signing import request_headers
from chalicelib.core import budget
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import logger
from chalicelib.core.tx import backoff
from chalicelib.partners import breaker, reliability

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0  # unless the channel sets its own (``api_timeout_seconds``, 0.5 to 10 s)
ATTEMPTS = 3
BACKOFF = 0.2
NOT_PROCESSED_STATUSES = {503}
AMBIGUOUS_STATUSES = {502, 504}
# Idempotent by contract: keyed by our order or refund id, or a read; a repeat changes nothing.
IDEMPOTENT = frozenset({"points/deduct", "points/query", "points/cancel", "points/refund", "points/refund/query"})
CORRELATION_HEADER = "X-Correlation-Id"
PROBE_LEASE_MARGIN = 5.0  # a probe's claim outlives its longest call by this much


class PartnerError(DomainError):
    """The channel's API failed us; ``correlation_id`` (also in the error body) is the call's id, which the
    channel finds in its own logs under ``X-Correlation-Id``."""

    status = 502

    def __init__(self, code: str, message: str, field: str | None = None, *, correlation_id: str | None = None
                 ) -> None:
        super().__init__(code, message, field)
        self.correlation_id = correlation_id

    def body(self) -> dict:
        body = super().body()
        if self.correlation_id:
            body["error"]["correlation_id"] = self.correlation_id
        return body


class PartnerUnavailable(PartnerError):
    """The channel's API failed repeatedly and its breaker is open: refused at once, nothing sent."""

    status = 503


class EntryRejected(DomainError):
    status = 401


def _post(url: str, deadline: float, **kwargs: Any):
    """A POST through the shared pinned session under a total deadline (``pinned_http``, imported on the first
    call: ``requests`` is not needed before)."""
    from chalicelib.partners import pinned_http

    return pinned_http.post(url, deadline, **kwargs)


def _destination(channel: Channel) -> tuple[str, str]:
    """The channel's base URL pinned to an address that passed the address rules right now (see
    ``endpoints``), and the ``Host`` header to send with it."""
    if not channel.api_base_url:
        raise PartnerError("channel_api_not_configured", f"channel {channel.code} has no API base URL")
    base = channel.api_base_url.rstrip("/")
    try:
        endpoints.check_base_url(base)
        addresses = endpoints.resolve(base)
    except DomainError as error:  # a URL stored before the rules (or written behind the API) is refused here too
        code = "channel_api_address_refused" if error.code == "private_api_base_url" else "channel_api_url_refused"
        raise PartnerError(code, f"channel {channel.code}'s API base URL is not allowed ({error.code})") from None
    except OSError:
        raise PartnerError("channel_api_unavailable", f"channel {channel.code}'s API host does not resolve") from None
    refused = endpoints.refused_addresses(addresses)
    if refused:
        logger.warning("partner address refused", extra={"channel": channel.code, "addresses": refused})
        raise PartnerError("channel_api_address_refused",
                           f"channel {channel.code}'s API host resolves to a non-public address")
    return endpoints.pinned(base, addresses[0])


def timeouts(channel: Channel) -> tuple[float, float]:
    """(connect, read) seconds for a call to the channel: its own ``api_timeout_seconds``, or the default."""
    read = float(channel.api_timeout_seconds or READ_TIMEOUT)
    return min(CONNECT_TIMEOUT, read), read


def _not_sent(error: Exception) -> bool:
    """Whether a connection error came before the request could reach the channel: the connection was refused
    or timed out (urllib3's ``NewConnectionError`` is a ``ConnectTimeoutError``), not dropped after sending."""
    from urllib3.exceptions import ConnectTimeoutError

    return isinstance(getattr(error.args[0], "reason", None) if error.args else None, ConnectTimeoutError)


def _measure(channel: Channel, permit: reliability.Permit, kind: str, outcome: str, started: float,
             attempt: int) -> None:
    millis = (time.perf_counter() - started) * 1000
    permit.attempt(kind, millis, outcome)
    for name, unit, value in (("PartnerCalls", MetricUnit.Count, 1), ("PartnerLatency", MetricUnit.Milliseconds, millis)):
        with single_metric(name=name, unit=unit, value=value, namespace="ChannelMall") as metric:
            metric.add_dimension(name="channel", value=channel.code)
            metric.add_dimension(name="outcome", value=outcome)
    logger.info("partner call", extra={"channel": channel.code, "api": permit.api, "outcome": outcome,
                                       "ms": round(millis, 1), "attempt": attempt + 1, "probe": permit.probe,
                                       "correlation_id": permit.correlation_id})


def call(channel: Channel, api: str, payload: dict[str, Any], breaker_state: breaker.State | None = None,
         deferred: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """POST ``payload`` to ``{api_base_url}/{api}``, signed over ``POST``, ``/{api}`` and the body's hash.
    ``breaker_state``: the API's breaker as the caller just read it (else it is read here); ``deferred``: where
    a successful call's figures go for the caller to write with its own record (``Permit.finish``).

    Returns the channel's JSON object answer (2xx or 4xx: an answer) with ``_status`` and ``_correlation_id``
    added; raises ``PartnerError`` when there was none (no connection, timeout, 5xx, garbage, redirect)
    and ``PartnerUnavailable`` when the breaker refused the call."""
    path = f"/{api}"
    base, host = _destination(channel)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    secret = channels.outbound_secret(channel)
    limits = timeouts(channel)
    deadline = sum(limits)
    if not budget.fits(deadline):  # a sweep's budget for this channel is spent: nothing sent, next round
        raise PartnerError("channel_api_deferred", f"no time left in this round for channel {channel.code}")
    try:
        permit = reliability.admit(channel.code, api, lease=deadline + PROBE_LEASE_MARGIN, state=breaker_state)
    except reliability.BreakerOpen as refused:
        raise _unavailable(channel, api, refused.correlation_id, refused.retry_at) from None
    try:
        return _send(channel, permit, base + path, host, path, body, secret, limits, time.monotonic() + deadline)
    finally:
        permit.finish(deferred)


def _send(channel: Channel, permit: reliability.Permit, url: str, host: str, path: str, body: bytes, secret: str,
          limits: tuple[float, float], ends: float) -> dict[str, Any]:
    """The call's attempts, all ending by ``ends`` (``time.monotonic()``): a resend starts only while time is
    left."""
    import requests

    api, correlation_id = permit.api, permit.correlation_id
    attempts = 1 if permit.probe else ATTEMPTS
    why = "no answer"
    for attempt in range(attempts):
        headers = {"Host": host, "Content-Type": "application/json", CORRELATION_HEADER: correlation_id,
                   **request_headers("POST", path, body, secret)}
        started = time.perf_counter()
        try:
            # Never follow a redirect: a member's password must reach only the registered back end.
            response = _post(url, ends - time.monotonic(), data=body, headers=headers, timeout=limits,
                             allow_redirects=False)
        except requests.ConnectionError as error:  # ConnectTimeout included: it never connected
            _measure(channel, permit, breaker.CONNECT_ERROR, "connect_error", started, attempt)
            why, again = "no connection", _not_sent(error) or api in IDEMPOTENT
        except requests.Timeout:
            _measure(channel, permit, breaker.TIMEOUT, "timeout", started, attempt)
            raise PartnerError("channel_api_timeout", f"channel {channel.code} did not answer in time",
                               correlation_id=correlation_id) from None
        else:
            status = response.status_code
            if 300 <= status < 400:
                _measure(channel, permit, breaker.BAD_RESPONSE, f"http_{status}", started, attempt)
                raise PartnerError("channel_api_redirected",
                                   f"channel {channel.code}'s API answered a redirect ({status})",
                                   correlation_id=correlation_id)
            if status >= 500:
                _measure(channel, permit, breaker.SERVER_ERROR, f"http_{status}", started, attempt)
                why = f"answered {status}"
                again = status in NOT_PROCESSED_STATUSES or (status in AMBIGUOUS_STATUSES and api in IDEMPOTENT)
            else:
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    _measure(channel, permit, breaker.BAD_RESPONSE, "bad_response", started, attempt)
                    raise PartnerError("channel_api_bad_response", f"channel {channel.code} answered garbage",
                                       correlation_id=correlation_id)
                _measure(channel, permit, breaker.OK if response.ok else breaker.CLIENT_ERROR,
                         "ok" if response.ok else f"http_{status}", started, attempt)
                data["_status"], data["_correlation_id"] = status, correlation_id
                return data
        if not again or attempt + 1 >= attempts:
            break
        backoff(attempt, BACKOFF, 2.0)
        if time.monotonic() >= ends:
            break
    raise PartnerError("channel_api_unavailable", f"channel {channel.code}'s API is unavailable ({why})",
                       correlation_id=correlation_id)


def refuse_if_open(channel: Channel, api: str, state: breaker.State) -> None:
    """For a caller that read the breaker itself (checkout, in its one batch read, before reserving anything):
    refuse now, as ``call`` would, while the breaker is open."""
    if reliability.refuses(state):
        correlation_id = reliability.new_correlation_id()
        reliability.refused(channel.code, api, correlation_id)
        raise _unavailable(channel, api, correlation_id, breaker.retry_at(state))


def _unavailable(channel: Channel, api: str, correlation_id: str, retry_at: float | None) -> PartnerUnavailable:
    wait = max(1, round(retry_at - time.time())) if retry_at else None
    return PartnerUnavailable("partner_unavailable", f"channel {channel.code}'s {api} API keeps failing: calls to it "
                              f"are paused{f' (next try in {wait} s)' if wait else ''}", correlation_id=correlation_id)


def exchange_code(channel: Channel, code: str) -> dict[str, Any]:
    """A one-time entry code → the member's identity, through the channel's member API."""
    data = call(channel, "member/exchange", {"code": code})  # its outage raises: never a rejected code
    if data["_status"] >= 400:
        raise EntryRejected("entry_code_rejected", f"channel {channel.code} rejected the entry code")
    member_id = data.get("member_id")
    if not isinstance(member_id, str) or not member_id:
        raise PartnerError("channel_api_bad_response", f"channel {channel.code} answered without member_id")
    points = data.get("points")
    if any(data.get(k) is not None and not isinstance(data.get(k), str) for k in ("nickname", "mobile")) or not (
            points is None or (isinstance(points, int) and not isinstance(points, bool))
            or (isinstance(points, str) and points.isdigit())):
        raise PartnerError("channel_api_bad_response", f"channel {channel.code} answered a malformed identity")
    return data


