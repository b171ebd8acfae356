"""Each channel's integration guide (GET /ops/channels/{code}/guide): only for ops; generated from the channel's own
configuration (its mode's APIs, its entry URL, a signing example that works with its sandbox key and never shows
a live key); the snippets verbatim; error codes from the code; a checklist ticked by the calls the sandbox logged.
The HTML page is opened in headless Chromium as ops would."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import requests

from chalicelib.channels.signing import request_headers
from chalicelib.partners.kit import snippets
from test_store_browser import browser  # noqa: F401  (a fixture: one headless Chromium)
from helpers import assert_error, channel_body, ok, uid

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


def new_channel(ops, **fields) -> tuple[dict, str]:
    created = ok(ops.post("/ops/channels", json={**channel_body(), **fields}), 201)
    return created["channel"], created["secret"]


def guide(ops, code: str, fmt: str = "md") -> str:
    response = ops.get(f"/ops/channels/{code}/guide" + ("?format=md" if fmt == "md" else ""))
    assert response.status_code == 200, response.text
    return response.text


def checks(markdown: str) -> dict[str, bool]:
    """The checklist: item text → ticked."""
    return {m.group(2): m.group(1) == "x" for m in re.finditer(r"^- \[([ x])\] (.+?) — ", markdown, re.M)}


def test_only_ops_get_a_guide(anon, ops, system):
    view, _ = new_channel(ops, sandbox=True)
    assert_error(anon.get(f"/ops/channels/{view['code']}/guide"), 401, "ops_auth_required")
    wrong = requests.get(f"{system.base_url}/ops/channels/{view['code']}/guide", timeout=30,
                         headers={"Authorization": "Bearer local-ops-not-the-token"})
    assert_error(wrong, 401, "ops_auth_required")
    assert_error(ops.get("/ops/channels/no-such-channel/guide"), 404, "channel_not_found")
    assert_error(ops.get(f"/ops/channels/{view['code']}/guide?format=pdf"), 400, "validation_error")


def test_hosted_and_remote_guides_list_their_modes_apis(ops, system):
    hosted, _ = new_channel(ops, points_mode="hosted", payment_auth="otp", sandbox=True)
    remote, _ = new_channel(ops, points_mode="remote", entry_mode="code", sandbox=True)
    hosted_md, remote_md = guide(ops, hosted["code"]), guide(ops, remote["code"])
    assert f"`{system.base_url}/entry/{hosted['code']}?member_id=" in hosted_md
    for api in ("points/deduct", "points/query", "points/cancel", "points/refund", "points/refund/query"):
        assert f"`{api}`" in remote_md and f"`{api}`" not in hosted_md, api
    assert "`member/exchange`" in remote_md and "`member/exchange`" not in hosted_md  # code entry
    assert "`password/verify`" in remote_md and "`password/verify`" not in hosted_md  # hosted pays by SMS code
    assert f"POST /partner/{hosted['code']}/grants" in hosted_md
    assert f"POST /partner/{remote['code']}/grants" not in remote_md  # grants are for hosted points only
    assert "No API:" in hosted_md


def test_snippets_error_codes_and_webhooks_are_in_the_guide(ops):
    view, _ = new_channel(ops, sandbox=True, webhook_url="http://127.0.0.1:9/hooks")
    md = guide(ops, view["code"])
    for language in snippets.LANGUAGES:
        assert snippets.source(language).rstrip() in md, language  # verbatim, as CI runs them
    for code in ("bad_signature", "timestamp_expired", "nonce_replayed", "duplicate_parameter", "quota_exhausted",
                 "prepaid_exhausted", "partner_unavailable"):
        assert re.search(rf"^\| `{code}` \| \d", md, re.M), code
    assert "`order.paid`" in md and "webhook-signature" in md
    assert "Receive and verify a webhook" in md  # a webhook URL is set: its delivery is a checklist item


def test_sandbox_example_signs_with_its_key_and_works(ops, system):
    """The worked example is computed with the sandbox's own secret: its entry link opens the store."""
    view, secret = new_channel(ops, sandbox=True)
    md = guide(ops, view["code"])
    link = re.search(rf"^({re.escape(system.base_url)}/entry/\S+)$", md, re.M).group(1)
    entered = requests.get(link, allow_redirects=False, timeout=30)
    assert entered.status_code == 302, entered.text
    assert secret not in md


def test_live_guide_never_shows_the_live_secret(ops):
    view, secret = new_channel(ops, sandbox=False)
    md = guide(ops, view["code"])
    assert secret not in md
    assert "test-secret-123" in md  # the example uses the contract's published test-vector secret
    assert all(ticked is False for ticked in checks(md).values())  # a live channel's checklist is done on its sandbox
    assert "check on your sandbox channel" in md


def test_checklist_is_ticked_by_the_calls_the_sandbox_logged(ops, system):
    view, secret = new_channel(ops, sandbox=True)
    code = view["code"]
    ok(ops.post(f"/ops/channels/{code}/periods", json={"period_id": "P1", "starts_at": int(time.time()) - 10,
                                                         "ends_at": int(time.time()) + 3600}), 201)
    before = checks(guide(ops, code))
    assert before and not any(before.values()), before

    link = re.search(rf"^({re.escape(system.base_url)}/entry/\S+)$", guide(ops, code), re.M).group(1)
    assert requests.get(link, allow_redirects=False, timeout=30).status_code == 302  # an entry
    path = f"/partner/{code}/grants"
    body = json.dumps({"grant_id": uid("g-"), "member_id": "M1001", "points": 100,
                       "expires_at": int(time.time()) + 600}).encode()
    headers = {**request_headers("POST", path, body, secret), "Content-Type": "application/json"}
    assert requests.post(system.base_url + path, data=body, headers=headers, timeout=30).status_code == 201
    forged = {**request_headers("POST", path, body, "not-the-secret"), "Content-Type": "application/json"}
    assert_error(requests.post(system.base_url + path, data=body, headers=forged, timeout=30), 401, "bad_signature")

    after = checks(guide(ops, code))
    assert after["Open the store with a signed entry link"] is True
    assert after["Make a signed server-to-server call"] is True
    assert after["Grant points to a member"] is True
    assert after["See a refusal and read its code: send one request with a wrong `sign`"] is True
    assert after["Read an order back from your server"] is False  # not done yet



def test_ops_open_the_html_guide_in_a_browser(browser, ops, system):
    view, _ = new_channel(ops, sandbox=True, points_mode="remote")
    context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {system.ops_token}"})
    try:
        page = context.new_page()
        response = page.goto(f"{system.base_url}/ops/channels/{view['code']}/guide")
        assert response.status == 200
        assert page.title() == f"Integration guide: {view['code']}"
        assert page.locator("h1").inner_text().endswith(f"({view['code']})")
        assert page.locator("pre code.language-java").inner_text().strip() == snippets.source("java").strip()
        assert page.locator("li[data-check='api:points/deduct']").get_attribute("data-ticked") == "false"
        assert page.locator("table").count() >= 4
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "integration-guide.png"))
    finally:
        context.close()
    anonymous = browser.new_context()
    try:
        page = anonymous.new_page()
        page.goto(f"{system.base_url}/ops/channels/{view['code']}/guide")
        assert "/ops/sign-in?next=" in page.url  # no guide without the ops token: sent to sign in
        assert page.locator("input[name=token]").count() == 1 and "Integration guide" not in page.content()
    finally:
        anonymous.close()
