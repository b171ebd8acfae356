"""A channel's points back end on this machine: the wallet a remote-mode channel keeps.

A real ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a daemon thread,
answering the APIs our app calls (``POST {api_base_url}/{api}``, JSON body):

``password/verify`` ``{member_id, password}``        → ``{"valid": bool}``
``points/deduct``   ``{order_id, member_id, points}`` → ``{"result": "deducted"}`` (200) or
                                                        ``{"result": "insufficient"}`` (409);
                                                        idempotent by ``order_id``; ``{"result":
                                                        "cancelled"}`` (409) for a cancelled order
``points/query``    ``{order_id}``                    → ``{"status": "deducted" | "not_found" | "failed"}``
``points/cancel``   ``{order_id}``                    → ``{"result": "cancelled", "refunded": bool}``: a later
                                                        deduct for the order is refused, one already
                                                        applied is refunded; idempotent
``points/refund``   ``{refund_id, order_id, points}`` → ``{"result": "refunded"}`` (200) or ``{"result":
                                                        "rejected", "reason"}`` (409: nothing deducted for the
                                                        order, or more back than it took); idempotent by
                                                        ``refund_id`` (as ``tools/reference_channel.py``)
``points/refund/query`` ``{refund_id}``               → ``{"status": "refunded" | "not_found"}``
``points/balance``  ``{member_id}``                  → ``{"member_id", "points"}`` (404 for an unknown member)

Every call's ``X-Timestamp`` / ``X-Nonce`` / ``X-Sign`` headers are checked as contract
version 2 demands (over ``POST``, the path, and timestamp + nonce + body_sha256) with the
one secret the fake holds, by the contract's own functions; a bad signature (another
route's, or the wrong secret's) or a replayed nonce is answered 401 and changes nothing.
``signed_ok`` counts the calls it accepted.

Behaviour is set per test:

``deduct_mode``  normal | fail (refuse every deduction) | timeout_after (deduct, then sit
                 on the answer past our read timeout) | timeout_before (sit on the request past
                 our read timeout and never deduct)
                 | late (sit on the request past our read timeout, then deduct unless the order
                 was cancelled meanwhile: the deduct that lands after we gave up on it)
                 (``member_modes`` sets it per member, for mixed bursts)
``query_mode``   normal | down (answer 503) | failed (an order it did not deduct is ``failed``, not
                 ``not_found``: its deduction failed on the channel's side)
``cancel_mode``  normal | down (answer 503)
``refund_mode``  normal | fail (refuse every refund) | timeout_after (refund, then sit on the answer past
                 our read timeout) | timeout_before (sit past our read timeout, never refund) | down (503)
``refund_query_mode`` normal | down (answer 503)
``balance_mode``  normal | down (answer 503)
``password_status`` an HTTP error status for password/verify (e.g. 500), or None to answer normally
``hold_password(p)`` password/verify for password ``p`` waits until the test releases it (``arrived(p)``
                 tells when one is waiting): two requests' checks answered in the order a test chooses
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from chalicelib.core.errors import DomainError
from local_http import LocalHttpFake
from chalicelib.partners.channel_api import READ_TIMEOUT
from chalicelib.channels.signing import body_sha256, check_envelope, check_signature

HOLD_SECONDS = 120.0  # far above any channel's api_timeout_seconds (at most 10 s)
NORMAL, FAIL, TIMEOUT_AFTER, TIMEOUT_BEFORE, DOWN = "normal", "fail", "timeout_after", "timeout_before", "down"
LATE = "late"
FAILED = "failed"


class FakeWalletChannel(LocalHttpFake):
    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.passwords: dict[str, str] = {}  # external member id → payment password
        self.wallets: dict[str, int] = {}  # external member id → points
        self.deductions: dict[str, dict[str, Any]] = {}  # order id → {member_id, points}
        self.deduct_mode = NORMAL
        self.member_modes: dict[str, str] = {}  # external member id → its own deduct mode (overrides deduct_mode)
        self.query_mode = NORMAL
        self.cancel_mode = NORMAL
        self.cancelled: set[str] = set()  # order ids the platform cancelled
        self.refunds: dict[str, dict[str, Any]] = {}  # refund id → {order_id, points}
        self.refund_mode = NORMAL
        self.refund_query_mode = NORMAL
        self.balance_mode = NORMAL
        self.password_status: int | None = None  # answer password/verify with this error status instead
        self.slow_seconds = READ_TIMEOUT + 0.7  # a LATE deduct arrives this long after it was sent
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}  # password → (arrived, released)
        self.calls: Counter = Counter()  # "api outcome" → count
        self.bad_signatures = 0
        self.signed_ok = 0
        self._nonces: set[str] = set()
        self._lock = threading.Lock()

    def _hold(self) -> None:
        """A timeout, whatever the machine's speed: the answer is held until the fake stops (or far past any
        caller's deadline: ``HOLD_SECONDS``), so the caller's own deadline always ends the call first."""
        self._stopping.wait(HOLD_SECONDS)

    # --- test set-up and read-back -------------------------------------------------------

    def member(self, external_id: str, password: str = "123456", points: int = 0) -> None:
        with self._lock:
            self.passwords[external_id] = password
            self.wallets[external_id] = points

    def hold_password(self, password: str) -> threading.Event:
        """Hold every password/verify for ``password`` until the returned event is set."""
        released = threading.Event()
        self._holds[password] = (threading.Event(), released)
        return released

    def arrived(self, password: str, timeout: float = 60) -> bool:
        """Whether a held password/verify for ``password`` reached the fake (waiting up to ``timeout``)."""
        return self._holds[password][0].wait(timeout)

    def balance(self, external_id: str) -> int:
        with self._lock:
            return self.wallets.get(external_id, 0)

    def deducted_total(self) -> int:
        with self._lock:
            return sum(d["points"] for d in self.deductions.values())

    def deducted(self, order_id: str) -> bool:
        with self._lock:
            return order_id in self.deductions

    def refunded_total(self) -> int:
        with self._lock:
            return sum(r["points"] for r in self.refunds.values())

    # --- the request handler ----------------------------------------------------------

    def _verified(self, handler: BaseHTTPRequestHandler, body: bytes) -> str | None:
        """None when genuinely signed for this method and path (and the nonce is new); else the reason."""
        if not self.secret:
            return "no_secret_configured"
        params = {"timestamp": handler.headers.get("X-Timestamp", ""), "nonce": handler.headers.get("X-Nonce", ""),
                  "sign": handler.headers.get("X-Sign", ""), "body_sha256": body_sha256(body)}
        try:
            check_envelope(params, time.time())
            check_signature(params, [self.secret], handler.command, handler.path.split("?", 1)[0])
        except DomainError as error:
            return error.code
        with self._lock:
            if params["nonce"] in self._nonces:
                return "nonce_replayed"
            self._nonces.add(params["nonce"])
            self.signed_ok += 1
        return None

    def _send(self, handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the caller timed out and left

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        api = handler.path.strip("/")
        why = self._verified(handler, body)
        if why is not None:
            with self._lock:
                self.bad_signatures += 1
            self._count(f"{api} {why}")
            self._send(handler, 401, {"error": why})
            return
        try:
            data = json.loads(body)
            assert isinstance(data, dict)
        except (ValueError, AssertionError):
            self._send(handler, 400, {"error": "bad_json"})
            return
        if api == "password/verify" and self.password_status:
            self._count(f"{api} http_{self.password_status}")
            self._send(handler, self.password_status, {"error": "internal_error"})
        elif api == "password/verify":
            hold = self._holds.get(str(data.get("password")))
            if hold is not None:
                hold[0].set()
                hold[1].wait(60)
            with self._lock:
                valid = self.passwords.get(str(data.get("member_id"))) == data.get("password")
            self._count(f"{api} {'valid' if valid else 'invalid'}")
            self._send(handler, 200, {"valid": valid})
        elif api == "points/deduct":
            self._deduct(handler, data)
        elif api == "points/query":
            self._query(handler, data)
        elif api == "points/cancel":
            self._cancel(handler, data)
        elif api == "points/refund":
            self._refund(handler, data)
        elif api == "points/refund/query":
            self._refund_query(handler, data)
        elif api == "points/balance":
            self._balance(handler, data)
        else:
            self._send(handler, 404, {"error": "no_such_api"})

    def _deduct(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        order_id, member_id, points = str(data["order_id"]), str(data["member_id"]), int(data["points"])
        mode = self.member_modes.get(member_id, self.deduct_mode)
        if mode == TIMEOUT_BEFORE:
            self._count("points/deduct timeout_before")
            self._hold()
            self._send(handler, 504, {"error": "gateway_timeout"})
            return
        if mode == LATE:
            self._count("points/deduct late")
            self._stopping.wait(self.slow_seconds)
        if mode == FAIL:
            self._count("points/deduct refused")
            self._send(handler, 409, {"result": "insufficient"})
            return
        with self._lock:
            if order_id in self.cancelled:
                result, status = "cancelled", 409  # the platform said it will not complete this order
            elif order_id in self.deductions:
                result, status = "deducted", 200  # idempotent replay
            elif self.wallets.get(member_id, 0) >= points:
                self.wallets[member_id] -= points
                self.deductions[order_id] = {"member_id": member_id, "points": points}
                result, status = "deducted", 200
            else:
                result, status = "insufficient", 409
        self._count(f"points/deduct {result}")
        if mode == TIMEOUT_AFTER:
            self._hold()
        self._send(handler, status, {"result": result})

    def _query(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        if self.query_mode == DOWN:
            self._count("points/query down")
            self._send(handler, 503, {"error": "maintenance"})
            return
        status = "deducted" if self.deducted(str(data.get("order_id"))) else (
            FAILED if self.query_mode == FAILED else "not_found")
        self._count(f"points/query {status}")
        self._send(handler, 200, {"status": status})

    def _cancel(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        if self.cancel_mode == DOWN:
            self._count("points/cancel down")
            self._send(handler, 503, {"error": "maintenance"})
            return
        order_id = str(data.get("order_id"))
        with self._lock:
            self.cancelled.add(order_id)
            applied = self.deductions.pop(order_id, None)
            if applied is not None:
                self.wallets[applied["member_id"]] += applied["points"]
        self._count(f"points/cancel {'refunded' if applied else 'cancelled'}")
        self._send(handler, 200, {"result": "cancelled", "refunded": applied is not None})

    def _refund(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        refund_id, order_id, points = str(data["refund_id"]), str(data["order_id"]), int(data["points"])
        if self.refund_mode in (DOWN, FAIL, TIMEOUT_BEFORE):
            outcome = {DOWN: (503, {"error": "maintenance"}), FAIL: (409, {"result": "rejected", "reason": "closed"}),
                       TIMEOUT_BEFORE: (504, {"error": "gateway_timeout"})}[self.refund_mode]
            self._count(f"points/refund {self.refund_mode}")
            if self.refund_mode == TIMEOUT_BEFORE:
                self._hold()
            self._send(handler, *outcome)
            return
        with self._lock:
            known = self.refunds.get(refund_id)
            done = self.deductions.get(order_id)
            back = sum(r["points"] for r in self.refunds.values() if r["order_id"] == order_id)
            if known is not None:
                same = (known["order_id"], known["points"]) == (order_id, points)
                status, answer = (200, {"result": "refunded"}) if same else (
                    409, {"result": "rejected", "reason": "refund_id_reused"})
            elif done is None:
                status, answer = 409, {"result": "rejected", "reason": "not_deducted"}
            elif back + points > done["points"]:
                status, answer = 409, {"result": "rejected", "reason": "exceeds_deduction"}
            else:
                self.refunds[refund_id] = {"order_id": order_id, "points": points}
                self.wallets[done["member_id"]] += points
                status, answer = 200, {"result": "refunded"}
        self._count(f"points/refund {answer['result']}")
        if self.refund_mode == TIMEOUT_AFTER:
            self._hold()
        self._send(handler, status, answer)

    def _balance(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        member_id = str(data.get("member_id"))
        if self.balance_mode == DOWN:
            self._count("points/balance down")
            self._send(handler, 503, {"error": "unavailable"})
            return
        with self._lock:
            points = self.wallets.get(member_id)
        self._count("points/balance")
        if points is None:
            self._send(handler, 404, {"error": "member_not_found"})
        else:
            self._send(handler, 200, {"member_id": member_id, "points": points})

    def _refund_query(self, handler: BaseHTTPRequestHandler, data: dict) -> None:
        if self.refund_query_mode == DOWN:
            self._count("points/refund/query down")
            self._send(handler, 503, {"error": "maintenance"})
            return
        with self._lock:
            known = self.refunds.get(str(data.get("refund_id")))
        status = "not_found" if known is None else "refunded"
        self._count(f"points/refund/query {status}")
        self._send(handler, 200, {"status": status, **(known or {})})
