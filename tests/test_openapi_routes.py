"""The OpenAPI document against the code that serves it, read from the routes themselves: the operations are
exactly what the function URL door serves (channel-facing prefix, no authorizer), each request body is the
pydantic model the route's own ``web.body(..., schemas.X)`` validates with, each success status the route's
``Routes.json(status=...)`` is documented, each body's content types are the ones the route takes, and the
document is reachable through the function URL door over HTTP; its webhooks are the events we emit and the
APIs we call on the channel."""
from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import requests
from helpers import ok

from chalicelib.core import function_url
from chalicelib.partners import events
from tools import reference_channel

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def doc(anon) -> dict:
    return ok(anon.get("/docs/openapi.json"))


def door_routes(app) -> dict[tuple[str, str], object]:
    """(METHOD, path) → route entry, by the function URL door's own rule (``function_url._templates``)."""
    return {(method, path): entry for path, methods in app.routes.items()
            if path.startswith(function_url.CHANNEL_PREFIXES) and all(e.authorizer is None for e in methods.values())
            for method, entry in methods.items()}


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, item in doc["paths"].items() for method, op in item.items()
            if method in METHODS}


def view_source(entry) -> ast.FunctionDef:
    """The view as written (``functools.wraps`` keeps it reachable behind ``Routes.json``'s handler)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(entry.view_function))))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def validated_models(view: ast.FunctionDef) -> set[str | None]:
    """The model of every ``web.body(request, schemas.X)`` in the view; ``None`` for a body read unvalidated."""
    found: set[str | None] = set()
    for node in ast.walk(view):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "body" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "web":
            model = node.args[1] if len(node.args) > 1 else None
            found.add(model.attr if isinstance(model, ast.Attribute) else None)
    return found


def success_statuses(view: ast.FunctionDef) -> set[int]:
    """What the view can answer on success: ``status=`` of its route decorator (default 200) unless it builds its
    own ``Response``, and every literal ``status_code`` of the responses it builds (``201 if created else 200``)."""
    statuses: set[int] = set()
    builds_own = False
    for node in ast.walk(view):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Response":
            builds_own = True
            for keyword in node.keywords:
                if keyword.arg == "status_code":
                    statuses |= {c.value for c in ast.walk(keyword.value) if isinstance(c, ast.Constant)
                                 and isinstance(c.value, int)}
    declared = [ast.literal_eval(k.value) for d in view.decorator_list if isinstance(d, ast.Call)
                for k in d.keywords if k.arg == "status"]
    if declared or not builds_own:
        statuses.add(declared[0] if declared else 200)
    return statuses


def test_documented_operations_are_what_the_function_url_door_serves(doc, system):
    served = set(door_routes(system.app.app))
    documented = set(operations(doc))
    assert served, "the door serves nothing: its prefixes are wrong"
    assert documented - served == set(), "documented but not served by the door"
    assert served - documented == set(), "served by the door but not documented"


def test_each_request_body_is_the_model_its_route_validates_with(doc, system):
    routes = door_routes(system.app.app)
    checked = 0
    for key, op in operations(doc).items():
        validated = validated_models(view_source(routes[key]))
        content = op.get("requestBody", {}).get("content", {})
        json_schema = content.get("application/json", {}).get("schema", {})
        documented = json_schema.get("$ref", "").removeprefix(REF) or None
        if validated - {None}:
            assert len(validated) == 1, (key, validated)
            assert documented == next(iter(validated)), (key, documented, validated)
            assert json_schema == {"$ref": REF + documented}, key
            assert documented in doc["components"]["schemas"], key
            checked += 1
        else:
            assert documented is None, f"{key} documents {documented} but validates no model"
    assert checked >= 5, checked  # grants, orders, cart lines, refund requests, signature check at least


def test_each_route_documents_its_success_status_and_content_types(doc, system):
    routes = door_routes(system.app.app)
    for key, op in operations(doc).items():
        entry = routes[key]
        view = view_source(entry)
        documented = {int(code) for code in op["responses"] if code[0] in "23" and code.isdigit()}
        assert success_statuses(view) <= documented, (key, success_statuses(view), documented)
        content = set(op.get("requestBody", {}).get("content", {}))
        if content:
            assert content == set(entry.content_types), (key, content, entry.content_types)


def test_every_error_response_is_the_contract_error_shape(doc):
    for key, op in operations(doc).items():
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert response["content"]["application/json"]["schema"] == {"$ref": REF + "Error"}, (key, code)


def test_webhooks_are_the_events_we_send_and_the_apis_we_call(doc):
    """The event kinds ``events`` may emit and the APIs the reference channel back end serves for us."""
    hooks = doc["webhooks"]
    called = {name.removeprefix("channel-api ") for name in hooks if name.startswith("channel-api ")}
    assert called == set(reference_channel.APIS)
    sent = {name for name in hooks if not name.startswith("channel-api ")}
    assert sent == set(events.KINDS)
    for kind in sent:
        schema = hooks[kind]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["properties"]["type"] == {"const": kind}, kind


def test_the_document_is_served_through_the_function_url_door(system, anon):
    answer = requests.get(f"{system.door_url}/docs/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    through_door = answer.json()
    assert through_door["servers"][0]["url"] == system.door_url
    assert through_door["paths"] == ok(anon.get("/docs/openapi.json"))["paths"]
