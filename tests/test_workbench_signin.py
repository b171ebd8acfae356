"""The supplier workbench's sign-in over HTTP: a one-time link made by the key holder or ops becomes a session
cookie (HttpOnly, SameSite=Strict) that proves "this supplier" to the same supplier routes as the API key; a
link works once (exactly one session however many use it at once) and briefly; state-changing calls need the
session's CSRF token; sign-out and expiry end a session; and a session never reaches another supplier's goods,
uploads, parcels, refunds or statements."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

from checkout_helpers import make_shop
from chalicelib.core import clock
from chalicelib.orders import parcels
from chalicelib.settlement import periods, runs
from chalicelib.supply import signin
from chalicelib.supply.models import SupplierSession
from helpers import assert_error, draft, ok, race, supplier_api, uid


def link_token(link: dict) -> str:
    fragment = urlsplit(link["url"]).fragment
    assert fragment.startswith("signin="), link
    return fragment.split("=", 1)[1]


def new_link(sup) -> dict:
    return ok(sup.post("/supplier/signin-links"), 201)


class Workbench:
    """A browser-like client of the workbench: the session cookie, and the CSRF token the page would read."""

    def __init__(self, base_url: str, cookie: str, csrf: str) -> None:
        self.base_url, self.cookie, self.csrf = base_url, cookie, csrf

    def call(self, method: str, path: str, csrf: bool = True, **kwargs) -> requests.Response:
        headers = {"Cookie": f"cm_supplier={self.cookie}", **kwargs.pop("headers", {})}
        if csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)


def sign_in(system, token: str) -> tuple[Workbench, requests.Response]:
    response = requests.post(f"{system.base_url}/supplier/session", json={"token": token}, timeout=30)
    body = ok(response, 201)
    cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    return Workbench(system.base_url, cookie, body["csrf_token"]), response


def signed_in(system, ops) -> tuple[Workbench, object, str]:
    sup, supplier_id = supplier_api(system, ops)
    bench, _ = sign_in(system, link_token(new_link(sup)))
    return bench, sup, supplier_id


def test_a_key_holders_link_becomes_a_strict_httponly_session_cookie_for_that_supplier(system, ops):
    sup, supplier_id = supplier_api(system, ops)
    link = new_link(sup)
    assert link["url"].startswith(f"{system.base_url}/workbench#signin=wbl_"), link
    assert link["expires_in"] == 15 * 60 and link["supplier_id"] == supplier_id
    bench, response = sign_in(system, link_token(link))
    attributes = [a.strip() for a in response.headers["Set-Cookie"].split(";")]
    assert attributes[0].startswith("cm_supplier=wbs_")
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"} <= set(attributes), attributes
    assert "Secure" not in attributes  # the plain-HTTP local stack; every deployed stage adds it
    body = response.json()
    assert body["supplier"]["supplier_id"] == supplier_id and body["csrf_token"]
    # the cookie alone proves the supplier to the supplier API's routes
    assert ok(bench.call("GET", "/supplier/me", csrf=False))["supplier_id"] == supplier_id
    assert ok(bench.call("GET", "/supplier/session", csrf=False))["csrf_token"] == bench.csrf
    # the page holds no secret and may not be framed
    page = requests.get(f"{system.base_url}/workbench", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Frame-Options"] == "DENY"


def test_a_link_works_once(system, ops):
    sup, _ = supplier_api(system, ops)
    token = link_token(new_link(sup))
    sign_in(system, token)
    assert_error(requests.post(f"{system.base_url}/supplier/session", json={"token": token}, timeout=30),
                 401, "signin_link_used")


def test_racing_uses_of_one_link_give_exactly_one_session(pooled, ops):
    """Eight browsers post the same link at once, to the app's worker processes: one session, seven refusals."""
    sup, supplier_id = supplier_api(pooled, ops)
    token = link_token(new_link(sup))
    answers = race(8, lambda _: requests.post(f"{pooled.base_url}/supplier/session", json={"token": token},
                                              timeout=60))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [401] * 7, [(r.status_code, r.text) for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 401} == {"signin_link_used"}
    link_hash = signin.rules.token_hash(token)
    sessions = list(SupplierSession.scan(SupplierSession.link_hash == link_hash, consistent_read=True))
    assert len(sessions) == 1 and sessions[0].supplier_id == supplier_id
    [winner] = [r for r in answers if r.status_code == 201]
    cookie = winner.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert sessions[0].session_hash == signin.rules.token_hash(cookie)


def test_ops_make_a_link_for_a_supplier_and_a_session_cannot_make_one(system, ops):
    sup, supplier_id = supplier_api(system, ops)
    link = ok(ops.post(f"/ops/suppliers/{supplier_id}/signin-links"), 201)
    bench, _ = sign_in(system, link_token(link))
    assert ok(bench.call("GET", "/supplier/me", csrf=False))["supplier_id"] == supplier_id
    assert_error(ops.post("/ops/suppliers/SNOPE/signin-links"), 404, "supplier_not_found")
    assert_error(requests.post(f"{system.base_url}/ops/suppliers/{supplier_id}/signin-links", timeout=30),
                 401, "ops_auth_required")
    # a stolen session must not mint itself new ones
    assert_error(bench.call("POST", "/supplier/signin-links"), 401, "invalid_api_key")


def test_bad_links_are_refused_with_their_code_and_no_session(system, ops):
    sup, supplier_id = supplier_api(system, ops)
    for token in ("", "wbl_short", "wbs_" + "a" * 43, "wbl_" + "a" * 43):  # malformed, wrong kind, unknown
        response = requests.post(f"{system.base_url}/supplier/session", json={"token": token}, timeout=30)
        assert response.status_code in (401, 422), response.text
        assert "Set-Cookie" not in response.headers
    assert_error(requests.post(f"{system.base_url}/supplier/session", json={"token": "wbl_" + "a" * 43}, timeout=30),
                 401, "invalid_signin_link")
    # a form on another site cannot post a link here
    form = requests.post(f"{system.base_url}/supplier/session", data={"token": "x"}, timeout=30)
    assert form.status_code == 415, form.text
    # a link from 16 minutes ago has expired
    old = signin.create_link(supplier_id, "test", system.base_url, now=time.time() - 16 * 60)
    assert_error(requests.post(f"{system.base_url}/supplier/session", json={"token": link_token(old)}, timeout=30),
                 401, "signin_link_expired")


def test_state_changing_calls_need_the_sessions_csrf_token(system, ops):
    bench, _, supplier_id = signed_in(system, ops)
    body = draft()
    assert_error(bench.call("POST", "/supplier/goods", csrf=False, json=body), 403, "csrf_token_required")
    assert_error(bench.call("POST", "/supplier/goods", json=body, headers={"X-CSRF-Token": "forged"}),
                 403, "csrf_token_invalid")
    other, _, _ = signed_in(system, ops)  # another session's token is no better
    assert_error(bench.call("POST", "/supplier/goods", json=body, headers={"X-CSRF-Token": other.csrf}),
                 403, "csrf_token_invalid")
    assert ok(bench.call("GET", "/supplier/goods", csrf=False))["goods"] == []  # nothing was written
    created = ok(bench.call("POST", "/supplier/goods", json=body), 201)
    assert created["supplier_id"] == supplier_id and created["status"] == "pending_review"


def test_sign_out_ends_the_session_at_once(system, ops):
    bench, _, _ = signed_in(system, ops)
    assert_error(bench.call("DELETE", "/supplier/session", csrf=False), 403, "csrf_token_required")
    out = bench.call("DELETE", "/supplier/session")
    assert ok(out) == {"signed_out": True}
    assert out.headers["Set-Cookie"].startswith("cm_supplier=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
    assert_error(bench.call("GET", "/supplier/me", csrf=False), 401, "workbench_session_required")
    assert_error(bench.call("GET", "/supplier/session", csrf=False), 401, "workbench_session_required")


def test_a_session_expires(system, ops):
    _, supplier_id = supplier_api(system, ops)
    nine_hours_ago = time.time() - 9 * 3600
    link = signin.create_link(supplier_id, "test", system.base_url, now=nine_hours_ago)
    signed = signin.sign_in(link_token(link), now=nine_hours_ago + 1)
    bench = Workbench(system.base_url, signed.token, signed.session.csrf_token)
    assert_error(bench.call("GET", "/supplier/me", csrf=False), 401, "workbench_session_expired")


def test_a_suspended_supplier_s_session_stops_working(system, ops):
    """The supplier's status is read on every call, as for a key."""
    bench, _, supplier_id = signed_in(system, ops)
    from chalicelib.supply.models import Supplier

    Supplier.get(supplier_id).update(actions=[Supplier.status.set("rejected")])
    assert_error(bench.call("GET", "/supplier/me", csrf=False), 403, "supplier_not_active")


def test_a_session_never_reaches_another_suppliers_goods_parcels_refunds_or_statements(system, ops):
    """Supplier B has goods, an image upload, a shipped parcel with a refund request and a statement; supplier A's
    workbench session asks for each by id, and tries every change: each answers exactly as an unknown id does."""
    shop = make_shop(system, ops, "hosted")
    b_key = {"X-Api-Key": shop.supplier_key}
    b_id = ok(requests.get(f"{system.base_url}/supplier/me", headers=b_key, timeout=30))["supplier_id"]
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201, placed.body
    (parcel,) = parcels.split(placed.order_id)
    ok(requests.post(f"{system.base_url}/supplier/parcels/{parcel.parcel_id}/ship", headers=b_key, timeout=30,
                     json={"carrier": "SF", "tracking_no": uid("SF")}))
    refund = ok(requests.post(f"{system.base_url}/api/{shop.code}/parcels/{parcel.parcel_id}/refund-requests",
                              headers=shop.auth(member), json={"reason": "arrived broken"}, timeout=30), 201)
    upload = ok(requests.post(f"{system.base_url}/supplier/uploads", headers=b_key, timeout=30,
                              json={"kind": "image", "content_type": "image/png"}), 201)
    month = periods.containing(clock.business_day(), periods.MONTHLY)
    statement = runs.settle_party(month, f"supplier.{b_id}")
    assert statement.party == f"supplier.{b_id}"

    a, _, _ = signed_in(system, ops)
    g, p, r, s, u = shop.goods_id, parcel.parcel_id, refund["refund_id"], statement.statement_id, upload["upload_id"]
    refused = [
        ("GET", f"/supplier/goods/{g}", None, "goods_not_found"),
        ("PATCH", f"/supplier/goods/{g}", {"title": "mine now"}, "goods_not_found"),
        ("PUT", f"/supplier/goods/{g}/skus/S1", {"stock": 0}, "goods_not_found"),
        ("POST", f"/supplier/goods/{g}/off-sale", None, "goods_not_found"),
        ("POST", f"/supplier/goods/{g}/submit", None, "goods_not_found"),
        ("GET", f"/supplier/goods/{g}/audit", None, "goods_not_found"),
        ("GET", f"/supplier/uploads/{u}", None, "upload_not_found"),
        ("GET", f"/supplier/parcels/{p}", None, "parcel_not_found"),
        ("POST", f"/supplier/parcels/{p}/ship", {"carrier": "SF", "tracking_no": "SF123456"}, "parcel_not_found"),
        ("POST", f"/supplier/refunds/{r}/approve", None, "refund_not_found"),
        ("POST", f"/supplier/refunds/{r}/reject", {"reason": "no"}, "refund_not_found"),
        ("GET", f"/supplier/statements/{s}", None, "statement_not_found"),
    ]
    for method, path, body, code in refused:
        theirs = a.call(method, path, json=body)
        unknown = a.call(method, path.replace(g, "GUNKNOWN").replace(p, "O1-9").replace(r, "R-unknown")
                         .replace(s, "2026-01.supplier.SNOPE").replace(u, "f" * 32), json=body)
        assert_error(theirs, 404, code)
        assert (theirs.status_code, theirs.json()["error"]["code"]) == \
            (unknown.status_code, unknown.json()["error"]["code"]), (method, path)
    # and A's lists hold none of B's
    assert ok(a.call("GET", "/supplier/goods", csrf=False))["goods"] == []
    assert ok(a.call("GET", "/supplier/parcels", csrf=False))["items"] == []
    assert ok(a.call("GET", "/supplier/refunds", csrf=False))["refunds"] == []
    assert ok(a.call("GET", "/supplier/statements", csrf=False))["statements"] == []
    # B's things are untouched: the parcel shipped as B shipped it, the refund still waits for B
    b_parcel = ok(requests.get(f"{system.base_url}/supplier/parcels/{p}", headers=b_key, timeout=30))
    assert b_parcel["state"] == "shipped" and b_parcel["carrier"] == "SF"
    assert [x["state"] for x in ok(requests.get(f"{system.base_url}/supplier/refunds", headers=b_key,
                                                timeout=30))["refunds"]] == ["requested"]
