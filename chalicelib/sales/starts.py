"""A flash sale's paid orders reach fulfilment through a buffer, at a rate the account's Step Functions quota holds.

A sale sells its units in a second or two; starting every paid order's ``order_fulfilment`` execution from the
request that paid it would ask for thousands of ``StartExecution`` per second, against a refill of a few hundred
(``bench/capacity.py``). So a sale order's checkout starts nothing: the order is already on the sparse
``unsplit-index`` (written by the transaction that paid it, no extra write), and that index is the buffer. The
minutely ``sale_sweep`` drains it for the channels with a sale running or just ended, starting sale orders at
most ``START_RATE`` per second (``paced``); the resolver's five-minute sweep stays the backstop for anything left.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from chalicelib.channels import channels
from chalicelib.orders.models import Order
from chalicelib.core.observability import count, logger
from chalicelib.orders import fulfilment
from chalicelib.orders.orders import lines_of
from chalicelib.sales.models import Sale

START_RATE = 200  # starts per second: under the 300/s refill of us-east-1's StartExecution (150/s elsewhere: set lower)
DRAIN_SECONDS = 50  # of the minutely run's time: the next run takes over what is left
RECENT_SECONDS = 3600  # channels whose sale ended less than this ago are still drained


def buffered(order: Order) -> bool:
    """A sale order: its fulfilment starts from the buffer, not from the request that paid it."""
    return any(line.get("sale_id") for line in lines_of(order))


def paced(items: Iterable, rate: float, budget: float, act: Callable, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """``act`` on each item, at most ``rate`` a second, for at most ``budget`` seconds; how many were acted on."""
    began, done = clock(), 0
    for item in items:
        due = began + done / rate
        if due - began >= budget:
            break
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        act(item)
        done += 1
    return done


def channels_selling(now: float) -> list[str]:
    """Channels with a sale that has started and ended less than ``RECENT_SECONDS`` ago (or runs)."""
    return sorted({s.channel_code for s in Sale.scan()
                   if int(s.starts_at) <= now and int(s.ends_at) > now - RECENT_SECONDS})


def drain(now: float | None = None, rate: float = START_RATE, budget: float = DRAIN_SECONDS) -> dict[str, int]:
    """Start the buffered sale orders of every selling channel, paced; how many per channel."""
    now = time.time() if now is None else now
    started: dict[str, int] = {}
    spent = 0.0
    for code in channels_selling(now):
        channel = channels.get(code)
        waiting = (o for o in Order.unsplit_index.query(code) if buffered(o))
        began = time.monotonic()
        n = paced(waiting, rate, budget - spent, lambda order: fulfilment.start(order, channel))
        spent += time.monotonic() - began
        if n:
            started[code] = n
            count("SaleOrdersStarted", n)
    if started:
        logger.info("sale orders started from the buffer", extra={"started": started})
    return started
