"""The remote-channel saga: ask the channel, query it on doubt, count the attempt nothing answered, sweep what
is pending. Written once, for every record of ours that waits for a remote channel to act on it.

A remote channel keeps its members' points, so some of our records wait for its word: an order for its
``points/deduct``, a refund for its ``points/refund``. Both calls are idempotent by our id at the channel, and
both have a query. The steps are the same for either: ask; an answer that says it was done is ``confirmed``, a
refusal (answered below 500, a result the saga lists) is ``refused``; no answer, or an unclear one, is settled
by the query (done → ``confirmed``; the channel has none → ``absent``; no answer → ``waiting``, the attempt
counted). Nothing is guessed: a record stays waiting until the channel says. ``sweep`` asks again about every
channel's records still waiting (``pending``), past a grace that lets the request at work on one finish.

What each outcome means for the record is the caller's (checkout: pay, release or keep the order; refunds:
complete, reject or keep the refund), handed to a ``Saga`` as functions: this module imports neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from chalicelib.channels import channels
from chalicelib.channels.models import Channel
from chalicelib.core.observability import logger
from chalicelib.partners import breaker, channel_api, reliability

T = TypeVar("T")


class Calls:
    """The figures of the channel calls one request makes about a record (``Permit.finish(deferred)``), written
    with the record's next write (checkout: ``Order.partner_calls``, booked by the orders stream); ``attached``
    once that write committed. Whatever no write carried is booked directly on leaving the ``with`` block.
    ``carried=False``: nothing rides on the record, each call is booked as it ends (``figures`` is None)."""

    def __init__(self, channel_code: str, carried: bool = True) -> None:
        self.channel_code = channel_code
        self.figures: list[dict] | None = [] if carried else None

    def __enter__(self) -> "Calls":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.figures:
            reliability.book(self.channel_code, self.figures)
            self.figures = []

    def attached(self) -> None:
        if self.figures is not None:
            self.figures = []


Step = Callable[[T, Channel, Calls], T]


@dataclass(frozen=True)
class Saga(Generic[T]):
    """One kind of record that waits for a remote channel, and what each answer means for it."""

    what: str  # in the logs: "deduct", "refund"
    ask_api: str  # "points/deduct"
    query_api: str  # "points/query"
    query_payload: Callable[[T], dict]  # names the record to the query: {"order_id": ...}
    ids: Callable[[T], dict[str, Any]]  # the record's id, for the logs
    done: str  # the ask's ``result`` and the query's ``status`` when the channel did it
    refusals: frozenset[str]  # the ask's results that refuse it
    confirmed: Step  # the channel did it
    refused: Callable[[T, Channel, dict, Calls], T]  # the channel refused it (its answer)
    # The query's statuses that say the channel has none of it, and what that means: ``absent`` decides (an
    # order: cancelled and released), or, with ``ask_again`` (the ask's payload), the record is asked again
    # when resolving (it never reached the channel; safe, idempotent by our id) and waits right after an ask
    # (its ask may still be on the way).
    absent_statuses: frozenset[str]
    absent: Step | None
    ask_again: Callable[[T], dict] | None
    waiting: Callable[[T, Calls], None]  # one more unanswered attempt: on the record (with its calls), counted
    carried: bool  # the calls' figures ride on the record's next write (``Calls``)
    pending: Callable[[str, float], list[T]]  # a channel's records waiting, untouched for ``older_than`` seconds
    state: Callable[[T], str]
    states: tuple[str, ...]  # the sweep's outcome: how many records are now in each state
    sweep_step: Callable[[T, Channel], T]  # a pending record settled by the sweep (``resolve`` and what follows)
    sweep_failed: Callable[[], None]  # counts a channel the sweep could not get through

    def ask(self, item: T, channel: Channel, payload: dict, breaker_state: breaker.State | None = None,
            calls: Calls | None = None) -> T:
        """Ask the channel (idempotent by our id); resolve any doubt with its query. ``breaker_state``: the ask
        API's breaker as the caller read it, to spare a read."""
        with calls or Calls(channel.code, self.carried) as calls:
            try:
                answer = channel_api.call(channel, self.ask_api, payload, breaker_state, calls.figures)
            except channel_api.PartnerError as error:
                logger.warning(f"{self.what} unresolved, querying", extra={**self.ids(item), "code": error.code})
                return self._query(item, channel, calls, asked=True)
            if answer.get("result") == self.done:
                return self.confirmed(item, channel, calls)
            if answer["_status"] < 500 and answer.get("result") in self.refusals:
                return self.refused(item, channel, answer, calls)
            return self._query(item, channel, calls, asked=True)

    def resolve(self, item: T, channel: Channel) -> T:
        """A waiting record asked about again (the sweep's step, a fast retry's)."""
        with Calls(channel.code, self.carried) as calls:
            return self._query(item, channel, calls, asked=False)

    def _query(self, item: T, channel: Channel, calls: Calls, asked: bool) -> T:
        try:
            answer = channel_api.call(channel, self.query_api, self.query_payload(item), deferred=calls.figures)
        except channel_api.PartnerError:
            return self.keep_waiting(item, calls)
        status = answer.get("status")
        if status == self.done:
            return self.confirmed(item, channel, calls)
        if status in self.absent_statuses:
            if self.absent is not None:
                return self.absent(item, channel, calls)
            if self.ask_again is not None and not asked:
                return self.ask(item, channel, self.ask_again(item), calls=calls)
        return self.keep_waiting(item, calls)

    def keep_waiting(self, item: T, calls: Calls) -> T:
        """Nothing settled it (no answer, or an outcome the record cannot take now: a cancel the channel did not
        acknowledge): one more unanswered attempt, on the record and counted; it keeps waiting."""
        self.waiting(item, calls)
        calls.attached()
        return item

    def resolve_pending(self, channel: Channel, older_than: float = 0) -> dict[str, int]:
        """Every record of one channel still waiting (untouched for ``older_than`` seconds) settled as far as
        the channel now says (``sweep_step``); how many are in each state after it."""
        outcome = dict.fromkeys(self.states, 0)
        for item in self.pending(channel.code, older_than):
            item = self.sweep_step(item, channel)
            outcome[self.state(item)] += 1
        return outcome

    def sweep(self, grace: float) -> dict[str, dict]:
        """The scheduler's pass over every channel, suspended ones too (their records still wait), each channel
        on its own: one that fails is logged and counted (``sweep_failed``), answers ``{"error": ...}``,
        and the others go on. Only records untouched for ``grace`` seconds are taken: a younger one is left to
        the request at work on it."""
        return channels.sweep_each(lambda channel: self.resolve_pending(channel, grace),
                                   self.sweep_failed)
