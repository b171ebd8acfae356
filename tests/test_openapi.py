"""The OpenAPI document served at /docs/openapi.json: valid OpenAPI 3.1, the same set of channel-facing routes as
the app registers (both ways), request bodies that are the validating pydantic models, errors in the contract's
shape, and nothing secret in it."""
from __future__ import annotations

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from chalicelib.core import schemas
from chalicelib.partners.kit import openapi
from helpers import channel_body, ok

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def fetch(anon) -> dict:
    response = anon.get("/docs/openapi.json")
    assert response.headers["Content-Type"].startswith("application/json")
    return ok(response)


def test_document_is_valid_openapi_3_1(anon, system):
    doc = fetch(anon)
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["servers"] == [{"url": system.base_url, "description": "this deployment"}]


def test_routes_are_the_apps_channel_facing_routes_both_ways(anon, system):
    """Every route the app registers under /entry, /store, /api, /partner, /sandbox and /docs is documented, and
    every documented route exists: a route added without its documentation (or the reverse) fails here."""
    doc = fetch(anon)
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}
    registered = {(method, path) for path, by_method in system.app.app.routes.items() if openapi.channel_facing(path)
                  for method in by_method}
    assert registered, "no channel-facing route found: the prefixes are wrong"
    assert documented - registered == set(), "documented but not served"
    assert registered - documented == set(), "served but not documented"
    # and nothing for ops or suppliers
    assert not [p for p in doc["paths"] if p.startswith(("/ops/", "/supplier"))]


def test_request_bodies_are_the_validating_models(anon):
    doc = fetch(anon)
    components = doc["components"]["schemas"]
    bodies = {op.body for op in openapi.OPERATIONS if op.body}
    assert bodies == set(openapi.REQUEST_MODELS)
    for name in bodies:
        model = getattr(schemas, name)
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        nested = own.pop("$defs", {})
        assert components[name] == own, name
        for inner, schema in nested.items():
            assert components[inner] == schema, inner
    grants = doc["paths"]["/partner/{code}/grants"]["post"]
    assert grants["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GrantRequest"}
    assert grants["security"] == [{"signTimestamp": [], "signNonce": [], "channelSignature": []}]


def test_real_errors_match_the_documented_error_shape(anon):
    doc = fetch(anon)
    error_schema = doc["components"]["schemas"]["Error"]
    me = doc["paths"]["/api/{code}/me"]["get"]
    assert me["responses"]["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for response in (anon.get("/api/nope/me"), anon.post("/partner/nope/grants", data=b"{}",
                                                          headers={"Content-Type": "application/json"}),
                     anon.get("/entry/nope?member_id=M1")):
        assert 400 <= response.status_code < 500, response.text
        jsonschema.validate(response.json(), error_schema)


def test_webhooks_and_channel_apis_are_described(anon):
    doc = fetch(anon)
    hooks = doc["webhooks"]
    for kind in openapi.EVENT_KINDS:
        headers = {p["name"] for p in hooks[kind]["post"]["parameters"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    for api in ("member/exchange", "password/verify", "points/deduct", "points/query", "points/cancel",
                "points/refund", "points/refund/query"):
        assert f"channel-api {api}" in hooks, api
    # what the reference channel back end answers to a deduct fits the documented answer
    deduct = hooks["channel-api points/deduct"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate({"result": "deducted"}, deduct)


def test_no_secret_in_the_document(anon, ops):
    created = ok(ops.post("/ops/channels", json={**channel_body(), "sandbox": True}), 201)
    text = anon.get("/docs/openapi.json").text
    assert created["secret"] not in text and created["webhook_secret"] not in text
    assert created["channel"]["code"] not in text
