"""Ops pages that open in a browser on the local stack: the printed ops token, typed once at ``/ops/sign-in``,
becomes a signed session cookie (``HttpOnly; SameSite=Strict``, never the token itself) that opens every ops
page; a state-changing ops call with the cookie needs the session's CSRF token; sessions expire; sign out.
Over HTTP, and in headless Chromium from the printed report link."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from checkout_helpers import assert_error, ok
from chalicelib.callers import ops_sessions as sessions
from chalicelib.core import config
from test_store_browser import TIMEOUT_MS, browser  # noqa: F401  (a fixture: one headless Chromium)

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
HTML = {"Accept": "text/html,application/xhtml+xml"}


def signed_in(system) -> requests.Session:
    """A browser-like client that signed in with the ops token (and kept the cookie)."""
    browser_like = requests.Session()
    answer = browser_like.post(f"{system.base_url}/ops/sign-in", data={"token": system.ops_token,
                                                                       "next": "/ops/home"},
                               allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    return browser_like


def csrf_of(system, client: requests.Session) -> str:
    page = client.get(f"{system.base_url}/ops/home", timeout=30)
    assert page.status_code == 200, page.text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)[1]


def new_supplier(ops) -> str:
    tag = uuid.uuid4().hex[:10]
    return ok(ops.post("/ops/suppliers", json={
        "name": f"Sign-in Test Supplier {tag}", "contact_name": "Li Lei", "phone": "+86 138 0000 0000",
        "email": f"{tag}@example.com", "licence_no": f"LIC-{tag}",
        "bank_account": {"bank": "ICBC", "account_name": "Li Lei", "account_no": "6222 0000 1111 2222"}}),
        201)["supplier"]["supplier_id"]


def test_a_browser_without_a_session_is_sent_to_sign_in_and_an_api_client_gets_401(system):
    page = requests.get(f"{system.base_url}/ops/reports/operating?channels=x", headers=HTML, allow_redirects=False,
                        timeout=30)
    assert page.status_code == 303
    assert page.headers["Location"] == "/ops/sign-in?next=" + quote("/ops/reports/operating?channels=x", safe="")
    assert_error(requests.get(f"{system.base_url}/ops/reports/operating", timeout=30), 401, "ops_auth_required")
    form = requests.get(f"{system.base_url}{page.headers['Location']}", timeout=30)
    assert form.status_code == 200 and 'name="token"' in form.text
    assert form.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in form.headers[
        "Content-Security-Policy"]
    assert 'value="/ops/reports/operating?channels=x"' in form.text


def test_the_token_once_gives_a_signed_session_cookie_that_is_not_the_token(system):
    wrong = requests.post(f"{system.base_url}/ops/sign-in", data={"token": system.ops_token + "x"},
                          allow_redirects=False, timeout=30)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    right = requests.post(f"{system.base_url}/ops/sign-in", allow_redirects=False, timeout=30,
                          data={"token": system.ops_token, "next": "/ops/reports/operating"})
    assert (right.status_code, right.headers["Location"]) == (303, "/ops/reports/operating")
    cookie = right.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")}
    assert {"HttpOnly", "SameSite", "Path", "Max-Age"} <= attributes and "SameSite=Strict" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert system.ops_token not in value and system.ops_token.split("-")[-1] not in value
    report = requests.get(f"{system.base_url}/ops/reports/operating", headers={"Cookie": f"cm_ops={value}"},
                          timeout=30)
    assert report.status_code == 200 and "<h1>Operating data" in report.text
    ok(requests.get(f"{system.base_url}/ops/channels", headers={"Cookie": f"cm_ops={value}"}, timeout=30))


@pytest.mark.parametrize("asked", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/store/x",
                                   "/ops/x\r\nSet-Cookie: a=b"])
def test_sign_in_never_redirects_off_the_ops_pages(system, asked):
    answer = requests.post(f"{system.base_url}/ops/sign-in", data={"token": system.ops_token, "next": asked},
                           allow_redirects=False, timeout=30)
    assert (answer.status_code, answer.headers["Location"]) == (303, "/ops/home")


def test_a_state_changing_call_with_the_cookie_needs_the_csrf_token(system, ops):
    supplier_id = new_supplier(ops)
    client = signed_in(system)
    url = f"{system.base_url}/ops/suppliers/{supplier_id}/refunds-borne-by"
    assert_error(client.put(url, json={"borne_by": "platform"}, timeout=30), 403, "csrf_required")
    assert_error(client.put(url, json={"borne_by": "platform"}, headers={"X-CSRF-Token": "0" * 43}, timeout=30),
                 403, "csrf_required")
    other = signed_in(system)  # another session's CSRF token is not this one's
    assert_error(client.put(url, json={"borne_by": "platform"}, headers={"X-CSRF-Token": csrf_of(system, other)},
                            timeout=30), 403, "csrf_required")
    rows = ok(ops.get(f"/ops/suppliers/{supplier_id}"))
    assert rows["supplier"].get("refunds_borne_by") in (None, "supplier"), rows  # nothing was written
    done = ok(client.put(url, json={"borne_by": "platform"}, headers={"X-CSRF-Token": csrf_of(system, client)},
                         timeout=30))
    assert done == {"supplier_id": supplier_id, "refunds_borne_by": "platform"}


def test_a_forged_tampered_or_expired_cookie_opens_nothing(system, monkeypatch):
    client = signed_in(system)
    value = client.cookies["cm_ops"]
    payload, mac = value.split(".")
    for forged in (f"{payload}.{mac[:-2]}AA", f"{payload[:-2]}e0.{mac}", "x.y", "nodot"):
        assert_error(requests.get(f"{system.base_url}/ops/channels", headers={"Cookie": f"cm_ops={forged}"},
                                  timeout=30), 401, "ops_session_invalid")
    # Signed with a key from another token (another run's): invalid here. (The app serves from this process:
    # the other token is in force only while the cookie is made.)
    monkeypatch.setattr(config, "LOCAL_OPS_TOKEN", "local-ops-another-run")
    elsewhere, _ = sessions.issue()
    monkeypatch.undo()
    assert_error(requests.get(f"{system.base_url}/ops/channels", headers={"Cookie": f"cm_ops={elsewhere}"},
                              timeout=30), 401, "ops_session_invalid")
    # Expired: a session issued long ago.
    old, session = sessions.issue(now=1_000_000)
    assert_error(requests.get(f"{system.base_url}/ops/channels", headers={"Cookie": f"cm_ops={old}"}, timeout=30),
                 401, "ops_session_expired")
    with pytest.raises(Exception) as refused:
        sessions.read(old, now=session.expires_at)
    assert refused.value.code == "ops_session_expired"
    assert sessions.read(old, now=session.expires_at - 1) == session


def test_sessions_exist_only_on_the_local_stack(monkeypatch):
    monkeypatch.setattr(config, "IS_LOCAL", False)
    monkeypatch.setattr(config, "LOCAL_OPS_TOKEN", "local-ops-token")
    assert not sessions.token_matches("local-ops-token")
    with pytest.raises(Exception) as refused:
        sessions.issue()
    assert refused.value.code == "ops_auth_required"


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(system):
    client = signed_in(system)
    refused = client.post(f"{system.base_url}/ops/sign-out", data={"csrf": "nope"}, allow_redirects=False,
                          timeout=30)
    assert_error(refused, 403, "csrf_required")
    out = client.post(f"{system.base_url}/ops/sign-out", data={"csrf": csrf_of(system, client)},
                      allow_redirects=False, timeout=30)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert "cm_ops" not in client.cookies
    assert_error(client.get(f"{system.base_url}/ops/channels", timeout=30), 401, "ops_auth_required")


def test_ops_sign_in_then_the_printed_report_link_opens_in_chromium(system, browser):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(f"{system.base_url}/ops/reports/operating")  # the link make run prints
        assert "/ops/sign-in" in page.url
        page.screenshot(path=str(SHOTS / f"ops-sign-in-{width}.png"), full_page=True, timeout=90_000)
        page.fill("input[name=token]", system.ops_token)
        page.click("button[type=submit]")
        page.wait_for_selector("h1")
        assert page.url == f"{system.base_url}/ops/reports/operating"
        assert page.inner_text("h1").startswith("Operating data")
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session
        page.screenshot(path=str(SHOTS / f"ops-report-{width}.png"), full_page=True, timeout=90_000)
        page.goto(f"{system.base_url}/ops/home")
        page.click("text=Sign out")
        page.wait_for_url("**/ops/sign-in")
        page.goto(f"{system.base_url}/ops/reports/operating")
        assert "/ops/sign-in" in page.url  # signed out: back to the sign-in page
        context.close()


# --- the rules alone ----------------------------------------------------------------------------------

def test_a_session_admits_reads_and_only_csrf_carrying_writes(monkeypatch):
    monkeypatch.setattr(config, "IS_LOCAL", True)
    monkeypatch.setattr(config, "LOCAL_OPS_TOKEN", "local-ops-unit")
    value, session = sessions.issue(now=1_000)
    for method in ("GET", "HEAD"):
        assert sessions.admit(value, method, None, now=1_001) == session
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for csrf in (None, "", "wrong", session.csrf + "x", "é"):
            with pytest.raises(Exception) as refused:
                sessions.admit(value, method, csrf, now=1_001)
            assert refused.value.code == "csrf_required"
        assert sessions.admit(value, method, session.csrf, now=1_001) == session
    other, _ = sessions.issue(now=1_000)
    assert sessions.read(other, now=1_001).csrf != session.csrf
    assert sessions.token_matches("local-ops-unit") and not sessions.token_matches("local-ops-uni")
    assert not sessions.token_matches("lócal-ops-unit") and not sessions.token_matches(None)


@pytest.mark.parametrize("asked, goes", [
    ("/ops/reports/operating", "/ops/reports/operating"), ("/ops/channels/bank-a/guide?format=md",
                                                           "/ops/channels/bank-a/guide?format=md"),
    ("//evil.example/ops/", "/ops/home"), ("/ops\\..\\evil", "/ops/home"), ("javascript:alert(1)", "/ops/home"),
    ("", "/ops/home"), (None, "/ops/home"), ("/opsx/y", "/ops/home")])
def test_after_sign_in_only_ops_pages_of_this_site(asked, goes):
    from chalicelib.routes.console import safe_next
    assert safe_next(asked) == goes


def test_a_deployed_stage_ignores_the_cookie_and_has_no_sign_in(system):
    """The same function deployed (``STAGE=prod``, the local token even in its environment): an ops cookie minted
    with the local token opens nothing, and there is no sign-in page; with ``STAGE=local`` the cookie opens."""
    from test_stage import event, run_lambda

    value = signed_in(system).cookies["cm_ops"]
    calls = [event("GET", "/ops/channels", {}, headers={"Cookie": f"cm_ops={value}"}),
             event("GET", "/ops/sign-in", {}, headers={"Accept": "text/html"}),
             event("POST", "/ops/sign-in", {}, headers={"Content-Type": "application/x-www-form-urlencoded"})]
    calls[2]["body"] = f"token={system.ops_token}"
    listed, page, posted = run_lambda(calls, stage="prod")
    assert (listed["statusCode"], json.loads(listed["body"])["error"]["code"]) == (403, "ops_auth_required")
    assert page["statusCode"] == posted["statusCode"] == 404 and "set-cookie" not in {
        k.lower() for k in (posted.get("headers") or {})}
    listed, _, _ = run_lambda(calls, stage="local")
    assert listed["statusCode"] == 200, listed
