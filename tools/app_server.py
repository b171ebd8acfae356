"""The app over HTTP from several worker processes, as Lambda gives each request an instance of its own.

One Python process with a thread per connection makes every request of a burst crawl through the same
interpreter lock (1,000 members paying at once held 3,007 threads there and answered none within 120 s).
Here ``processes`` interpreters share one port (``SO_REUSEPORT``: the kernel spreads connections over
them), each serving requests with at most ``threads`` threads; an open connection between two requests
holds no thread (``PooledServer``).

Run by ``tools.stack.LocalSystem`` (``processes``): ``python -m tools.app_server PORT THREADS FD`` with the
system's environment; each child writes ``ready`` to the pipe ``FD`` once it listens (its stdout carries the
app's logs, kept in ``.local/app-<port>.log``).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import select
import selectors
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import HTTPServer
from socketserver import StreamRequestHandler

from tools.engines import ROOT
from tools.local_server import LISTEN_BACKLOG, as_local_app

IDLE_SECONDS = 30.0


class PooledServer(HTTPServer):
    """An HTTP server whose requests are served by a bounded pool of threads.

    A thread serves one request and hands the connection back: between requests, a keep-alive connection
    waits in one selector (``_watch``), holding no thread, and goes back to the pool when its next request
    arrives; one idle for ``IDLE_SECONDS`` is closed. So a thousand open connections need no thousand
    threads, and no waiting request stands behind an idle one."""

    request_queue_size = LISTEN_BACKLOG
    threads = 32

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait behind the headers
        super().server_bind()

    def server_activate(self) -> None:
        super().server_activate()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="app")
        self._idle = selectors.DefaultSelector()
        self._since: dict[int, float] = {}
        self._lock = threading.Lock()  # the selector's map is changed by the pool's threads and read here
        threading.Thread(target=self._watch, name="idle-connections", daemon=True).start()

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._first, request, client_address)

    def _first(self, request, client_address) -> None:
        try:
            handler = self.RequestHandlerClass(request, client_address, self)  # serves the first request
        except Exception:  # noqa: BLE001 - a client gone mid-request is its own business
            self.shutdown_request(request)
            return
        self._after(handler)

    def _next(self, handler) -> None:
        try:
            handler.handle()
        except Exception:  # noqa: BLE001
            handler.close_connection = True
        self._after(handler)

    def _after(self, handler) -> None:
        if handler.close_connection:
            self._close(handler)
            return
        with self._lock:
            self._since[handler.connection.fileno()] = time.monotonic()
            self._idle.register(handler.connection, selectors.EVENT_READ, handler)

    def _close(self, handler) -> None:
        with self._lock:
            self._since.pop(handler.connection.fileno(), None)
        try:
            StreamRequestHandler.finish(handler)
        except OSError:
            pass
        self.shutdown_request(handler.connection)

    def _watch(self) -> None:
        while True:
            ready = self._idle.select(timeout=1.0)
            now = time.monotonic()
            with self._lock:
                for key, _ in ready:
                    self._idle.unregister(key.fileobj)
                    self._pool.submit(self._next, key.data)
                stale = [key for key in self._idle.get_map().values()
                         if now - self._since.get(key.fd, now) > IDLE_SECONDS]
                for key in stale:
                    self._idle.unregister(key.fileobj)
            for key in stale:
                self._close(key.data)


def _die_with_parent() -> None:
    """Linux ``PR_SET_PDEATHSIG``: the worker ends when the process that started it does, however it ended."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent was already gone before the call
        sys.exit(0)


def serve(port: int, threads: int, ready_fd: int) -> None:
    """One worker: import the app, listen on the shared port, say ``ready``, serve until killed."""
    _die_with_parent()
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    import app as app_module

    class Handler(ChaliceRequestHandler):
        """One request per call of ``handle``; the connection stays open for the next (``PooledServer``)."""

        timeout = IDLE_SECONDS  # a request that stops arriving half-way gives its thread back

        def handle(self) -> None:
            self.close_connection = True
            self.handle_one_request()

        def finish(self) -> None:
            self.wfile.flush()  # the files stay open: the server closes them with the connection

        def log_message(self, *args) -> None:
            pass

    server_cls = type("Server", (PooledServer,), {"threads": threads})
    local = LocalDevServer(as_local_app(app_module.app), Config.create(chalice_stage="local", app_name="channel-mall"),
                           "127.0.0.1", port, handler_cls=Handler, server_cls=server_cls)
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    local.server.serve_forever()


class WorkerPool:
    """``processes`` app servers on one port, started with ``env`` and stopped together."""

    def __init__(self, port: int, processes: int, threads: int, env: dict[str, str]) -> None:
        self.port, self.processes, self.threads, self.env = port, processes, threads, env
        self._children: list[subprocess.Popen] = []

    def start(self, timeout: float = 60.0) -> "WorkerPool":
        env = dict(os.environ, **self.env)
        (ROOT / ".local").mkdir(exist_ok=True)
        read_end, write_end = os.pipe()
        with open(ROOT / ".local" / f"app-{self.port}.log", "ab") as log:
            for _ in range(self.processes):
                self._children.append(subprocess.Popen(
                    [sys.executable, "-m", "tools.app_server", str(self.port), str(self.threads), str(write_end)],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_end,)))
        os.close(write_end)
        deadline = time.monotonic() + timeout
        try:
            for _ in self._children:  # one byte from each child once it listens
                ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
                if not ready or not os.read(read_end, 1):
                    self.stop()
                    raise RuntimeError(f"the app workers did not all start within {timeout}s (see .local/app-*.log)")
        finally:
            os.close(read_end)
        return self

    def stop(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._children = []


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
