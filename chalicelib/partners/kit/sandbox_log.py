"""What a sandbox channel's integrator has done: each kind of signed call made to us, accepted or refused.

One item per (route, outcome) — ``GET /entry/{code}#accepted``, ``POST /partner/{code}/grants#bad_signature`` —
counted, with when it was last seen: bounded by the routes and the error codes, however many calls an
integrator makes, and read back in one Query. The integration guide ticks its checklist from them.
Only sandbox channels are logged (a live channel's calls are metered, not logged here), and logging
never fails the call it describes.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from chalicelib.channels.models import Channel
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import logger
from chalicelib.partners.models import SandboxCall

ACCEPTED = "accepted"
KEEP_SECONDS = 30 * 86_400  # an item lives this long after the last call like it
ENTRY_ROUTE = "/entry/{code}"


@dataclass(frozen=True)
class Call:
    method: str
    route: str
    outcome: str  # ACCEPTED, or the refusal's error code
    count: int
    last_at: int

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED


@contextmanager
def logged(channel: Channel, method: str, route: str) -> Iterator[None]:
    """Run the checks of a signed call; on a sandbox channel, log whether they passed (or the refusal's code)."""
    if not channel.sandbox:
        yield
        return
    try:
        yield
    except DomainError as refused:
        record(channel.code, method, route, refused.code)
        raise
    record(channel.code, method, route, ACCEPTED)


def record(channel_code: str, method: str, route: str, outcome: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    try:
        SandboxCall(channel_code, f"{method} {route}#{outcome}").update(actions=[
            SandboxCall.count.add(1), SandboxCall.method.set(method), SandboxCall.route.set(route),
            SandboxCall.outcome.set(outcome), SandboxCall.last_at.set(int(now)),
            SandboxCall.expires_at.set(datetime.fromtimestamp(now + KEEP_SECONDS, timezone.utc))])
    except Exception:  # noqa: BLE001 - the call it describes must not fail for its log
        logger.warning("sandbox call not logged", extra={"channel": channel_code, "route": route}, exc_info=True)


def calls(channel_code: str) -> list[Call]:
    """Every kind of call logged for the channel, most recent first."""
    found = [Call(i.method, i.route, i.outcome, int(i.count), int(i.last_at))
             for i in SandboxCall.query(channel_code)]
    return sorted(found, key=lambda c: c.last_at, reverse=True)
