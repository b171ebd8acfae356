"""A time budget for the calls made inside it: a scheduled sweep gives each channel its own (``within``), and a
call to a channel's back end starts only if its whole deadline fits in what is left (``fits``), so a slow channel
spends only its own budget and the sweep ends in time for whatever comes after it. (Cutting a call short instead
would count our hurry as the partner's timeout.)"""
from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from typing import Iterator

_until: contextvars.ContextVar[float | None] = contextvars.ContextVar("partner_call_budget", default=None)


@contextmanager
def within(until: float) -> Iterator[None]:
    """Calls made inside end by ``until`` (``time.monotonic()``): a sweep's budget for one channel."""
    token = _until.set(until)
    try:
        yield
    finally:
        _until.reset(token)


def fits(seconds: float) -> bool:
    """Whether a call whose total deadline is ``seconds`` ends within the budget (always, outside one)."""
    until = _until.get()
    return until is None or time.monotonic() + seconds <= until
