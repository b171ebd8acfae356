"""A channel's back end on this machine: a real HTTP server that our app calls.

It stands in for a bank's or a telecom's member API. Each test sets how it
behaves (answer, be down, be slow, answer garbage, fail with 503 first, reject
the code, redirect elsewhere) and reads back what it received. Every call's
signature headers (``X-Timestamp``, ``X-Nonce``, ``X-Sign``) are verified as
contract version 2 demands, over the method, the path after the registered
base URL and timestamp + nonce + body_sha256, with the one secret the fake
holds, by the contract's own functions: a test proves the request was
genuinely signed, for this route, with that secret.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from chalicelib.core.errors import DomainError
from local_http import LocalHttpFake
from chalicelib.channels.signing import body_sha256, check_envelope, check_signature

OK, SLOW, GARBAGE, FLAKY, REJECT, REDIRECT = "ok", "slow", "garbage", "flaky", "reject", "redirect"


def closed_url() -> str:
    """A base URL on which nothing listens: connecting is refused at once (a channel that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Call:
    """One request as the channel saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    signature_ok: bool
    signature_error: str | None
    answered: int | None = None
    at: float = field(default_factory=time.time)

    @property
    def nonce(self) -> str | None:
        return self.headers.get("x-nonce")


class FakeChannel(LocalHttpFake):
    """``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a daemon thread.

    ``secret``      the channel's signing secret (set it once the channel exists)
    ``mode``        ok | slow | garbage | flaky | reject | redirect (302 to ``redirect_to``)
    ``base_path``   the path part of the base URL registered with us (``base_url``); signed paths follow it
    ``identities``  one-time code → the member identity answered for it
    ``fail_first``  in ``flaky`` mode, how many calls answer 503 before the rest succeed
    ``slow_seconds`` in ``slow`` mode, how long to sit on the request
    ``reject_status`` in ``reject`` mode, the 4xx to answer
    """

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.mode = OK
        self.identities: dict[str, dict[str, Any]] = {}
        self.fail_first = 1
        self.slow_seconds = 120.0  # far past any deadline of ours: the caller always gives up first
        self.reject_status = 401
        self.redirect_to = ""
        self.base_path = ""
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    # --- configuration -----------------------------------------------------------------

    def member(self, code: str, member_id: str, nickname: str | None = None, mobile: str | None = None,
               points: int | None = None) -> dict[str, Any]:
        """Make ``code`` a valid one-time entry code for this member."""
        identity = {"member_id": member_id, "nickname": nickname, "mobile": mobile, "points": points}
        self.identities[code] = identity
        return identity

    @property
    def base_url(self) -> str:
        """What ops register as the channel's ``api_base_url``."""
        return self.url + self.base_path

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    # --- the request handler -----------------------------------------------------------------

    def _verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[bool, str | None]:
        if not self.secret:
            return False, "no_secret_configured"
        params = {"timestamp": headers.get("x-timestamp", ""), "nonce": headers.get("x-nonce", ""),
                  "body_sha256": body_sha256(body), "sign": headers.get("x-sign", "")}
        try:
            check_envelope(params, time.time())
            check_signature(params, [self.secret], method, path)
        except DomainError as error:
            return False, error.code
        with self._lock:
            if any(c.nonce == params["nonce"] and c.signature_ok for c in self.calls):
                return False, "nonce_replayed"
        return True, None

    def _answer(self, handler: BaseHTTPRequestHandler, call: Call, status: int, body: bytes,
                content_type: str = "application/json") -> None:
        call.answered = status
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler: BaseHTTPRequestHandler, call: Call, status: int, data: Any) -> None:
        self._answer(handler, call, status, json.dumps(data, ensure_ascii=False).encode())

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        path = handler.path.split("?", 1)[0]
        path = path[len(self.base_path):] if path.startswith(self.base_path + "/") else path
        signature_ok, why = self._verify(handler.command, path, headers, body)
        call = Call(handler.command, path, headers, body, data, signature_ok, why)
        with self._lock:
            self.calls.append(call)
            index = len(self.calls)
        mode = self.mode

        if mode == SLOW:
            self._stopping.wait(self.slow_seconds)
            try:
                self._json(handler, call, 200, {"member_id": "late"})
            except OSError:
                pass  # the caller gave up long ago
            return
        if mode == GARBAGE:
            self._answer(handler, call, 200, b"<html>upstream maintenance</html>", "text/html")
            return
        if mode == FLAKY and index <= self.fail_first:
            self._json(handler, call, 503, {"error": "busy"})
            return
        if mode == REDIRECT:
            call.answered = 302
            handler.send_response(302)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            handler.send_header("Connection", "close")
            handler.end_headers()
            return
        if mode == REJECT:
            self._json(handler, call, self.reject_status, {"error": "invalid_code"})
            return
        if not signature_ok:
            self._json(handler, call, 401, {"error": why})
            return
        if path.rstrip("/") != "/member/exchange" or handler.command != "POST":
            self._json(handler, call, 404, {"error": "no_such_api"})
            return
        identity = self.identities.pop((data or {}).get("code", ""), None) if isinstance(data, dict) else None
        if identity is None:
            self._json(handler, call, 400, {"error": "invalid_code"})
            return
        self._json(handler, call, 200, identity)
