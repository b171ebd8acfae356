"""One local system for the whole run: Dynoxide, moto S3 and the app over real HTTP."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.stack import LocalSystem  # noqa: E402

SYSTEM: LocalSystem | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Start before test modules are imported: the app reads its endpoints at import time."""
    global SYSTEM
    if SYSTEM is None and not hasattr(config, "workerinput"):
        SYSTEM = LocalSystem().start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if SYSTEM is not None:
        SYSTEM.stop()


@pytest.fixture(scope="session")
def system() -> LocalSystem:
    assert SYSTEM is not None
    return SYSTEM


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
