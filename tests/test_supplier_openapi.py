"""The supplier OpenAPI document (``/docs/supplier-openapi.json``): valid OpenAPI 3.1, the same set of supplier
routes as the app registers (both ways, refunds and workbench sign-in included), each request body the pydantic
model its route validates with, each success status documented, every error in the contract's shape, and no
secret in it."""
from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from chalicelib.core import schemas
from chalicelib.routes import supplier_openapi
from helpers import ok, supplier_api
from test_openapi_routes import REF, operations, success_statuses, validated_models, view_source


@pytest.fixture(scope="module")
def doc(anon) -> dict:
    response = anon.get("/docs/supplier-openapi.json")
    assert response.headers["Content-Type"].startswith("application/json")
    return ok(response)


def supplier_routes(app) -> dict[tuple[str, str], object]:
    return {(method, path): entry for path, methods in app.routes.items() if supplier_openapi.supplier_facing(path)
            for method, entry in methods.items()}


def test_document_is_valid_openapi_3_1(doc, system):
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["servers"] == [{"url": system.base_url, "description": "this deployment"}]


def test_operations_are_the_apps_supplier_routes_both_ways(doc, system):
    """A supplier route added without its documentation (or the reverse) fails here."""
    registered = set(supplier_routes(system.app.app))
    documented = set(operations(doc))
    assert ("POST", "/supplier/refunds/{refund_id}/approve") in registered  # the prefixes reach refunds
    assert documented - registered == set(), "documented but not served"
    assert registered - documented == set(), "served but not documented"
    assert not [p for p in doc["paths"] if p.startswith(("/ops/", "/api/", "/partner/"))]


def test_each_request_body_is_the_model_its_route_validates_with(doc, system):
    routes = supplier_routes(system.app.app)
    checked: set[str] = set()
    for key, op in operations(doc).items():
        validated = validated_models(view_source(routes[key]))
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        documented = schema.get("$ref", "").removeprefix(REF) or None
        if validated - {None}:
            assert validated == {documented}, (key, documented, validated)
            model = getattr(schemas, documented)
            own = model.model_json_schema(ref_template=REF + "{model}")
            nested = own.pop("$defs", {})
            assert doc["components"]["schemas"][documented] == own, documented
            for inner, inner_schema in nested.items():
                assert doc["components"]["schemas"][inner] == inner_schema, inner
            checked.add(documented)
        else:
            assert documented is None, f"{key} documents {documented} but validates no model"
    assert checked == set(supplier_openapi.REQUEST_MODELS), checked


def test_each_route_documents_its_success_status_and_errors_in_the_contract_shape(doc, system):
    routes = supplier_routes(system.app.app)
    for key, op in operations(doc).items():
        documented = {int(code) for code in op["responses"] if code[0] in "23" and code.isdigit()}
        assert success_statuses(view_source(routes[key])) <= documented, key
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert response["content"]["application/json"]["schema"] == {"$ref": REF + "Error"}, (key, code)


def test_real_answers_fit_the_documented_schemas(doc, system, ops):
    sup, _ = supplier_api(system, ops)
    components = doc["components"]["schemas"]

    def fits(response, name: str) -> None:
        jsonschema.validate(response.json(), {"$ref": REF + name, "components": {"schemas": components}})

    fits(sup.get("/supplier/me"), "Supplier")
    fits(sup.post("/supplier/signin-links"), "SignInLink")
    fits(sup.get("/supplier/goods"), "GoodsList")
    fits(sup.get("/supplier/parcels"), "ParcelPage")
    fits(sup.get("/supplier/refunds"), "RefundList")
    fits(sup.get("/supplier/statements"), "StatementList")
    fits(sup.get("/supplier/goods/GNOPE"), "Error")


def test_no_secret_in_the_document(anon, system, ops):
    sup, supplier_id = supplier_api(system, ops)
    key = sup.session.headers["X-Api-Key"]
    text = anon.get("/docs/supplier-openapi.json").text
    assert key not in text and supplier_id not in text
