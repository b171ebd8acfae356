"""HTTPS to an address that was checked, with the certificate still verified for the host's name, and every
call cut off at a total deadline.

A call to a channel goes to the IP literal ``endpoints`` checked (so a second DNS lookup can never
lead it elsewhere) with the ``Host`` header naming the channel's host. Over https this adapter makes
TLS send that name as SNI and verify the certificate against it, as it would for a URL with the name.

``requests``' timeouts bound each socket operation, not the call: a back end that trickles a byte every
few seconds never trips them and holds the caller (a sweep, every channel after it) for as long as it
likes. ``post`` therefore runs each call under a watchdog: when the deadline passes, the sockets the call
uses are shut down, the blocked read returns at once, and the call fails as a timeout (``DeadlineExceeded``).
Imported only where a channel is called (``requests`` is not needed before).
"""
from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The call had no complete answer within its total deadline (a ``requests.Timeout``, so every caller
    that handles a timeout handles this one)."""


class _Watch:
    """The connections one call uses, and whether its deadline has passed; shared with the watchdog thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self.expired = False

    def add(self, connection: HTTPConnection) -> None:
        """Watch a connection the call is about to use; one joining after the deadline is shut at once."""
        with self._lock:
            if connection not in self._connections:
                self._connections.append(connection)
            if self.expired:
                _shut(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    """Shut the socket down both ways: a read blocked on it in another thread returns (end of stream) now."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


_current = threading.local()


class _Watched:
    """A connection that joins the calling thread's watch whenever it connects or sends a request (a pooled
    connection is reused by later calls: each of them watches it anew)."""

    def connect(self) -> None:
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(self)  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]
        if watch is not None:
            watch.add(self)  # type: ignore[arg-type]  # the socket now exists: shut it if the deadline passed

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.add(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class PinnedHostAdapter(HTTPAdapter):
    """Connect to the host in the URL; for TLS (SNI and certificate check) use the ``Host`` header's name.
    Its connections are watched (``post``'s deadline)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = urlsplit("//" + request.headers.get("Host", "")).hostname
        if host_params["scheme"] == "https" and name:
            # ``server_hostname`` alone: the ssl module then checks the certificate for this name itself
            # (``assert_hostname`` would switch that off on the shared default context).
            pool_kwargs["server_hostname"] = name  # part of urllib3's pool key: one pool per address and name
        return host_params, pool_kwargs


_session: requests.Session | None = None


def session() -> requests.Session:
    """One pooled session per container for every call to a channel (its API and its webhooks)."""
    global _session
    if _session is None:
        _session = requests.Session()
        _session.mount("https://", PinnedHostAdapter())
        _session.mount("http://", PinnedHostAdapter())
    return _session


def post(url: str, deadline: float, **kwargs: Any) -> requests.Response:
    """``session().post(url, **kwargs)`` (answer read whole), failing with ``DeadlineExceeded`` once
    ``deadline`` seconds have passed, however the peer drips its answer. ``kwargs['timeout']`` still bounds
    each socket operation (a silent peer fails sooner)."""
    if deadline <= 0:
        raise DeadlineExceeded("no time left for the call")
    watch = _Watch()
    timer = threading.Timer(deadline, watch.expire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    try:
        response = session().post(url, **kwargs)
    except Exception:  # noqa: BLE001 - whatever the shut socket raised, the cause is the deadline
        if watch.expired:
            raise DeadlineExceeded(f"no complete answer within {deadline:g} s") from None
        raise
    else:
        if watch.expired:  # the shutdown ended the answer early: what was read may be cut anywhere
            raise DeadlineExceeded(f"no complete answer within {deadline:g} s")
        return response
    finally:
        timer.cancel()
        _current.watch = None
