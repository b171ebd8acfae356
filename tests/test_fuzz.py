"""Schemathesis fuzzes every operation of /docs/openapi.json against the local stack, bounded and deterministic
(seeded, at most ``MAX_EXAMPLES`` generated inputs per operation, valid and invalid ones): no 5xx, every 4xx in
the contract's error shape, no answer that breaks its own documented schema, status or content type, and no
input the schema calls invalid accepted.

Requests go to a sandbox channel (its code fixed, as a real caller's would be), with a member session on the
member API and signed per contract v2 on the partner API (the signer below sees the exact bytes sent), so the
fuzzer reaches the business code behind the checks instead of stopping at 401. Every request is counted."""
from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as st_checks

from chalicelib.channels.signing import request_headers
from chalicelib.partners.kit import error_codes
from checkout_helpers import make_shop, ok
from helpers import wait_for

SEED = 20261125
MAX_EXAMPLES = 20
CREDENTIAL_EXAMPLES = 10
KNOWN_EXAMPLES = 5
SENT: Counter = Counter()  # "METHOD 2xx" → requests
REFUSALS: Counter = Counter()  # error code → answers


def count(response: requests.Response, *args, **kwargs) -> None:
    SENT[f"{response.request.method} {response.status_code // 100}xx"] += 1
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        try:
            REFUSALS[(response.json().get("error") or {}).get("code")] += 1
        except (ValueError, AttributeError):
            REFUSALS["(not the error shape)"] += 1


class Credentials(requests.auth.AuthBase):
    """What a channel's server and its member's store add to a request: a signature over exactly what is sent on
    /partner/ (method, path as sent, query, body hash), the member session on /api/ (unless one was given)."""

    def __init__(self, secret: str, token: str) -> None:
        self.secret, self.token = secret, token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        split = urlsplit(request.url)
        if split.path.startswith("/partner/"):
            body = request.body.encode() if isinstance(request.body, str) else request.body
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            request.headers.update(request_headers(request.method, split.path, body, self.secret, query))
        elif split.path.startswith("/api/") and "Authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value) -> bytes:
    """A posted ledger: JSON lines, sent as the text generated (anything else as its JSON)."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@pytest.fixture(scope="module")
def shop(system, ops):
    shop = make_shop(system, ops, "hosted", sandbox=True)
    ok(ops.patch(f"/ops/channels/{shop.code}", json={"cart_enabled": True}))
    member = shop.member()
    ok(shop.grant(member, 50_000), 201)
    return shop, member


@pytest.fixture(scope="module")
def known_ids(shop) -> dict[str, str]:
    """Path parameters naming real items of the fuzzed channel (its goods, period, member, a paid order and its
    parcel), so the known-ids pass reaches the answers a caller gets on success and checks them against their
    schemas."""
    sandbox, member = shop
    placed = sandbox.place(requests.Session(), member)
    assert placed.status == 201, placed
    order = wait_for(lambda: ok(requests.get(f"{sandbox.base_url}/api/{sandbox.code}/orders/{placed.order_id}",
                                             headers=sandbox.auth(member), timeout=30)),
                     lambda view: view["parcels"], timeout=30)
    return {"path.goods_id": sandbox.goods_id, "path.sku_id": sandbox.sku_id, "path.period_id": sandbox.period_id,
            "path.member_id": member, "path.order_id": placed.order_id,
            "path.parcel_id": order["parcels"][0]["parcel_id"]}


def load(system, code: str, max_examples: int, credentials: bool, mode: str = "all",
         known: dict[str, str] | None = None):
    """The served document with a bounded, seeded configuration; ``credentials``: the fuzzer makes up the
    documented credentials itself (sessions, signature headers) instead of leaving them to ``Credentials``;
    ``known``: path parameters fixed to real items."""
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"mode": mode, "max-examples": max_examples, "deterministic": True, "database": "none",
                       "with-security-parameters": credentials, "no-shrink": True},
        "phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "coverage": {"enabled": False},
                   "stateful": {"enabled": False}},
        "parameters": {"path.code": code, **(known or {})},
        # 413: a body over the size bound is refused before it is validated (``web.BODY_MAX_BYTES``)
        "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415,
                                                                     422, 428, 429]}},
    })
    return schemathesis.openapi.from_url(f"{system.base_url}/docs/openapi.json", config=config)


@pytest.fixture(scope="module")
def kit_schema(system, shop):
    return load(system, shop[0].code, MAX_EXAMPLES, credentials=False)


@pytest.fixture(scope="module")
def made_up_credentials_schema(system, shop):
    return load(system, shop[0].code, CREDENTIAL_EXAMPLES, credentials=True)


@pytest.fixture(scope="module")
def known_ids_schema(system, shop, known_ids):
    return load(system, shop[0].code, KNOWN_EXAMPLES, credentials=False, mode="positive", known=known_ids)


def counted_session(auth: requests.auth.AuthBase | None = None) -> requests.Session:
    http = requests.Session()
    http.auth = auth
    http.hooks["response"].append(count)
    return http


@pytest.fixture(scope="module")
def session(shop):
    sandbox, member = shop
    with counted_session(Credentials(sandbox.secret, sandbox.tokens[member])) as http:
        yield http


@pytest.fixture(scope="module")
def bare_session():
    with counted_session() as http:
        yield http


def contract_error_shape(ctx, response, case) -> None:
    """Every 4xx (but an entry page's HTML for a browser) is ``{"error": {"code", "message"}}`` and nothing else."""
    if not 400 <= response.status_code < 500 or response.headers.get("content-type", [""])[0].startswith("text/html"):
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str), body
    return None


CHECKS = [core_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance, st_checks.response_headers_conformance,
          st_checks.negative_data_rejection, st_checks.missing_required_header, contract_error_shape]

schema = schemathesis.pytest.from_fixture("kit_schema")
made_up = schemathesis.pytest.from_fixture("made_up_credentials_schema").include(tag="Member API")
known = schemathesis.pytest.from_fixture("known_ids_schema").include(
    path_regex=r"\{(goods_id|period_id|member_id|order_id|parcel_id)\}")


@schema.parametrize()
def test_fuzz(case, session):
    response = case.call(session=session, timeout=30, allow_redirects=False)
    case.validate_response(response, checks=CHECKS)


@made_up.parametrize()
def test_fuzz_member_api_with_made_up_sessions(case, bare_session):
    """Bearer tokens and cookies the fuzzer makes up (any bytes a header may carry): refused, never a 500."""
    response = case.call(session=bare_session, timeout=30, allow_redirects=False)
    case.validate_response(response, checks=CHECKS)


@known.parametrize()
def test_fuzz_with_the_ids_of_real_items(case, session):
    """Valid inputs on routes that name an item, the item real: success answers checked against their schemas."""
    response = case.call(session=session, timeout=30, allow_redirects=False)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("token", ["\xff.\xff", "a.\xe9t\xe9", "\xe9", "." * 3, "x" * 4000 + ".y"])
def test_session_token_of_any_header_bytes_is_refused(system, shop, token):
    """Found reviewing the fuzz run (its made-up tokens never hold exactly one dot and a non-ASCII byte): such a
    token made ``hmac.compare_digest`` raise, a 500; it is ``invalid_session`` or ``session_required`` now."""
    code = shop[0].code
    raw = token.encode("latin-1")
    for headers in ({"Authorization": b"Bearer " + raw}, {"Cookie": b"cm_session=" + raw}):
        response = requests.get(f"{system.base_url}/api/{code}/me", headers=headers, timeout=30)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] in ("invalid_session", "session_required")


def test_fuzz_reached_every_operation_and_counted_its_requests(system):
    """Runs after the fuzz (file order): it sent requests, and reports how many (``-s`` shows the line)."""
    total = sum(SENT.values())
    print(f"\nfuzz: {total} requests sent: {dict(sorted(SENT.items()))}; refusals: {REFUSALS.most_common()}")
    assert total >= 30 * MAX_EXAMPLES // 4, SENT
    assert not [k for k in SENT if k.endswith("5xx")], SENT
    # every refusal the fuzzer met is one the integration guide lists (read from the code)
    assert set(REFUSALS) - {e.code for e in error_codes.catalog()} == set(), REFUSALS
