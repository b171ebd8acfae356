"""One local system per test process: Dynoxide, moto (S3, SNS, Step Functions) and the app over real HTTP.

Under ``pytest -n N`` (pytest-xdist) each worker starts its own system on free ports, so workers share
nothing but the read-only checkout; the controlling process, which runs no test, starts none."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.stack import LocalSystem  # noqa: E402

SYSTEM: LocalSystem | None = None
SESSION_ENV: dict[str, str] = {}  # the environment before any test changed it


def _controller(config: pytest.Config) -> bool:
    """The xdist process that hands tests to workers (and runs none itself)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None)) \
        and getattr(config.option, "dist", "no") != "no"


def pytest_configure(config: pytest.Config) -> None:
    """Start before test modules are imported: the app reads its endpoints at import time."""
    global SYSTEM, SESSION_ENV
    if SYSTEM is None and not _controller(config):
        SYSTEM = LocalSystem().start()
        SESSION_ENV = dict(os.environ)


def pytest_unconfigure(config: pytest.Config) -> None:
    if SYSTEM is not None:
        SYSTEM.stop()


@pytest.fixture(scope="session")
def system() -> LocalSystem:
    assert SYSTEM is not None
    return SYSTEM


class Pooled:
    """The worker's system with its app served from worker processes (``LocalSystem.start_workers``), as
    Lambda serves a burst from many instances: for concurrency tests, so a burst measures the app and not
    one interpreter's lock. Nothing patched in this process reaches those workers: a test that patches the
    app uses ``system``."""

    def __init__(self, system: LocalSystem, base_url: str) -> None:
        self._system = system
        self.base_url = base_url

    def __getattr__(self, name: str):
        return getattr(self._system, name)


@contextmanager
def _session_env() -> Iterator[None]:
    """The session's own environment for a while: worker processes started now keep what they inherit for
    good, so a module's monkeypatched setting (test_settlement's shipping seconds) must not reach them."""
    now = dict(os.environ)
    os.environ.clear()
    os.environ.update(SESSION_ENV)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(now)


@pytest.fixture(scope="session")
def pooled(system: LocalSystem) -> Pooled:
    # 96 threads each: a burst of 120 whose held calls wait out their deadline still has every request in flight
    with _session_env():
        return Pooled(system, system.start_workers(processes=2, threads=96))


class Api:
    """A small HTTP client for the running app; ``as_`` picks the caller's credentials."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def __getattr__(self, method: str):
        if method not in ("get", "post", "put", "patch", "delete"):
            raise AttributeError(method)

        def call(path: str, **kwargs):
            kwargs.setdefault("timeout", 30)
            return self.session.request(method.upper(), self.base_url + path, **kwargs)
        return call


@pytest.fixture(scope="session")
def anon(system: LocalSystem) -> Api:
    return Api(system.base_url)


@pytest.fixture(scope="session")
def ops(system: LocalSystem) -> Api:
    return Api(system.base_url, {"Authorization": f"Bearer {system.ops_token}"})


# Modules in the order workers take them (``--dist loadfile --no-loadscope-reorder``); the rest follow in
# file order. A settlement run settles every party the tables hold (every channel and supplier, as in
# production): test_settlement goes first in its worker, while the tables hold only its own parties, so its
# time does not grow with every other test's channels. Then the longest modules, so none starts last.
RUN_FIRST = ("test_settlement.py", "test_quota_concurrency.py", "test_ledger.py", "test_contention.py",
             "test_pricing_guard.py", "test_remote_points.py", "test_wallet_and_grants.py", "test_money_hardening.py",
             "test_partner_reliability.py", "test_idempotency.py", "test_order_lifecycle.py", "test_webhooks.py",
             "test_fuzz.py", "test_cart.py", "test_local_scheduler.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: the rest keep their order
