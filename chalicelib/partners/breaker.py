"""The rules of a partner call's circuit breaker and of its latency figures, as plain data (no I/O).

One breaker per channel and API (``reliability`` keeps it in DynamoDB, shared by every Lambda):

* **closed** — calls go through. It opens when the partner is (nearly) dead: in this API's figures of the
  current minute, or of the current and the previous minute together (a run of failures across the minute's
  turn), at least ``MIN_FAILURES`` calls failed and they are at least ``OPEN_RATE`` of the calls, and at least
  ``MIN_FAILURES`` calls failed since the breaker last closed (so the failures that opened it before do not
  reopen it on the first new one). Every call adds to the minute's figures anyway: a success costs nothing
  more to judge, only a failure is counted on the breaker. A partner that still answers more than one call
  in four is degraded, not dead: its calls go on and its error rate pages ops instead. A failure is the
  partner not answering usefully: no connection, a timeout, a 5xx, garbage or a redirect. A 4xx is an
  answer (a refused code, an unknown order) and counts as a success.
* **open** — calls are refused at once, without touching the partner, until ``open_until``: one dead
  partner no longer holds every caller for its timeout.
* **half-open** — after ``open_until`` the first caller to claim the probe (a conditional write, so exactly
  one) calls the partner, alone, with a lease; everyone else is still refused. The probe's success closes
  the breaker, its failure opens it for another period. A prober that vanished lets its lease lapse, and
  the next caller probes.

Latency is kept as a small histogram per minute (counts per bucket, atomic adds), from which the p95 is
read back as the upper edge of the bucket holding the 95th percentile: an upper bound, never an
underestimate, at the resolution of the buckets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CALL, PROBE, REFUSE = "call", "probe", "refuse"
MIN_FAILURES = 10
OPEN_RATE = 0.75

# How one attempt ended. Only the failure kinds count towards opening the breaker and the error rate.
OK, CLIENT_ERROR = "ok", "client_error"
TIMEOUT, CONNECT_ERROR, SERVER_ERROR, BAD_RESPONSE = "timeout", "connect_error", "server_error", "bad_response"
FAILURE_KINDS = (TIMEOUT, CONNECT_ERROR, SERVER_ERROR, BAD_RESPONSE)
KINDS = (OK, CLIENT_ERROR, *FAILURE_KINDS)

# Upper edges (ms) of the latency buckets; a call slower than the last edge is counted in the last bucket.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)


@dataclass(frozen=True)
class State:
    """A breaker as stored; an absent item is a closed breaker."""

    state: str = CLOSED
    open_until: float = 0.0  # open: no call before this (Unix seconds)
    probe_until: float = 0.0  # half-open: the probe's lease


def decide(s: State, now: float) -> str:
    """What a caller may do now: ``call``, ``probe`` (claim the single trial call) or ``refuse``."""
    if s.state == CLOSED:
        return CALL
    if s.state == OPEN:
        return PROBE if now >= s.open_until else REFUSE
    return PROBE if now >= s.probe_until else REFUSE  # half-open: only once the probe's lease has lapsed


def retry_at(s: State) -> float:
    """When a refused caller's next probe may start (the open period's end, or the probe's lease)."""
    return s.open_until if s.state == OPEN else s.probe_until


def opens(calls: int, errors: int, failed_since_closed: int) -> bool:
    """Whether a closed breaker opens: this API's calls and failed calls in its window, and the calls that
    failed since it last closed."""
    return failed_since_closed >= MIN_FAILURES and errors >= MIN_FAILURES and errors >= OPEN_RATE * calls


def opened(now: float, open_seconds: float) -> State:
    """A breaker just opened (the partner looks dead, or a probe failed): no call for ``open_seconds``."""
    return State(OPEN, now + open_seconds)


def claimed(s: State, now: float, lease: float) -> State:
    """The breaker while one caller's probe is in flight; its success closes it (``State()``), its failure
    opens it again (``opened``)."""
    return State(HALF_OPEN, s.open_until, now + lease)


def failed(kind: str) -> bool:
    return kind in FAILURE_KINDS


def bucket(millis: float) -> int:
    """The histogram bucket of one call's latency."""
    for i, edge in enumerate(BOUNDS_MS):
        if millis <= edge:
            return i
    return len(BOUNDS_MS) - 1


def percentile(counts: Mapping[int, int], share: float = 0.95) -> int | None:
    """The upper edge (ms) of the bucket holding the ``share`` quantile; None without calls."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank, seen = share * total, 0
    for i in range(len(BOUNDS_MS)):
        seen += counts.get(i, 0)
        if seen >= rank:
            return BOUNDS_MS[i]
    return BOUNDS_MS[-1]


def error_rate(calls: int, errors: int) -> float:
    return round(errors / calls, 4) if calls else 0.0


def rate_alarming(calls: int, errors: int, min_calls: int = 10, threshold: float = 0.2) -> bool:
    """A minute with enough calls to judge and at least ``threshold`` of them failed: worth a page."""
    return calls >= min_calls and errors >= threshold * calls
