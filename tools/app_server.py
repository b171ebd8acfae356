"""The app over HTTP from several worker processes, as Lambda gives each request an instance of its own.

One Python process with a thread per connection makes every request of a burst crawl through the same
interpreter lock (1,000 members paying at once held 3,007 threads there and answered none within 120 s).
Here ``processes`` interpreters share one port (``SO_REUSEPORT``: the kernel spreads connections over
them), each serving with at most ``threads`` threads; a keep-alive connection left idle for
``IDLE_SECONDS`` is closed, so idle readers never hold the threads a waiting request needs.

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
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import HTTPServer

from tools.engines import ROOT

IDLE_SECONDS = 5.0
LISTEN_BACKLOG = 1024


class PooledServer(HTTPServer):
    """An HTTP server whose connections are served by a bounded pool of threads (the rest wait, accepted)."""

    request_queue_size = LISTEN_BACKLOG
    threads = 32

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait behind the headers
        super().server_bind()

    def server_activate(self) -> None:
        super().server_activate()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="app")

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a dropped client is the client's business, never the server's
            pass
        finally:
            self.shutdown_request(request)


def serve(port: int, threads: int, ready_fd: int) -> None:
    """One worker: import the app, listen on the shared port, say ``ready``, serve until killed."""
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    import app as app_module
    from tools.stack import as_local_app

    class Handler(ChaliceRequestHandler):
        timeout = IDLE_SECONDS  # an idle keep-alive connection gives its thread back

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
