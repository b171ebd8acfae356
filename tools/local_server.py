"""How the local stack serves HTTP: Chalice's threaded server with a backlog that takes a burst, and the app as
``chalice local`` serves it. Below ``stack``, ``door`` and ``app_server``, which all serve through it (so none of
them imports another for it)."""
from __future__ import annotations

import socket

from chalice import Chalice
from chalice.config import Config
from chalice.local import CustomLocalChalice, LocalChalice, LocalDevServer, ThreadedHTTPServer


# Connections the kernel may hold before the server accepts them. Python's default is 5: a burst of 40
# clients opening connections at once then sees resets for a third of them before the app is reached.
LISTEN_BACKLOG = 1024


class BurstServer(ThreadedHTTPServer):
    """Chalice's threaded local server, listening with a backlog that takes a burst of clients."""

    request_queue_size = LISTEN_BACKLOG

    def server_bind(self) -> None:
        # Accepted sockets inherit this: without it, keep-alive clients wait ~40 ms per response
        # (Nagle holding the body behind the headers until the client's delayed ACK).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def as_local_app(app: Chalice) -> Chalice:
    """The app as ``chalice local`` serves it (what ``create_local_server`` does, once per app object)."""
    if not isinstance(app, CustomLocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    return app


def local_server(app: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    """What ``chalice.local.create_local_server`` builds, on ``BurstServer``: the backlog is given to
    ``listen`` when the server is made, so it cannot be raised on the server that function returns."""
    return LocalDevServer(as_local_app(app), config, host, port, server_cls=BurstServer)
