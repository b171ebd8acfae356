"""A short-lived in-function cache for the checkout path's hot reads (issue 14).

At 10,000 checkout attempts per second on one sale, every attempt reading the channel, its sub-pool item,
the goods and the partner breakers by key would read each of those single items 10,000 times a second: far
over the 3,000 read units one partition serves. Each function instance keeps what it read for at most
``BOUND`` seconds instead, so an item is read at most once per instance per bound.

Only reads whose staleness a write condition or a later strong read catches come from here: the
channel (suspension and a new period are the quota shards' own ``selling`` flag, read strongly and
conditioned in the transaction; a stale pricing version fails the shards' condition and is read again
bypassing this cache), sub-pool items (cached per pricing version: a re-price raises the version, so a
stale one is never used with the shards it no longer matches), goods and ``Stock`` items (price and
approval are conditions on the ``Stock`` item of every line that takes stock), and breakers (advisory).
What is left to the bound: a flash-sale line takes no ``Stock``, so goods delisted while a sale runs stop
selling within ``BOUND`` seconds (``tests/test_flash_sale_capacity.py``).

``BOUND`` comes from ``CHECKOUT_CACHE_SECONDS`` (1 s in a deployed stage; 0 on the local stack unless set,
so a test that changes a channel and checks at once sees the change at once, as before).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Hashable

from chalicelib.core import config

BOUND: float = float(os.environ.get("CHECKOUT_CACHE_SECONDS", "0" if config.IS_LOCAL else "1"))
_entries: dict[Hashable, tuple[float, Any]] = {}
_lock = threading.Lock()
MAX_ENTRIES = 10_000  # a bound on memory: past it the oldest half goes


def get(key: Hashable) -> tuple[bool, Any]:
    """(hit, value): a value stored less than ``BOUND`` seconds ago."""
    if BOUND <= 0:
        return False, None
    found = _entries.get(key)
    if found is None or time.monotonic() - found[0] >= BOUND:
        return False, None
    return True, found[1]


def put(key: Hashable, value: Any) -> None:
    if BOUND <= 0:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            for old in sorted(_entries, key=lambda k: _entries[k][0])[: MAX_ENTRIES // 2]:
                del _entries[old]
        _entries[key] = (time.monotonic(), value)


def forget(key: Hashable) -> None:
    _entries.pop(key, None)


def cached(key: Hashable, load: Callable[[], Any]) -> Any:
    hit, value = get(key)
    if hit:
        return value
    value = load()
    put(key, value)
    return value


def _item_key(model: type, item: Any) -> tuple:
    """An item's key as ``batch_read`` takes it: (hash,) or (hash, range)."""
    attrs = [model._hash_key_attribute(), model._range_key_attribute()]
    return tuple(getattr(item, a.attr_name) for a in attrs if a is not None)


def read_through(keys: dict[type, list[tuple]], tag: Callable[[type], Hashable],
                 read: Callable[[dict[type, list[tuple]]], dict[type, list]]) -> dict[type, list]:
    """Items of ``keys`` (model → keys) from this cache where fresh, the rest through ``read`` (one batch read)
    and kept; an absent item is kept as absent too. ``tag(model)`` joins the cache key (e.g. a pricing version)."""
    found: dict[type, list] = {model: [] for model in keys}
    missing: dict[type, list[tuple]] = {}
    for model, wanted in keys.items():
        for key in wanted:
            hit, item = get((model.__name__, tag(model), *key))
            if not hit:
                missing.setdefault(model, []).append(key)
            elif item is not None:
                found[model].append(item)
    if not missing:
        return found
    fresh = read(missing)
    for model, wanted in missing.items():
        by_key = {_item_key(model, item): item for item in fresh.get(model, [])}
        for key in wanted:
            put((model.__name__, tag(model), *key), by_key.get(tuple(key)))
        found[model] += list(by_key.values())
    return found
