"""Channel back-end URLs (defect 10): member passwords and points travel there, so the URL is https outside
the local stage, never a private, loopback, link-local or otherwise non-public address (refused when set,
and again when a call resolves the host), and a redirect from the channel is a failed call, never followed.

The local stage allows http and loopback (the fakes live there); tests of a deployed stage run
deployed-shape API Gateway events through the real handler with the stage's ``IS_LOCAL`` off.
"""
from __future__ import annotations

import json
import time

import pytest
import requests

from api_gateway import event, invoke
from chalicelib import config
from chalicelib.models import Channel
from fake_channel import REDIRECT, FakeChannel
from helpers import assert_error, channel, channel_body, error_of, ok, uid

OPS_ARN = "arn:aws:iam::123456789012:user/ops-alice"


@pytest.fixture
def fake():
    server = FakeChannel().start()
    yield server
    server.stop()


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/api", "http://172.16.0.1/", "http://192.168.1.1:8080/", "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data", "http://0.0.0.0:8080/", "http://224.0.0.1/",
    "http://10.1/", "http://0x0a000001/",                                    # short and hex forms of 10.0.0.1
    "http://[fd00::1]/", "http://[fe80::1]/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:169.254.169.254]/",
])
def test_private_and_reserved_addresses_are_refused_when_set(ops, url):
    assert_error(ops.post("/ops/channels", json=channel_body(api_base_url=url)), 422, "private_api_base_url",
                 "api_base_url")
    view, _ = channel(ops, api_base_url="https://partner.example.com/api")
    assert_error(ops.patch(f"/ops/channels/{view['code']}", json={"api_base_url": url}), 422,
                 "private_api_base_url", "api_base_url")
    assert ok(ops.get(f"/ops/channels/{view['code']}"))["api_base_url"] == "https://partner.example.com/api"


@pytest.mark.parametrize("url", ["https://user:secret@partner.example.com/api", "https://partner.example.com/?x=1"])
def test_credentials_or_a_query_in_the_base_url_are_refused(ops, url):
    assert_error(ops.post("/ops/channels", json=channel_body(api_base_url=url)), 422, "invalid_api_base_url",
                 "api_base_url")


# --- a deployed stage: https only, loopback refused too ------------------------------------------------

@pytest.fixture
def deployed(monkeypatch):
    """This process answers as a deployed stage would (the local ops token no longer works; IAM does)."""
    monkeypatch.setattr(config, "IS_LOCAL", False)


def ops_event(method: str, path: str, resource: str, params: dict, body: dict) -> dict:
    return event(method, path, resource, params, headers={"Content-Type": ["application/json"]},
                 body=json.dumps(body).encode(), identity={"userArn": OPS_ARN, "caller": "AIDAEXAMPLE"})


@pytest.mark.parametrize("url, code", [
    ("http://partner.example.com/api", "insecure_api_base_url"),
    ("https://127.0.0.1:8443/api", "private_api_base_url"),
    ("https://[::1]/api", "private_api_base_url"),
])
def test_a_deployed_stage_requires_https_to_a_public_address(system, deployed, url, code):
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {},
                                      channel_body(api_base_url=url)))
    assert (answer.status_code, error_of(answer)["code"]) == (422, code), answer.text


def test_a_deployed_stage_accepts_https_and_refuses_an_edit_to_http(system, deployed):
    body = channel_body(api_base_url="https://partner.example.com/api")
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {}, body))
    assert answer.status_code == 201, answer.text
    code = body["code"]
    answer = invoke(system, ops_event("PATCH", f"/ops/channels/{code}", "/ops/channels/{code}", {"code": code},
                                      {"api_base_url": "http://partner.example.com/api"}))
    assert (answer.status_code, error_of(answer)["code"]) == (422, "insecure_api_base_url")
    assert Channel.get(code).api_base_url == "https://partner.example.com/api"


# --- at call time: the host is resolved and checked before anything is sent -----------------------------

def code_entry(system, code: str, one_time: str) -> requests.Response:
    return requests.get(f"{system.base_url}/entry/{code}", params={"code": one_time}, allow_redirects=False,
                        timeout=30)


def test_a_stored_private_address_is_refused_at_call_time(system, ops):
    """A URL stored before the rule (or written behind the API) is still never called."""
    view, _ = channel(ops, entry_mode="code", api_base_url="https://partner.example.com/api")
    Channel(view["code"]).update(actions=[Channel.api_base_url.set("http://10.255.255.1:81/api")])
    started = time.monotonic()
    assert_error(code_entry(system, view["code"], "one-time"), 502, "channel_api_address_refused")
    assert time.monotonic() - started < 1.5   # refused before any connection attempt (which would time out)


def test_a_host_that_resolves_to_loopback_is_refused_outside_the_local_stage(system, ops, fake, deployed):
    """``localhost`` passes the set-time check (it is a name); resolving it at call time finds 127.0.0.1."""
    port = fake.url.rsplit(":", 1)[1]
    body = channel_body(entry_mode="code", api_base_url=f"https://localhost:{port}")
    answer = invoke(system, ops_event("POST", "/ops/channels", "/ops/channels", {}, body))
    assert answer.status_code == 201, answer.text
    code = body["code"]
    fake.secret = answer.json()["secret"]
    fake.member("one-time", uid("EXT-"))
    answer = invoke(system, event("GET", f"/entry/{code}", "/entry/{code}", {"code": code},
                                  query={"code": ["one-time"]}))
    assert (answer.status_code, error_of(answer)["code"]) == (502, "channel_api_address_refused")
    assert fake.calls == []


def test_the_local_stage_calls_a_loopback_name(system, ops, fake):
    port = fake.url.rsplit(":", 1)[1]
    view, secret = channel(ops, entry_mode="code", api_base_url=f"http://localhost:{port}")
    fake.secret = secret
    fake.member("one-time", uid("EXT-"))
    assert code_entry(system, view["code"], "one-time").status_code == 302
    assert [c.signature_ok for c in fake.calls] == [True]


def test_a_redirect_from_the_channel_is_a_failed_call_never_followed(system, ops, fake):
    """A member's password or one-time code must reach only the registered back end."""
    elsewhere = FakeChannel().start()
    try:
        view, secret = channel(ops, entry_mode="code", api_base_url=fake.url)
        fake.secret = elsewhere.secret = secret
        fake.mode, fake.redirect_to = REDIRECT, f"{elsewhere.url}/member/exchange"
        elsewhere.member("one-time", uid("EXT-"))
        assert_error(code_entry(system, view["code"], "one-time"), 502, "channel_api_redirected")
        assert [c.answered for c in fake.calls] == [302]     # asked once, not retried
        assert elsewhere.calls == []                         # and never followed
    finally:
        elsewhere.stop()
