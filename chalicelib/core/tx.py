"""Writing to DynamoDB: one transaction type, one way to retry.

``LabelledTransaction`` turns DynamoDB's positional cancellation reasons into business refusals
(``Refused(labels)``) and lost races into ``Contended``; ``retrying`` is the only retry loop for writes
(``commit_retrying`` and ``write_retrying`` are its two common shapes). Nothing here knows an area: it is
part of the ground floor.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.core import config
from chalicelib.core.errors import Busy


def transaction(token: str | None = None) -> TransactWrite:
    """A DynamoDB transaction on the configured endpoint: all writes or none."""
    global _TX_CONNECTION
    if _TX_CONNECTION is None:  # one shared client: building a botocore client per write costs 50-100+ ms
        _TX_CONNECTION = Connection(region=config.REGION, host=config.DYNAMODB_ENDPOINT)
    return TransactWrite(connection=_TX_CONNECTION, client_request_token=token)


_TX_CONNECTION: Connection | None = None


def batch_read(keys: dict[type[Model], list[tuple]], consistent: tuple[type[Model], ...] = ()
               ) -> dict[type[Model], list[Model]]:
    """Items of several tables by key in one ``BatchGetItem`` round trip (``Model.batch_get`` is one
    table per call); keys are (hash,) or (hash, range), at most 100 in all, each once; ``consistent``
    names the tables read strongly consistent. Missing items are simply absent."""
    transaction()  # the shared client
    request: dict[str, dict] = {}
    models: dict[str, type[Model]] = {}
    for model, wanted in keys.items():
        if not wanted:
            continue
        attrs = [model._hash_key_attribute(), model._range_key_attribute()]
        request[model.Meta.table_name] = {
            "Keys": [{a.attr_name: {a.attr_type: a.serialize(v)} for a, v in zip(attrs, key)} for key in wanted],
            "ConsistentRead": model in consistent}
        models[model.Meta.table_name] = model
    found: dict[type[Model], list[Model]] = {m: [] for m in keys}
    while request:
        answer = _TX_CONNECTION.client.batch_get_item(RequestItems=request)
        for table, items in answer.get("Responses", {}).items():
            found[models[table]] += [models[table].from_raw_data(item) for item in items]
        request = answer.get("UnprocessedKeys") or {}
    return found


def condition_failed(error: Exception) -> bool:
    """True when a write or transaction failed only because a condition did not hold."""
    cause = getattr(error, "cause_response_code", None)
    if cause == "ConditionalCheckFailedException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return cause == "TransactionCanceledException" and any(
        r is not None and r.code == "ConditionalCheckFailed" for r in reasons
    )


class Refused(Exception):
    """A transaction cancelled because named conditions did not hold (not a conflict)."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(", ".join(labels))
        self.labels = labels


class Contended(Exception):
    """A transaction lost a race with another on the same items; retrying is safe."""


class LabelledTransaction:
    """A transaction whose refused conditions come back by name, not by position.

    DynamoDB reports cancellation reasons in request order; PynamoDB sends
    condition checks, deletes, puts, then updates, so labels are kept per kind.
    """

    def __init__(self, token: str | None = None) -> None:
        self._tx = transaction(token)
        self._labels: dict[str, list[str]] = {"check": [], "delete": [], "put": [], "update": []}

    def check(self, label: str, model: type[Model], hash_key: Any, range_key: Any = None, condition=None) -> None:
        self._tx.condition_check(model, hash_key, range_key, condition=condition)
        self._labels["check"].append(label)

    def delete(self, label: str, item: Model, condition=None) -> None:
        self._tx.delete(item, condition=condition)
        self._labels["delete"].append(label)

    def put(self, label: str, item: Model, condition=None) -> None:
        self._tx.save(item, condition=condition)
        self._labels["put"].append(label)

    def update(self, label: str, item: Model, actions: list, condition=None) -> None:
        self._tx.update(item, actions, condition=condition)
        self._labels["update"].append(label)

    def commit(self) -> None:
        order = self._labels["check"] + self._labels["delete"] + self._labels["put"] + self._labels["update"]
        try:
            with self._tx:
                pass
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            failed = [label for label, r in zip(order, reasons) if r is not None and r.code == "ConditionalCheckFailed"]
            if failed:
                raise Refused(failed) from None
            if exc.cause_response_code in ("TransactionCanceledException", "TransactionConflictException",
                                           "ProvisionedThroughputExceededException", "ThrottlingException"):
                raise Contended(str(exc)) from None
            raise


def backoff(attempt: int, base: float = 0.005, cap: float = 0.5) -> None:
    """The one wait before a retry (a lost race here, a partner call in ``channel_api``): exponential with full
    jitter, capped, so racing callers spread out instead of colliding again in step."""
    time.sleep(random.uniform(0, min(cap, base * 2 ** min(attempt, 16))))


def lost_race(error: Exception) -> bool:
    """True when DynamoDB refused a write only because another transaction was writing one of its items
    at the same time (nothing was written; reading again and retrying is safe)."""
    cause = getattr(error, "cause_response_code", None)
    if cause == "TransactionConflictException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return cause == "TransactionCanceledException" and not any(
        r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


T = TypeVar("T")
S = TypeVar("S")


class Write(Protocol):
    """What ``retrying`` commits: a ``LabelledTransaction`` or a ``PlainWrite``."""

    def commit(self) -> None: ...


class PlainWrite:
    """One non-transactional write (``save``/``update``/``delete`` of one item) with a transaction's outcomes.

    A lost race with a transaction on the item is ``Contended``; a failed condition is ``Refused([label])``
    when ``label`` is given, else the write's own error reaches the caller as it is (as any other error does).
    ``result`` is what the write answered."""

    def __init__(self, write: Callable[[], Any], label: str | None = None) -> None:
        self._write, self._label = write, label
        self.result: Any = None

    def commit(self) -> None:
        try:
            self.result = self._write()
        except (PutError, UpdateError, DeleteError) as exc:
            if lost_race(exc):
                raise Contended(str(exc)) from None
            if self._label is not None and condition_failed(exc):
                raise Refused([self._label]) from None
            raise


@dataclass(frozen=True)
class Commit(Generic[T]):
    """A built attempt: commit ``write``; once it committed, the loop answers ``then()``. On ``Refused``,
    ``refused`` decides (``Done``, ``AGAIN`` or raise); without it the refusal reaches the caller."""

    write: Write
    then: Callable[[], T] = lambda: None  # type: ignore[assignment,return-value]
    refused: Callable[[Refused], "Done[T] | object"] | None = None


@dataclass(frozen=True)
class Done(Generic[T]):
    """Stop with ``answer`` and write nothing (a replay found, nothing to change, a refusal answered)."""

    answer: T


AGAIN = object()  # read again and rebuild, after the backoff: the items moved since they were read


def _busy() -> Any:
    raise Busy("busy", "too many concurrent changes; retry")


def retrying(read: Callable[[int], S], build: Callable[[S], "Commit[T] | Done[T] | object"], attempts: int = 25,
             exhausted: Callable[[], T] = _busy) -> T:
    """The one retry loop for writes: read, build, commit, and back off before trying again.

    Each attempt calls ``read(attempt)`` (attempt 0 may answer what the caller already read) and
    ``build`` on what it read, which answers ``Commit`` (write this), ``Done`` (answer without writing) or
    ``AGAIN``. A lost race (``Contended``) always tries again; a ``Refused`` goes to the ``Commit``'s
    ``refused`` (a condition that failed because an item moved after the read tries ``AGAIN``, a real
    refusal raises or answers). The conditions make every retry safe. When ``attempts`` are used up,
    ``exhausted()`` answers (by default 503 ``busy``)."""
    for attempt in range(attempts):
        step = build(read(attempt))
        if isinstance(step, Done):
            return step.answer
        if isinstance(step, Commit):
            try:
                step.write.commit()
            except Refused as refused:
                if step.refused is None:
                    raise
                verdict = step.refused(refused)
                if isinstance(verdict, Done):
                    return verdict.answer
                if verdict is not AGAIN:
                    raise TypeError(f"a refusal is answered with Done or AGAIN, not {verdict!r}") from None
            except Contended:
                pass
            else:
                return step.then()
        elif step is not AGAIN:
            raise TypeError(f"build answers Commit, Done or AGAIN, not {step!r}")
        backoff(attempt)
    return exhausted()


def write_retrying(write: Callable[[], T], attempts: int = 8) -> T:
    """A plain (non-transactional) write, retried while it meets a transaction on its item.

    DynamoDB answers ``TransactionConflictException`` to a write racing a transaction on the same item;
    a failed condition or any other error still reaches the caller (the last attempt's too)."""
    def build(_: None) -> Commit[T]:
        plain = PlainWrite(write)
        return Commit(plain, lambda: plain.result)

    return retrying(lambda _: None, build, attempts - 1, exhausted=write)


def commit_retrying(build: Callable[[], LabelledTransaction], attempts: int = 25) -> None:
    """Commit a transaction built afresh each try, retrying only when it lost a race (``Contended``).

    Real DynamoDB cancels transactions that touch an item another transaction is writing; the
    conditions make a retry safe, so only ``Refused`` (a condition that does not hold) reaches the caller.
    """
    retrying(lambda _: None, lambda _: Commit(build()), attempts)
