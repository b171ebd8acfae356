"""Channel entry (SSO) over real HTTP on Dynoxide: every refusal, the race, code exchange.

Capability 5 and the "Entry link" / "Channel request signing" sections of the
integration contract. Members are checked in the tables themselves.
"""
from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from pynamodb.exceptions import DoesNotExist

from chalicelib.channels.models import Nonce
from chalicelib.channels.signing import signed_params
from chalicelib.members.models import Member, MemberLink
from fake_channel import FLAKY, GARBAGE, REJECT, SLOW, FakeChannel, closed_url
from helpers import assert_error, channel, error_of, ok, uid

HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


# --- helpers -------------------------------------------------------------------------------

def link_params(secret: str, member_id: str | None = "M-1", now: float | None = None, nonce: str | None = None,
                **fields: str) -> dict[str, str]:
    """What a channel puts in an entry link, signed with ``secret``."""
    params = {**({"member_id": member_id} if member_id is not None else {}), **fields,
              "timestamp": str(int(time.time() if now is None else now)),
              "nonce": nonce or secrets.token_hex(12)}
    return signed_params(params, secret)


def enter(system, code: str, params: dict[str, str], headers: dict[str, str] | None = None,
          client: requests.Session | None = None) -> requests.Response:
    return (client or requests).get(f"{system.base_url}/entry/{code}", params=params, headers=headers or {},
                                    allow_redirects=False, timeout=30)


def token_of(response: requests.Response) -> str:
    assert response.status_code == 302, (response.status_code, response.text)
    cookie = response.headers["Set-Cookie"]
    name, _, rest = cookie.partition("=")
    assert name == "cm_session"
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    return rest.split(";")[0]


def me(system, code: str, token: str) -> requests.Response:
    return requests.get(f"{system.base_url}/api/{code}/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def warm(system, code: str, client: requests.Session) -> None:
    """Open a kept-alive connection first, so racing requests start together instead of queueing on connect."""
    assert client.get(f"{system.base_url}/store/{code}", timeout=30).status_code == 200


def members_of(code: str, external_id: str) -> list[Member]:
    return list(Member.scan((Member.channel_code == code) & (Member.external_id == external_id),
                            consistent_read=True))


def all_members(code: str) -> list[Member]:
    return list(Member.scan(Member.channel_code == code, consistent_read=True))


def linked(code: str, external_id: str) -> str | None:
    try:
        return MemberLink.get(f"{code}#{external_id}", consistent_read=True).member_id
    except DoesNotExist:
        return None


def nonce_spent(code: str, nonce: str) -> bool:
    try:
        Nonce.get(f"{code}#{nonce}", consistent_read=True)
        return True
    except DoesNotExist:
        return False


@pytest.fixture
def live(ops):
    view, secret = channel(ops)
    return view["code"], secret


# --- a valid link ----------------------------------------------------------------------------

def test_valid_link_creates_member_session_and_redirects(system, live):
    code, secret = live
    ext = uid("M-")
    r = enter(system, code, link_params(secret, ext, nickname="小明 Li", mobile="13800000000", points="1500"))
    token = token_of(r)
    assert r.headers["Location"] == f"{system.base_url}/store/{code}"
    assert r.headers.get("Cache-Control") == "no-store"
    body = ok(me(system, code, token))
    assert body["channel_code"] == code and body["external_id"] == ext
    assert body["nickname"] == "小明 Li" and body["mobile"] == "13800000000" and body["remote_points"] == 1500
    stored = members_of(code, ext)
    assert len(stored) == 1 and stored[0].member_id == body["member_id"]
    assert linked(code, ext) == body["member_id"]


def test_second_entry_maps_to_the_same_member_and_refreshes_profile(system, live):
    code, secret = live
    ext = uid("M-")
    first = ok(me(system, code, token_of(enter(system, code, link_params(secret, ext, nickname="Ann")))))
    second = ok(me(system, code, token_of(enter(system, code, link_params(secret, ext, nickname="Annie")))))
    assert first["member_id"] == second["member_id"]
    assert second["nickname"] == "Annie"
    assert len(members_of(code, ext)) == 1


# --- every refusal --------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["member_id", "timestamp", "nonce", "sign"])
def test_missing_field(system, live, field):
    code, secret = live
    ext = uid("M-")
    params = {"member_id": ext, "timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    params.pop(field, None)
    params = signed_params(params, secret)
    if field == "sign":
        params.pop("sign")
    r = enter(system, code, params)
    assert_error(r, 400, "missing_field", field)
    assert members_of(code, ext) == [] and linked(code, ext) is None


@pytest.mark.parametrize("nonce", ["a" * 15, "n" * 65, "short"])
def test_invalid_nonce(system, live, nonce):
    code, secret = live
    ext = uid("M-")
    assert_error(enter(system, code, link_params(secret, ext, nonce=nonce)), 400, "invalid_nonce", "nonce")
    assert members_of(code, ext) == []


@pytest.mark.parametrize("skew", [-301 - 60, +301 + 60, -86_400])
def test_timestamp_outside_window(system, live, skew):
    code, secret = live
    ext = uid("M-")
    params = link_params(secret, ext, now=time.time() + skew)
    assert_error(enter(system, code, params), 401, "timestamp_expired", "timestamp")
    assert members_of(code, ext) == [] and not nonce_spent(code, params["nonce"])


def test_timestamp_inside_window_is_accepted(system, live):
    code, secret = live
    token_of(enter(system, code, link_params(secret, uid("M-"), now=time.time() - 240)))
    token_of(enter(system, code, link_params(secret, uid("M-"), now=time.time() + 240)))


def test_bad_signature_wrong_secret(system, live):
    code, secret = live
    ext = uid("M-")
    params = link_params("not-" + secret, ext)
    assert_error(enter(system, code, params), 401, "bad_signature", "sign")
    assert members_of(code, ext) == [] and not nonce_spent(code, params["nonce"])


def test_bad_signature_garbage_sign(system, live):
    code, secret = live
    params = {**link_params(secret, uid("M-")), "sign": "zz"}
    assert_error(enter(system, code, params), 401, "bad_signature")


def test_nonce_replayed(system, live):
    code, secret = live
    ext = uid("M-")
    params = link_params(secret, ext)
    token_of(enter(system, code, params))
    assert nonce_spent(code, params["nonce"])
    assert_error(enter(system, code, params), 401, "nonce_replayed", "nonce")
    # the same nonce with a fresh, genuinely signed link is still a replay
    again = link_params(secret, uid("M-"), nonce=params["nonce"])
    assert_error(enter(system, code, again), 401, "nonce_replayed")


def test_same_nonce_in_two_channels_is_not_a_replay(system, ops):
    view_a, secret_a = channel(ops)
    view_b, secret_b = channel(ops)
    nonce = secrets.token_hex(12)
    token_of(enter(system, view_a["code"], link_params(secret_a, "M-1", nonce=nonce)))
    token_of(enter(system, view_b["code"], link_params(secret_b, "M-1", nonce=nonce)))


def test_an_unknown_channel_answers_as_a_wrong_signature_does(system, live):
    """Which channel codes exist is nobody's business but a signer's: an unknown code and a known one with a
    forged link get the same answer."""
    code, _ = live
    forged = link_params("not-the-secret", "M-1")
    known, unknown = enter(system, code, forged), enter(system, uid("nochan-"), forged)
    assert (known.status_code, error_of(known)) == (unknown.status_code, error_of(unknown)) == (
        401, {"code": "bad_signature", "message": "the signature does not match", "field": "sign"})
    unsigned = {"member_id": "M-1", "timestamp": str(int(time.time()))}
    assert error_of(enter(system, code, unsigned)) == error_of(enter(system, uid("nochan-"), unsigned))


def test_a_suspended_channel_is_told_only_to_a_proven_signer(system, ops, live):
    code, secret = live
    ok(ops.post(f"/ops/channels/{code}/suspend"))
    assert_error(enter(system, code, link_params("not-" + secret, uid("M-"))), 401, "bad_signature")
    assert_error(enter(system, code, link_params(secret, uid("M-"))), 403, "channel_suspended")
    ok(ops.post(f"/ops/channels/{code}/resume"))


def test_signed_partner_calls_tell_nothing_of_unknown_or_suspended_channels_to_a_forger(system, ops, live):
    from tools.sign import signed_request

    code, secret = live
    nobody = uid("nochan-")

    def call(channel_code: str, with_secret: str) -> requests.Response:
        url, headers = signed_request(system.base_url, with_secret, "GET", f"/partner/{channel_code}/members/M-1/orders")
        return requests.get(url, headers=headers, timeout=30)

    known, unknown = call(code, "forged"), call(nobody, "forged")
    assert (known.status_code, error_of(known)) == (unknown.status_code, error_of(unknown))
    assert known.status_code == 401 and error_of(known)["code"] == "bad_signature"
    ok(ops.post(f"/ops/channels/{code}/suspend"))
    assert_error(call(code, "forged"), 401, "bad_signature")
    assert_error(call(code, secret), 403, "channel_suspended")
    ok(ops.post(f"/ops/channels/{code}/resume"))


@pytest.mark.parametrize("member_id", ["ann@example.com", "+8613800000000", "a.b:c~d_e-f", "Zoë 张", "x/y#1?"])
def test_every_member_id_entry_takes_can_be_named_in_a_path(system, live, member_id):
    """One member-id alphabet: a member a channel can create it can read back through its path routes."""
    from tools.sign import signed_request

    from chalicelib.channels.signing import encode

    code, secret = live
    token_of(enter(system, code, link_params(secret, member_id)))
    path = f"/partner/{code}/members/{encode(member_id)}/orders"  # path parameters go percent-encoded (contract)
    url, headers = signed_request(system.base_url, secret, "GET", path)
    assert ok(requests.get(url, headers=headers, timeout=30))["orders"] == []


@pytest.mark.parametrize("member_id", ["100%", "%41", "a\tb", "m" * 65])
def test_a_member_id_a_path_could_not_name_for_sure_is_refused_at_entry_and_creates_nobody(system, live, member_id):
    code, secret = live
    params = link_params(secret, member_id)
    assert_error(enter(system, code, params), 400, "invalid_field", "member_id")
    assert members_of(code, member_id) == [] and not nonce_spent(code, params["nonce"])


def test_channel_suspended_then_resumed(system, ops, live):
    code, secret = live
    ext = uid("M-")
    assert ok(ops.post(f"/ops/channels/{code}/suspend"))["status"] == "suspended"
    params = link_params(secret, ext)
    assert_error(enter(system, code, params), 403, "channel_suspended")
    assert members_of(code, ext) == [] and not nonce_spent(code, params["nonce"])
    assert ok(ops.post(f"/ops/channels/{code}/resume"))["status"] == "active"
    token = token_of(enter(system, code, link_params(secret, ext)))
    assert ok(me(system, code, token))["external_id"] == ext


@pytest.mark.parametrize("case, status, error_code", [
    ("missing", 400, "missing_field"),
    ("bad_sign", 401, "bad_signature"),
    ("expired", 401, "timestamp_expired"),
    ("no_channel", 401, "bad_signature"),
    ("suspended", 403, "channel_suspended"),
])
def test_browser_gets_an_html_error_page_with_the_code(system, ops, case, status, error_code):
    view, secret = channel(ops)
    code = view["code"]
    params = link_params(secret, uid("M-"))
    if case == "missing":
        params.pop("nonce")
    elif case == "bad_sign":
        params["sign"] = "0" * 64
    elif case == "expired":
        params = link_params(secret, uid("M-"), now=time.time() - 3600)
    elif case == "no_channel":
        code = uid("nochan-")
    elif case == "suspended":
        ok(ops.post(f"/ops/channels/{code}/suspend"))
    r = enter(system, code, params, headers=HTML)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text and error_code in r.text
    assert "Traceback" not in r.text and "Set-Cookie" not in r.headers
    # the same failure for an API client is the JSON contract error (a refused link spent no nonce)
    json_r = enter(system, code, params)
    assert json_r.headers["Content-Type"].startswith("application/json")
    assert error_of(json_r)["code"] == error_code


SIGNED_FIELDS = {
    "member_id": lambda v: v + "X",
    "nickname": lambda v: v + "!",
    "mobile": lambda v: v[:-1] + ("1" if v[-1] != "1" else "2"),
    "points": lambda v: str(int(v) + 1),
    "target": lambda v: v.replace("G1", "G2"),
    "timestamp": lambda v: str(int(v) - 1),
    "nonce": lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),
}


@pytest.mark.parametrize("field", list(SIGNED_FIELDS))
def test_tampering_any_signed_field_fails_and_spends_nothing(system, live, field):
    code, secret = live
    ext = uid("M-")
    params = link_params(secret, ext, nickname="Ann", mobile="13800000000", points="100", target="/goods/G1")
    tampered = {**params, field: SIGNED_FIELDS[field](params[field])}
    assert tampered[field] != params[field]
    assert_error(enter(system, code, tampered), 401, "bad_signature", "sign")
    assert members_of(code, ext) == [] and members_of(code, tampered["member_id"]) == []
    assert not nonce_spent(code, params["nonce"]) and not nonce_spent(code, tampered["nonce"])
    # the genuine link still works: the forgery burned neither the nonce nor the member id
    r = enter(system, code, params)
    assert r.headers["Location"] == f"{system.base_url}/store/{code}#/goods/G1"
    assert ok(me(system, code, token_of(r)))["remote_points"] == 100


def test_adding_an_unsigned_field_fails(system, live):
    code, secret = live
    params = {**link_params(secret, uid("M-")), "points": "999999"}
    assert_error(enter(system, code, params), 401, "bad_signature")


def test_failed_entries_create_no_member_and_the_next_valid_one_is_the_first(system, ops, live):
    code, secret = live
    ext = uid("M-")
    attempts = [
        {k: v for k, v in link_params(secret, ext).items() if k != "sign"},
        link_params(secret, ext, nonce="short"),
        link_params(secret, ext, now=time.time() - 1000),
        link_params("wrong-secret", ext),
        {**link_params(secret, ext, nickname="A"), "nickname": "B"},
    ]
    for params in attempts:
        r = enter(system, code, params)
        assert r.status_code in (400, 401), r.text
        assert "Set-Cookie" not in r.headers
    assert members_of(code, ext) == [] and linked(code, ext) is None
    assert all_members(code) == []
    before = time.time()
    token = token_of(enter(system, code, link_params(secret, ext, nickname="First")))
    body = ok(me(system, code, token))
    stored = members_of(code, ext)
    assert len(stored) == 1 and stored[0].member_id == body["member_id"]
    assert stored[0].nickname == "First"
    assert stored[0].created_at >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
    assert linked(code, ext) == body["member_id"]


# --- secret rotation ----------------------------------------------------------------------------

def test_previous_secret_accepted_during_overlap_and_refused_after(system, ops, live):
    code, first = live
    rotated = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 600}))
    second = rotated["secret"]
    assert second != first
    assert rotated["channel"]["previous_secret_until"] >= int(time.time()) + 590
    assert "secret" not in rotated["channel"] and first not in str(rotated["channel"])
    token_of(enter(system, code, link_params(first, uid("M-"))))    # old, within overlap
    token_of(enter(system, code, link_params(second, uid("M-"))))   # new
    # A second rotation inside the overlap is refused (it would drop a secret still in use).
    assert_error(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 0}), 409, "rotation_in_progress")


def test_rotation_without_overlap_refuses_the_old_secret_at_once(system, ops, live):
    code, first = live
    second = ok(ops.post(f"/ops/channels/{code}/secret", json={"overlap_seconds": 0}))["secret"]
    assert_error(enter(system, code, link_params(first, uid("M-"))), 401, "bad_signature")
    token_of(enter(system, code, link_params(second, uid("M-"))))


# --- target redirect ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target, location", [
    ("/goods/G1", "#/goods/G1"),
    ("/topics/t-1?from=home", "#/topics/t-1?from=home"),
    ("//evil.com", ""),
    ("//evil.com/goods/G1", ""),
    ("https://evil.com", ""),
    ("http://evil.com/goods", ""),
    ("javascript:alert(1)", ""),
    ("/\\evil.com", ""),
    ("goods/G1", ""),
    ("/goods/<script>", ""),
])
def test_target_redirect_stays_inside_the_store(system, live, target, location):
    code, secret = live
    r = enter(system, code, link_params(secret, uid("M-"), target=target))
    token_of(r)
    assert r.headers["Location"] == f"{system.base_url}/store/{code}{location}"


# --- the race: one member per external id ------------------------------------------------------

def test_fifty_concurrent_first_entries_make_exactly_one_member(system, live):
    code, secret = live
    ext = uid("race-")
    links = [link_params(secret, ext, nickname="Racer") for _ in range(50)]
    barrier = threading.Barrier(50)

    def go(params):
        with requests.Session() as client:
            warm(system, code, client)
            barrier.wait()
            return enter(system, code, params, client=client)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(go, links))
    assert [r.status_code for r in responses] == [302] * 50, [r.text for r in responses if r.status_code != 302]
    stored = members_of(code, ext)
    assert len(stored) == 1, [m.member_id for m in stored]
    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(lambda r: ok(me(system, code, token_of(r)))["member_id"], responses))
    assert ids == {stored[0].member_id}
    assert linked(code, ext) == stored[0].member_id
    assert [m.member_id for m in all_members(code)] == [stored[0].member_id]


def test_two_external_ids_never_share_a_member_even_racing(system, live):
    code, secret = live
    a, b = uid("A-"), uid("B-")
    links = [(ext, link_params(secret, ext)) for _ in range(12) for ext in (a, b)]
    barrier = threading.Barrier(len(links))

    def go(item):
        ext, params = item
        with requests.Session() as client:
            warm(system, code, client)
            barrier.wait()
            response = enter(system, code, params, client=client)
        return ext, ok(me(system, code, token_of(response)))

    with ThreadPoolExecutor(len(links)) as pool:
        results = list(pool.map(go, links))
    by_ext: dict[str, set[str]] = {}
    for ext, body in results:
        assert body["external_id"] == ext
        by_ext.setdefault(ext, set()).add(body["member_id"])
    assert len(by_ext[a]) == 1 and len(by_ext[b]) == 1
    assert by_ext[a].isdisjoint(by_ext[b])
    assert len(members_of(code, a)) == 1 and len(members_of(code, b)) == 1
    assert linked(code, a) in by_ext[a] and linked(code, b) in by_ext[b]


def test_same_external_id_in_two_channels_is_two_members(system, ops):
    view_a, secret_a = channel(ops)
    view_b, secret_b = channel(ops)
    ext = uid("M-")
    ma = ok(me(system, view_a["code"], token_of(enter(system, view_a["code"], link_params(secret_a, ext)))))
    mb = ok(me(system, view_b["code"], token_of(enter(system, view_b["code"], link_params(secret_b, ext)))))
    assert ma["member_id"] != mb["member_id"]
    assert (ma["channel_code"], mb["channel_code"]) == (view_a["code"], view_b["code"])


# --- one-time code exchange through the channel's member API ------------------------------------

@pytest.fixture
def fake():
    server = FakeChannel().start()
    yield server
    server.stop()


def code_channel(ops, api_base_url: str) -> tuple[str, str]:
    view, secret = channel(ops, entry_mode="code", api_base_url=api_base_url)
    assert view["entry_mode"] == "code"
    return view["code"], secret


def test_code_exchange_success(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret = secret
    ext = uid("EXT-")
    fake.member("one-time-1", ext, nickname="王五", mobile="13900000000", points=321)
    r = enter(system, code, {"code": "one-time-1", "target": "/goods/G9"})
    token = token_of(r)
    assert r.headers["Location"] == f"{system.base_url}/store/{code}#/goods/G9"
    body = ok(me(system, code, token))
    assert (body["external_id"], body["nickname"], body["mobile"], body["remote_points"]) == \
        (ext, "王五", "13900000000", 321)
    assert [m.member_id for m in members_of(code, ext)] == [body["member_id"]]
    calls = fake.calls_to("/member/exchange")
    assert len(calls) == 1
    call = calls[0]
    assert call.method == "POST" and call.json == {"code": "one-time-1"}
    assert call.signature_ok, call.signature_error
    assert call.headers["content-type"].startswith("application/json")
    # the code is single use at the channel: a second exchange is rejected
    assert_error(enter(system, code, {"code": "one-time-1"}), 401, "entry_code_rejected")


def test_code_exchange_channel_down(system, ops):
    code, _ = code_channel(ops, closed_url())
    r = enter(system, code, {"code": "abc"})
    assert_error(r, 502, "channel_api_unavailable")  # refused at connect: not a timeout
    assert all_members(code) == []


def test_code_exchange_channel_slow_times_out(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode = secret, SLOW
    fake.member("c-slow", uid("EXT-"))
    started = time.monotonic()
    r = enter(system, code, {"code": "c-slow"})
    elapsed = time.monotonic() - started
    assert_error(r, 502, "channel_api_timeout")
    assert 2.9 <= elapsed < 60, elapsed  # the 3 s read timeout, not the channel's pace (it holds the answer 120 s)
    assert len(fake.calls_to("/member/exchange")) == 1       # a timeout is not retried
    assert all_members(code) == []


def test_code_exchange_garbage_answer(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode = secret, GARBAGE
    assert_error(enter(system, code, {"code": "abc"}), 502, "channel_api_bad_response")
    assert len(fake.calls) == 1 and fake.calls[0].signature_ok
    assert all_members(code) == []


def test_code_exchange_answer_without_member_id(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret = secret
    fake.identities["no-id"] = {"nickname": "Nobody"}
    assert_error(enter(system, code, {"code": "no-id"}), 502, "channel_api_bad_response")
    assert all_members(code) == []


def test_code_exchange_retries_after_503(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode, fake.fail_first = secret, FLAKY, 2
    ext = uid("EXT-")
    fake.member("c-flaky", ext, nickname="Retry")
    body = ok(me(system, code, token_of(enter(system, code, {"code": "c-flaky"}))))
    assert body["external_id"] == ext and body["nickname"] == "Retry"
    calls = fake.calls_to("/member/exchange")
    assert [c.answered for c in calls] == [503, 503, 200]
    assert all(c.signature_ok for c in calls), [c.signature_error for c in calls]
    assert len({c.nonce for c in calls}) == 3          # each attempt freshly signed


def test_code_exchange_gives_up_after_bounded_retries(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode, fake.fail_first = secret, FLAKY, 100
    fake.member("c-busy", uid("EXT-"))
    assert_error(enter(system, code, {"code": "c-busy"}), 502, "channel_api_unavailable")
    assert [c.answered for c in fake.calls] == [503, 503, 503]
    assert all_members(code) == []


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_code_exchange_rejected(system, ops, fake, status):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode, fake.reject_status = secret, REJECT, status
    assert_error(enter(system, code, {"code": "bad"}), 401, "entry_code_rejected")
    assert len(fake.calls) == 1 and fake.calls[0].signature_ok    # 4xx is final, not retried
    assert all_members(code) == []


def test_code_exchange_unknown_code_rejected(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret = secret
    assert_error(enter(system, code, {"code": "never-issued"}), 401, "entry_code_rejected")
    assert all_members(code) == []


@pytest.mark.parametrize("mode, status, error_code", [
    ("down", 502, "channel_api_unavailable"),
    (GARBAGE, 502, "channel_api_bad_response"),
    (REJECT, 401, "entry_code_rejected"),
])
def test_code_exchange_failure_shows_members_an_html_page(system, ops, fake, mode, status, error_code):
    code, secret = code_channel(ops, closed_url() if mode == "down" else fake.url)
    fake.secret = secret
    if mode != "down":
        fake.mode = mode
    r = enter(system, code, {"code": "x"}, headers=HTML)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("text/html")
    assert error_code in r.text and "Traceback" not in r.text
    assert "Set-Cookie" not in r.headers
    assert all_members(code) == []


def test_signed_channel_ignores_a_code_and_demands_a_signature(system, ops, fake):
    view, secret = channel(ops, api_base_url=fake.url)       # entry_mode stays "signed"
    fake.secret = secret
    fake.member("c-1", uid("EXT-"))
    assert_error(enter(system, view["code"], {"code": "c-1"}), 400, "missing_field", "member_id")
    assert fake.calls == []
    assert all_members(view["code"]) == []


def test_code_exchange_channel_server_error_is_not_a_rejection(system, ops, fake):
    code, secret = code_channel(ops, fake.url)
    fake.secret, fake.mode, fake.reject_status = secret, REJECT, 500
    assert_error(enter(system, code, {"code": "abc"}), 502, "channel_api_unavailable")
    assert len(fake.calls) == 1                      # 500 is not one of the retried statuses
    assert all_members(code) == []


@pytest.mark.parametrize("identity", [
    {"member_id": 12345, "nickname": "N"},
    {"member_id": "", "nickname": "N"},
    {"member_id": "X-1", "points": "lots"},
    {"member_id": "X-2", "nickname": 5},
    {"member_id": "X-3", "mobile": ["13800000000"]},
])
def test_code_exchange_identity_with_wrong_types_is_a_bad_response(system, ops, fake, identity):
    code, secret = code_channel(ops, fake.url)
    fake.secret = secret
    fake.identities["typed"] = identity
    r = enter(system, code, {"code": "typed"})
    assert_error(r, 502, "channel_api_bad_response")
    assert all_members(code) == []


def test_duplicated_query_parameter_cannot_swap_the_member(system, live):
    """A valid link with the victim's id smuggled in as a second ``member_id`` never enters as the victim:
    contract v2 refuses a repeated key before any signature is checked, and spends no nonce."""
    code, secret = live
    victim, attacker = uid("V-"), uid("A-")
    params = link_params(secret, attacker)
    query = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in params.items())
    for url in (f"{system.base_url}/entry/{code}?{query}&member_id={victim}",
                f"{system.base_url}/entry/{code}?member_id={victim}&{query}"):
        r = requests.get(url, allow_redirects=False, timeout=30)
        assert_error(r, 400, "duplicate_parameter", "member_id")
        assert "Set-Cookie" not in r.headers
    assert members_of(code, victim) == [] and linked(code, victim) is None
    token_of(enter(system, code, params))  # the genuine link was never spent


def test_signed_but_malformed_points_creates_no_member(system, live):
    code, secret = live
    ext = uid("M-")
    assert_error(enter(system, code, link_params(secret, ext, points="lots")), 400, "invalid_field", "points")
    assert members_of(code, ext) == [] and linked(code, ext) is None
