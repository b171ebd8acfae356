"""An HTTP proxy in front of Dynoxide that makes it answer as DynamoDB does under contention or a lost answer.

Dynoxide runs transactions one at a time, so it never cancels one for a conflict; real DynamoDB cancels a
``TransactWriteItems`` that touches an item another transaction is writing (``TransactionCanceledException``
with a ``TransactionConflict`` reason) and refuses a plain write to such an item (``TransactionConflictException``).
The proxy answers a seeded share of requests with exactly those errors, without forwarding them, so the code's
retry-on-conflict paths run locally as they do on AWS under load. It can also lose the answer to a committed
transaction (forwarded and committed, then the connection closed: botocore sends it again).

The app runs in the pytest process, so ``route_through`` points its DynamoDB clients at the proxy for one test.
"""
from __future__ import annotations

import http.client
import json
import random
import threading
import uuid
import zlib
from collections import Counter
from typing import Callable
from urllib.parse import urlsplit

import pytest
from pynamodb.connection import Connection
from pynamodb.models import Model

from chalicelib.core import config, tx
from chalicelib.tables import ALL_MODELS
from local_http import LocalHttpFake

ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
PLAIN_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
# What DynamoDB says of an item another transaction is writing (cancellation reason and plain-write error).
ONGOING = "Transaction is ongoing for the item"


def conflict_answer(actions: int, conflicted: set[int]) -> dict:
    """DynamoDB's body for a transaction cancelled by conflicts on the actions at ``conflicted`` (0-based)."""
    reasons = [{"Code": "TransactionConflict", "Message": ONGOING} if i in conflicted else {"Code": "None"}
               for i in range(actions)]
    return {"__type": f"{ERROR_PREFIX}TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                       f"[{', '.join(r['Code'] for r in reasons)}]",
            "CancellationReasons": reasons}


def plain_conflict_answer() -> dict:
    """DynamoDB's body for a PutItem/UpdateItem/DeleteItem on an item a transaction is writing."""
    return {"__type": f"{ERROR_PREFIX}TransactionConflictException", "message": ONGOING}


class DynamoProxy(LocalHttpFake):
    """Forwards every DynamoDB request to ``upstream`` (keep-alive on both sides) and counts them by operation.

    * ``conflicts(share, plain_share)``: that share of ``TransactWriteItems`` (and of plain writes) is answered
      with DynamoDB's conflict error instead of being forwarded; ``rng`` is seeded, so a run draws the same
      sequence. ``injected`` counts the answers made up, ``forwarded`` the requests Dynoxide saw, by operation
      (of those ``only`` accepts: other tests' executions still running in this process write through it too).
      ``only`` narrows the injection to requests whose body it accepts (``writing(Model)``), ``times`` caps it.
    * ``drop_for`` / ``drops``: for a ``TransactWriteItems`` putting an item whose body contains ``drop_for``
      and whose ``ClientRequestToken`` starts with it (the checkout's commit of that order id), forward it (Dynoxide commits), then close the connection without the answer, ``drops`` times; ``seen``
      records (upstream status, ClientRequestToken) of every such request.
    """

    protocol_version = "HTTP/1.1"

    def __init__(self, upstream: str, seed: int = 7) -> None:
        super().__init__()
        self.upstream = urlsplit(upstream)
        self.rng = random.Random(seed)
        self.share = self.plain_share = 0.0
        self.only: Callable[[bytes], bool] = lambda body: True
        self.times: int | None = None
        self.injected: Counter = Counter()
        self.forwarded: Counter = Counter()
        self.drop_for, self.drops = "", 0
        self.seen: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def conflicts(self, share: float, plain_share: float = 0.0, only: Callable[[bytes], bool] | None = None,
                  times: int | None = None) -> "DynamoProxy":
        with self._lock:
            self.share, self.plain_share, self.times = share, plain_share, times
            self.only = only or (lambda body: True)
        return self

    def _made_up(self, operation: str, body: bytes) -> dict | None:
        """The conflict to answer instead of forwarding, if this request draws one."""
        if operation == "TransactWriteItems":
            share = self.share
        elif operation in PLAIN_WRITES:
            share = self.plain_share
        else:
            return None
        with self._lock:
            if not share or self.times == 0 or not self.only(body) or self.rng.random() >= share:
                return None
            self.injected[operation] += 1
            self.times = None if self.times is None else self.times - 1
            if operation != "TransactWriteItems":
                return plain_conflict_answer()
            actions = len(json.loads(body)["TransactItems"])
            conflicted = set(self.rng.sample(range(actions), self.rng.randint(1, actions)))
        return conflict_answer(actions, conflicted)

    def _handle(self, handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        operation = handler.headers.get("X-Amz-Target", "").rpartition(".")[2]
        made_up = self._made_up(operation, body)
        if made_up is not None:
            self._answer(handler, 400, [("x-amzn-ErrorType", made_up["__type"].rpartition("#")[2]),
                                        ("Content-Type", "application/x-amz-json-1.0")],
                         json.dumps(made_up).encode())
            return
        status, headers, answer = self._forward(handler, body)
        # the checkout's commit: its request token names the order (the order's split into parcels, which also
        # names it, is another transaction and is never dropped)
        ours = (bool(self.drop_for) and operation == "TransactWriteItems" and self.drop_for.encode() in body
                and b'"Put"' in body and json.loads(body).get("ClientRequestToken", "").startswith(self.drop_for))
        with self._lock:
            self.forwarded[operation] += self.only(body)  # a background thread's writes are not the test's
            if ours:
                self.seen.append((status, json.loads(body).get("ClientRequestToken")))
            drop = ours and self.drops > 0
            self.drops -= drop
        if drop:
            handler.close_connection = True
            return  # committed upstream; the caller never hears of it
        self._answer(handler, status, headers, answer)

    def _forward(self, handler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to Dynoxide on this thread's kept-alive connection (opened again if it was closed)."""
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        for attempt in (1, 2):
            upstream = getattr(self._local, "upstream", None)
            if upstream is None:
                upstream = self._local.upstream = http.client.HTTPConnection(
                    self.upstream.hostname, self.upstream.port, timeout=30)
            try:
                upstream.request("POST", handler.path, body=body, headers=headers)
                response = upstream.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, ConnectionError):
                upstream.close()
                self._local.upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _answer(handler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        handler.send_response(status)
        skip = {"connection", "transfer-encoding", "content-length", "x-amz-crc32", "x-amzn-requestid", "date",
                "server"}
        for name, value in headers:
            if name.lower() not in skip:
                handler.send_header(name, value)
        handler.send_header("x-amzn-RequestId", uuid.uuid4().hex.upper())
        handler.send_header("x-amz-crc32", str(zlib.crc32(body)))
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def writing(model: type[Model]) -> Callable[[bytes], bool]:
    """For ``conflicts(only=...)``: requests that write an item of ``model``'s table (in a transaction or not)."""
    table = model.Meta.table_name

    def writes(body: bytes) -> bool:
        request = json.loads(body)
        if "TransactItems" not in request:
            return request.get("TableName") == table
        return any(action.get("TableName") == table for item in request["TransactItems"]
                   for kind, action in item.items() if kind != "ConditionCheck")
    return writes


def route_through(proxy: DynamoProxy, monkeypatch: pytest.MonkeyPatch, plain: bool = False) -> None:
    """Send the running app's transactions (and its batch reads) through ``proxy`` until the test ends; with
    ``plain``, every model's own requests too (reads, and the plain writes that can meet a conflict)."""
    monkeypatch.setattr(tx, "_TX_CONNECTION", Connection(region=config.REGION, host=proxy.url))
    if plain:
        for model in ALL_MODELS:
            monkeypatch.setattr(model.Meta, "host", proxy.url)
            monkeypatch.setattr(model, "_connection", None)  # built again, on the proxy, at first use
