"""The local server takes a burst of new connections: none is reset before the app sees its request.

Python's ``socketserver`` listens with a backlog of 5; 40 clients connecting at once then got
``ConnectionResetError`` for about a third of them. Each client here opens its own new TCP connection,
all released together, and must get an HTTP answer.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from helpers import race

CLIENTS = 200


def test_a_burst_of_new_connections_is_all_answered(system):
    address = urlsplit(system.base_url)
    host, port = address.hostname, address.port

    def client(i: int) -> str:
        try:
            with socket.create_connection((host, port), timeout=60) as conn:
                conn.sendall(f"GET /store/burst-{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                answer = b""
                while chunk := conn.recv(65536):  # to the end, so the server never writes to a closed socket
                    answer += chunk
                return answer[:64].decode(errors="replace")
        except OSError as exc:
            return repr(exc)

    answers = race(CLIENTS, client)
    failed = [a for a in answers if not a.startswith("HTTP/1.")]
    assert not failed, f"{len(failed)} of {CLIENTS} not answered, e.g. {failed[:3]}"
