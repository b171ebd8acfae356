"""A browser that drops a connection mid-answer leaves no traceback on the console (issue 15, item 6).

``socketserver`` prints a traceback for any exception a request raised, a ``BrokenPipeError`` or
``ConnectionResetError`` from a client that closed the page included; the local servers (the in-process
app and the function URL door on ``BurstServer``, the reference channel back end) stay quiet about those
and still report anything else."""
from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from tools.reference_channel import ReferenceChannel
from tools.local_server import BurstServer

BIG = b"x" * 65536


def _drop(port: int, path: str) -> None:
    """Ask, then reset the connection without reading the answer (SO_LINGER 0: an RST, as a killed tab)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _closed_events(server) -> threading.Event:
    """Set once the server closed a request's connection: after its ``handle_error``, if one ran."""
    closed = threading.Event()
    close = server.shutdown_request

    def shutdown_request(request) -> None:
        close(request)
        closed.set()

    server.shutdown_request = shutdown_request
    return closed


def test_burst_server_is_quiet_when_the_client_goes_away(capfd):

    class Big(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.end_headers()
            for _ in range(256):  # 16 MB: more than the socket buffers hold once the client is gone
                self.wfile.write(BIG)

        def log_message(self, *args) -> None:
            pass

    server = BurstServer(("127.0.0.1", 0), Big)
    closed = _closed_events(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _drop(server.server_address[1], "/big")
        assert closed.wait(30)
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err


@pytest.mark.parametrize("error", [ValueError("a real bug")])
def test_burst_server_still_reports_other_errors(capfd, error):
    done = threading.Event()

    class Broken(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            done.set()
            raise error

        def log_message(self, *args) -> None:
            pass

    server = BurstServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.recv(1)  # the server closes the connection after the error was handled
    finally:
        server.shutdown()
        server.server_close()
    assert done.is_set() and "a real bug" in capfd.readouterr().err


def test_reference_back_end_is_quiet_when_the_browser_goes_away(capfd, monkeypatch):
    reference = ReferenceChannel("http://127.0.0.1:1").start()
    closed = _closed_events(reference._server)
    page = reference.page
    # Its page, as long as a back end with many webhooks would make it.
    monkeypatch.setattr(reference, "page", lambda: page() + "x" * (16 << 20))
    try:
        _drop(int(reference.url.rsplit(":", 1)[1]), "/")
        assert closed.wait(30)
    finally:
        reference.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err
