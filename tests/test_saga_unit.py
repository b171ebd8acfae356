"""The remote-channel saga (``partners.saga``) on a scripted channel: which answer leads to which outcome the
caller handed it, when it queries, asks again or counts an unanswered attempt (no I/O). Checkout's deduct and
refunds' ``points/refund`` run through it; their HTTP tests (test_remote_points, test_remote_refunds, ...) prove
what each outcome does to an order or a refund."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from chalicelib.partners import channel_api, saga
from chalicelib.partners.saga import Calls, Saga

CHANNEL = SimpleNamespace(code="bank")


@dataclass
class Record:
    id: str
    state: str = "waiting"
    log: list = field(default_factory=list)


@pytest.fixture
def channel(monkeypatch) -> dict:
    """Scripted answers by API (an answer dict, or an exception to raise), consumed in order; the calls made."""
    script: dict = {"calls": []}

    def call(channel, api, payload, breaker_state=None, deferred=None):
        script["calls"].append((api, payload))
        answer = script[api].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer, _status=answer.get("_status", 200))

    monkeypatch.setattr(channel_api, "call", call)
    return script


def outcome(state: str):
    def step(record: Record, channel, *rest) -> Record:
        record.state = state
        record.log.append(state)
        return record
    return step


def unanswered(record: Record, calls: Calls) -> None:
    record.log.append("attempt")


def remote(ask_again: bool, records: list[Record] = ()) -> Saga[Record]:
    return Saga(
        what="deduct", ask_api="points/deduct", query_api="points/query",
        query_payload=lambda r: {"order_id": r.id}, ids=lambda r: {"order_id": r.id}, done="deducted",
        refusals=frozenset({"insufficient"}), confirmed=outcome("paid"), refused=outcome("refused"),
        absent_statuses=frozenset({"not_found"}), absent=None if ask_again else outcome("released"),
        ask_again=(lambda r: {"order_id": r.id, "again": True}) if ask_again else None,
        waiting=unanswered, carried=False,
        pending=lambda code, older_than: [r for r in records if r.state == "waiting"], state=lambda r: r.state,
        states=("paid", "refused", "released", "waiting"), sweep_step=lambda r, ch: remote(ask_again).resolve(r, ch),
        sweep_failed=lambda: None)


def unavailable() -> channel_api.PartnerError:
    return channel_api.PartnerError("channel_api_unavailable", "no answer")


def test_a_clear_answer_decides_without_a_query(channel):
    channel["points/deduct"] = [{"result": "deducted"}, {"result": "insufficient", "_status": 409}]
    assert remote(False).ask(Record("O1"), CHANNEL, {"order_id": "O1"}).log == ["paid"]
    assert remote(False).ask(Record("O2"), CHANNEL, {"order_id": "O2"}).log == ["refused"]
    assert [api for api, _ in channel["calls"]] == ["points/deduct"] * 2


def test_doubt_is_settled_by_the_query_and_a_refusal_on_a_5xx_is_no_refusal(channel):
    channel["points/deduct"] = [unavailable(), {"result": "insufficient", "_status": 503}]
    channel["points/query"] = [{"status": "deducted"}, {"status": "not_found"}]
    assert remote(False).ask(Record("O1"), CHANNEL, {}).log == ["paid"]
    assert remote(False).ask(Record("O2"), CHANNEL, {}).log == ["released"]  # the caller's ``absent``
    assert [api for api, _ in channel["calls"]] == ["points/deduct", "points/query"] * 2


def test_no_answer_to_the_query_counts_the_attempt_and_keeps_waiting(channel):
    channel["points/deduct"] = [unavailable()]
    channel["points/query"] = [unavailable(), {"status": "pending"}]
    record = remote(False).ask(Record("O1"), CHANNEL, {})
    assert record.state == "waiting" and record.log == ["attempt"]
    assert remote(False).resolve(record, CHANNEL).log == ["attempt", "attempt"]  # an unknown status: the same


def test_with_ask_again_an_absent_record_waits_after_an_ask_and_is_asked_again_when_resolved(channel):
    channel["points/deduct"] = [unavailable(), {"result": "deducted"}]
    channel["points/query"] = [{"status": "not_found"}, {"status": "not_found"}]
    record = remote(True).ask(Record("R1"), CHANNEL, {"order_id": "R1"})
    assert record.log == ["attempt"]  # its ask may still be on the way: not sent twice at once
    assert remote(True).resolve(record, CHANNEL).log == ["attempt", "paid"]
    assert channel["calls"][-1] == ("points/deduct", {"order_id": "R1", "again": True})


def test_resolve_pending_settles_each_waiting_record_and_counts_the_states(channel):
    records = [Record("O1"), Record("O2"), Record("O3"), Record("O4", state="paid")]
    channel["points/query"] = [{"status": "deducted"}, {"status": "not_found"}, unavailable()]
    assert remote(False, records).resolve_pending(CHANNEL) == {"paid": 1, "refused": 0, "released": 1, "waiting": 1}
    assert [api for api, _ in channel["calls"]] == ["points/query"] * 3


def test_figures_not_carried_by_a_write_are_booked_once_on_leaving(monkeypatch):
    booked: list = []
    monkeypatch.setattr(saga.reliability, "book", lambda code, figures: booked.append((code, list(figures))))
    with Calls("bank") as calls:
        calls.figures.append({"api": "points/deduct"})
        with calls:  # a step that re-enters the same calls books nothing twice
            pass
    assert booked == [("bank", [{"api": "points/deduct"}])]
    with Calls("bank") as calls:
        calls.figures.append({"api": "points/query"})
        calls.attached()  # carried by the record's write: nothing left to book
    with Calls("bank", carried=False) as calls:
        assert calls.figures is None  # each call books itself as it ends
    assert len(booked) == 1
