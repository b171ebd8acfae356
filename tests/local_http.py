"""A real HTTP server on 127.0.0.1 (a free port) in a daemon thread: the base of every fake partner."""
from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # tests fire hundreds of calls at once


class LocalHttpFake:
    """Subclasses answer each request in ``_handle(handler)``; this runs the server around it.

    ``protocol_version`` "HTTP/1.1" keeps connections open between requests (every answer then needs its
    Content-Length); the default closes each after its answer."""

    protocol_version = "HTTP/1.0"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self.tls: ssl.SSLContext | None = None  # set before start() to answer https (handshake on accept)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = fake.protocol_version

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"


class Drip:
    """An answer dripped one byte at a time until ``release()``: each byte comes well within any per-read
    timeout, so only a deadline on the whole call ends it. It never completes on its own (a test that
    hangs before the fix is caught by its own generous wait, then released). ``holding`` counts the requests
    being dripped right now, ``served`` those dripped so far."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.holding = 0
        self.served = 0

    def release(self) -> None:
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        """Read the request, then drip a status line and an endless header until released (the answer then
        ends: 200, no body) or hung up on."""
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self._lock:
            self.holding += 1
            self.served += 1
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            handler.wfile.flush()
            while not self._released.wait(self.every):
                handler.wfile.write(b".")
                handler.wfile.flush()
            handler.wfile.write(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:  # the caller hung up: its deadline passed
            pass
        finally:
            with self._lock:
                self.holding -= 1
            handler.close_connection = True
