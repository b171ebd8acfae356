"""Calls to a channel's back end: signed per the contract (version 2: method and path bound),
with the secret the rotation rule picks, only to allowed addresses (connecting to exactly the address
that was checked, TLS still verified for the host's name), never following a redirect,
with a timeout, bounded retries with backoff, and a log line and metrics per channel for every call."""
from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from chalicelib.channels import channels
from chalicelib.channels.signing import request_headers
from chalicelib.core.errors import DomainError
from chalicelib.core.models import Channel, backoff
from chalicelib.core.observability import logger
from chalicelib.partners import endpoints

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
ATTEMPTS = 3
BACKOFF = 0.2
RETRY_STATUSES = {502, 503, 504}


class PartnerError(DomainError):
    status = 502


class EntryRejected(DomainError):
    status = 401


def _http():
    """The shared pinned session, imported on the first call (``requests`` is not needed before)."""
    from chalicelib.partners.pinned_http import session

    return session()


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


def _measure(channel: Channel, api: str, outcome: str, millis: float) -> None:
    for name, unit, value in (("PartnerCalls", MetricUnit.Count, 1), ("PartnerLatency", MetricUnit.Milliseconds, millis)):
        with single_metric(name=name, unit=unit, value=value, namespace="ChannelMall") as metric:
            metric.add_dimension(name="channel", value=channel.code)
            metric.add_dimension(name="outcome", value=outcome)
    logger.info("partner call", extra={"channel": channel.code, "api": api, "outcome": outcome,
                                       "ms": round(millis, 1)})


def call(channel: Channel, api: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload`` to ``{api_base_url}/{api}``, signed over ``POST``, ``/{api}`` and the body's hash."""
    import requests

    path = f"/{api}"
    base, host = _destination(channel)
    url = base + path
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    secret = channels.outbound_secret(channel)
    last = "unavailable"
    for attempt in range(ATTEMPTS):
        headers = {"Host": host, "Content-Type": "application/json", **request_headers("POST", path, body, secret)}
        started = time.perf_counter()
        try:
            # Never follow a redirect: a member's password must reach only the registered back end.
            response = _http().post(url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                    allow_redirects=False)
        except requests.ConnectionError:
            _measure(channel, api, "connect_error", (time.perf_counter() - started) * 1000)
            last = "unavailable"
        except requests.Timeout:
            _measure(channel, api, "timeout", (time.perf_counter() - started) * 1000)
            raise PartnerError("channel_api_timeout", f"channel {channel.code} did not answer in time") from None
        else:
            millis = (time.perf_counter() - started) * 1000
            if 300 <= response.status_code < 400:
                _measure(channel, api, f"http_{response.status_code}", millis)
                raise PartnerError("channel_api_redirected",
                                   f"channel {channel.code}'s API answered a redirect ({response.status_code})")
            if response.status_code in RETRY_STATUSES:
                _measure(channel, api, f"http_{response.status_code}", millis)
                last = f"answered {response.status_code}"
            else:
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    _measure(channel, api, "bad_response", millis)
                    raise PartnerError("channel_api_bad_response", f"channel {channel.code} answered garbage")
                _measure(channel, api, "ok" if response.ok else f"http_{response.status_code}", millis)
                data["_status"] = response.status_code
                return data
        if attempt + 1 < ATTEMPTS:
            backoff(attempt, BACKOFF, 2.0)
    raise PartnerError("channel_api_unavailable", f"channel {channel.code}'s API is unavailable ({last})")


def exchange_code(channel: Channel, code: str) -> dict[str, Any]:
    """A one-time entry code → the member's identity, through the channel's member API."""
    data = call(channel, "member/exchange", {"code": code})
    if data["_status"] >= 500:
        # The channel failed, not the member's code: never report its outage as a rejected code.
        raise PartnerError("channel_api_unavailable", f"channel {channel.code}'s API failed ({data['_status']})")
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


