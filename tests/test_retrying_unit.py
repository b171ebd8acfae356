"""The one retry loop for writes (``core.tx.retrying``) on fake writes: what it reads, commits, retries and answers
(no I/O: the backoff is recorded instead of slept)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from chalicelib.core import tx
from chalicelib.core.errors import Busy, Conflict
from chalicelib.core.tx import AGAIN, Commit, Contended, Done, PlainWrite, Refused, retrying


@pytest.fixture(autouse=True)
def waits(monkeypatch) -> list[int]:
    """The attempts the loop backed off after, in order (nothing sleeps)."""
    seen: list[int] = []
    monkeypatch.setattr(tx, "backoff", lambda attempt, *args: seen.append(attempt))
    return seen


class FakeWrite:
    """A write whose commits fail as scripted (an exception instance each) and then succeed."""

    def __init__(self, log: list, *failures: Exception) -> None:
        self.log, self.failures = log, list(failures)

    def commit(self) -> None:
        self.log.append("commit")
        if self.failures:
            raise self.failures.pop(0)


def update_error(code: str) -> UpdateError:
    return UpdateError("update failed", ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem"))


def test_a_first_commit_answers_then_after_one_read_and_no_wait(waits):
    log: list = []
    answer = retrying(lambda attempt: log.append(("read", attempt)) or "state",
                      lambda state: Commit(FakeWrite(log), then=lambda: f"done with {state}"), 5)
    assert answer == "done with state"
    assert log == [("read", 0), "commit"] and waits == []


def test_lost_races_read_again_back_off_and_rebuild_each_time(waits):
    log: list = []

    def build(attempt: int) -> Commit[int]:  # each attempt a write built afresh from its own read
        return Commit(FakeWrite(log, *([Contended("race")] if attempt < 2 else [])), then=lambda: attempt)

    assert retrying(lambda attempt: attempt, build, 5) == 2
    assert log == ["commit"] * 3 and waits == [0, 1]


def test_a_refusal_without_a_decision_reaches_the_caller_untried(waits):
    log: list = []
    with pytest.raises(Refused) as refused:
        retrying(lambda _: None, lambda _: Commit(FakeWrite(log, Refused(["quota:0"]))), 5)
    assert refused.value.labels == ["quota:0"]
    assert log == ["commit"] and waits == []


def test_a_refusal_that_moved_items_tries_again_and_a_real_one_raises(waits):
    """The caller's decision: a shard taken meanwhile (``quota``) reads again; the wallet short is refused."""
    log: list = []
    scripted = [Refused(["quota:1"]), Refused(["quota:0"]), Refused(["wallet"])]

    def decide(refused: Refused) -> object:
        if refused.labels[0].startswith("quota:"):
            return AGAIN
        raise Conflict("insufficient_points", "not enough points")

    with pytest.raises(Conflict) as error:
        retrying(lambda attempt: attempt, lambda _: Commit(FakeWrite(log, scripted.pop(0)), refused=decide), 10)
    assert error.value.code == "insufficient_points"
    assert log == ["commit"] * 3 and waits == [0, 1]


def test_a_refusal_may_answer_instead_and_done_answers_without_writing(waits):
    log: list = []
    assert retrying(lambda _: None, lambda _: Commit(FakeWrite(log, Refused(["order"])),
                                                     refused=lambda r: Done("replayed")), 5) == "replayed"
    assert retrying(lambda _: None, lambda _: Done("unchanged"), 5) == "unchanged"
    assert log == ["commit"] and waits == []


def test_again_from_build_reads_again_without_committing(waits):
    log: list = []
    steps = [AGAIN, AGAIN, Commit(FakeWrite(log), then=lambda: "sold")]
    reads: list[int] = []
    assert retrying(lambda attempt: reads.append(attempt), lambda _: steps.pop(0), 5) == "sold"
    assert reads == [0, 1, 2] and log == ["commit"] and waits == [0, 1]


def test_used_up_attempts_answer_exhausted_after_backing_off_each(waits):
    log: list = []
    with pytest.raises(Busy) as busy:
        retrying(lambda _: None, lambda _: Commit(FakeWrite(log, Contended("race"))), 3)
    assert busy.value.code == "busy" and log == ["commit"] * 3 and waits == [0, 1, 2]
    assert retrying(lambda _: None, lambda _: AGAIN, 2, exhausted=lambda: "gave up") == "gave up"


def test_build_answering_something_else_is_a_programming_error():
    with pytest.raises(TypeError):
        retrying(lambda _: None, lambda _: "oops", 3)


def test_a_plain_write_turns_a_lost_race_into_contended_and_keeps_other_errors():
    with pytest.raises(Contended):
        PlainWrite(lambda: (_ for _ in ()).throw(update_error("TransactionConflictException"))).commit()
    with pytest.raises(UpdateError):  # no label: the failed condition reaches the caller as the write's error
        PlainWrite(lambda: (_ for _ in ()).throw(update_error("ConditionalCheckFailedException"))).commit()
    with pytest.raises(Refused) as refused:
        PlainWrite(lambda: (_ for _ in ()).throw(update_error("ConditionalCheckFailedException")), "cart").commit()
    assert refused.value.labels == ["cart"]
    plain = PlainWrite(lambda: {"version": 2})
    plain.commit()
    assert plain.result == {"version": 2}


def test_write_retrying_retries_lost_races_then_makes_a_last_plain_attempt(waits):
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise update_error("TransactionConflictException")
        return "written"

    assert tx.write_retrying(write, attempts=4) == "written"
    assert len(calls) == 4 and waits == [0, 1, 2]
    calls.clear()
    with pytest.raises(UpdateError):  # the last attempt's lost race reaches the caller as it is
        tx.write_retrying(write, attempts=3)
    assert len(calls) == 3
