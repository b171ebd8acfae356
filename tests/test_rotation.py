"""Secret rotation (PRODUCT.md, "Rotation"): our calls to a channel stay on the old secret until the
channel proves it has the new one, or the overlap ends; a second rotation inside an overlap is refused.

The fake channels hold one secret and verify every call we make with it (method, path and body bound,
contract v2), so "the channel still has only the old secret" is exactly what they do until a test
hands them the new one.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from chalicelib.channels.signing import request_headers
from checkout_helpers import make_shop
from fake_channel import FakeChannel
from helpers import assert_error, audit_rows, channel, ok, uid
from tools.sign import entry_link


def rotate(ops, code: str, overlap: int = 600) -> str:
    return ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": overlap}))["secret"]


def prove(system, code: str, secret: str) -> requests.Response:
    """The channel's server reads its quota, signed with ``secret``."""
    path = f"/partner/{code}/quota"
    return requests.get(system.base_url + path, headers=request_headers("GET", path, b"", secret), timeout=30)


def open_channel(ops) -> tuple[str, str]:
    """A hosted channel with an open period (its signed quota read answers 200), and its secret."""
    view, secret = channel(ops)
    now = int(time.time())
    ok(ops.post(f"/ops/channels/{view['code']}/periods",
                json={"period_id": "P1", "starts_at": now - 10, "ends_at": now + 3600}), 201)
    return view["code"], secret


def proven_at(ops, code: str) -> int | None:
    return ok(ops.get(f"/ops/channels/{code}"))["secret_proven_at"]


def test_rotation_then_checkout_stays_on_the_old_secret_until_the_channel_proves_the_new_one(system, ops):
    shop = make_shop(system, ops, "remote")
    old = shop.secret
    member = shop.member(points=10 * shop.price_points)
    new = rotate(ops, shop.code)
    assert shop.fake.secret == old
    session = requests.Session()
    first = shop.place(session, member)                      # password check and deduct, signed with the old one
    assert first.status == 201 and first.body["status"] == "paid", first.body
    shop.member(points=0)                                     # an entry signed with the old secret proves nothing
    ok(prove(system, shop.code, old))
    assert proven_at(ops, shop.code) is None
    assert shop.place(session, member).status == 201

    before = time.time()
    ok(prove(system, shop.code, new))                         # the channel's first request with the new secret
    assert before - 2 <= proven_at(ops, shop.code) <= time.time() + 2
    refused = shop.place(session, member)                     # now we sign with the new one: the old-only fake refuses
    assert refused.status == 502 and refused.code.startswith("channel_api"), refused.body
    assert shop.fake.calls["password/verify bad_signature"] == 1
    shop.fake.secret = new
    assert shop.place(session, member).status == 201
    assert shop.fake.balance(member) == 7 * shop.price_points


@pytest.fixture
def fake():
    server = FakeChannel().start()
    yield server
    server.stop()


def enter_with_code(system, code: str, one_time: str) -> requests.Response:
    return requests.get(f"{system.base_url}/entry/{code}", params={"code": one_time}, allow_redirects=False,
                        timeout=30)


def test_rotation_then_code_exchange(system, ops, fake):
    view, old = channel(ops, entry_mode="code", api_base_url=fake.url)
    code, fake.secret = view["code"], old
    new = rotate(ops, code)
    fake.member("c-1", uid("EXT-"))
    assert enter_with_code(system, code, "c-1").status_code == 302
    # The channel opens a signed entry link with the new secret: that is its proof.
    link = entry_link(system.base_url, code, new, uid("EXT-"))
    assert requests.get(link, allow_redirects=False, timeout=30).status_code == 302
    assert proven_at(ops, code) is not None
    fake.member("c-2", uid("EXT-"))
    assert enter_with_code(system, code, "c-2").status_code == 401      # we now sign with the new secret
    assert fake.calls[-1].signature_error == "bad_signature"
    fake.secret = new
    fake.member("c-3", uid("EXT-"))
    assert enter_with_code(system, code, "c-3").status_code == 302


def test_outbound_switches_when_the_overlap_ends_without_proof(system, ops, fake):
    view, old = channel(ops, entry_mode="code", api_base_url=fake.url)
    code, fake.secret = view["code"], old
    new = rotate(ops, code, overlap=2)
    fake.member("c-1", uid("EXT-"))
    assert enter_with_code(system, code, "c-1").status_code == 302
    time.sleep(2.5)
    fake.member("c-2", uid("EXT-"))
    assert enter_with_code(system, code, "c-2").status_code == 401
    fake.secret = new
    fake.member("c-3", uid("EXT-"))
    assert enter_with_code(system, code, "c-3").status_code == 302
    assert proven_at(ops, code) is None


def test_second_rotation_inside_the_overlap_is_refused_and_allowed_after(system, ops):
    code, first = open_channel(ops)
    second = rotate(ops, code, overlap=2)
    assert_error(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 0}), 409, "rotation_in_progress")
    ok(prove(system, code, first))                            # the first secret survived the refused rotation
    assert_error(ops.post(f"/ops/channels/{code}/secret", json={}), 409, "rotation_in_progress")  # proof or not
    time.sleep(2.5)
    third = rotate(ops, code, overlap=600)
    assert third not in (first, second)
    ok(prove(system, code, second))
    assert_error(prove(system, code, first), 401, "bad_signature")


def test_concurrent_rotations_rotate_once(system, ops):
    code, first = open_channel(ops)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: ops.post(f"/ops/channels/{code}/secret", json={}), range(20)))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 19, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"rotation_in_progress"}
    [winner] = [r.json()["secret"] for r in answers if r.status_code == 200]
    ok(prove(system, code, first))
    ok(prove(system, code, winner))
    assert len(audit_rows(ops, f"/ops/channels/{code}/audit", "secret_rotated")) == 1


def test_concurrent_first_requests_with_the_new_secret_record_the_proof_once(system, ops):
    code, _ = open_channel(ops)
    new = rotate(ops, code)
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: prove(system, code, new), range(80)))
    assert [r.status_code for r in answers] == [200] * 80, {r.status_code: r.text for r in answers}
    rows = audit_rows(ops, f"/ops/channels/{code}/audit", "secret_proven")
    assert len(rows) == 1 and rows[0]["actor"] == f"channel:{code}", rows
    assert proven_at(ops, code) is not None
