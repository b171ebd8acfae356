"""The second door: a Lambda function URL (payload format 2.0) in front of the same routes and code.

Chalice only speaks API Gateway REST (payload 1.0) events, so this adapter turns a function URL event into
the REST event the app already handles and the app's answer back into a function URL response. What would
break a signature or a session if taken at face value:

* ``queryStringParameters`` joins a repeated key's values with commas, so ``a=1&a=2`` and ``a=1,2`` look
  alike; the parameters are re-read from ``rawQueryString`` (repeats kept, so they are still refused as
  ``duplicate_parameter``; a literal comma in a value still verifies). ``+`` stays ``+`` (RFC 3986, as the
  contract encodes), only ``%XX`` is decoded.
* Cookies arrive in ``cookies``, not in a ``Cookie`` header; ``Set-Cookie`` must leave in ``cookies``.
* Bodies may arrive base64-encoded; the app's body hash must see the bytes the client sent.
* There is no stage prefix: links are built on the function URL's host as is (``web.base_url``).

Only channel-facing routes are served here (entry, store, member API, partner API, sandbox, docs). A route with
an authorizer (ops, IAM in API Gateway) is never reachable through a door whose auth is NONE: it answers 404, as
does a path no route matches."""
from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import unquote

from chalicelib.core.web import FUNCTION_URL_STAGE

CHANNEL_PREFIXES = ("/entry/", "/store/", "/api/", "/partner/", "/sandbox/", "/docs/")
JSON_TYPE = "application/json"


@functools.lru_cache(maxsize=4)
def _templates(app_id: int, app: Any) -> tuple[tuple[str, ...], ...]:
    """The channel-facing route templates, split into segments; ops routes (with an authorizer) left out."""
    served = []
    for path, methods in app.routes.items():
        if not path.startswith(CHANNEL_PREFIXES):
            continue
        if any(entry.authorizer is not None for entry in methods.values()):
            continue
        served.append(tuple(path.split("/")))
    return tuple(served)


def match(app: Any, raw_path: str) -> tuple[str, dict[str, str]] | None:
    """The route template for a raw (percent-encoded) path and its decoded parameters; like API Gateway, a
    literal segment wins over a parameter at the first place they differ."""
    segments = raw_path.split("/")
    best: tuple[tuple[bool, ...], str, dict[str, str]] | None = None
    for template in _templates(id(app), app):
        if len(template) != len(segments):
            continue
        params: dict[str, str] = {}
        literal: list[bool] = []
        for part, segment in zip(template, segments):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    break
                params[part[1:-1]] = unquote(segment)
                literal.append(False)
            elif part == segment:
                literal.append(True)
            else:
                break
        else:
            rank = tuple(literal)
            if best is None or rank > best[0]:
                best = (rank, "/".join(template), params)
    return (best[1], best[2]) if best else None


def _query(raw: str) -> dict[str, list[str]]:
    """Every key and value as sent, repeats kept in order."""
    pairs: dict[str, list[str]] = {}
    for part in raw.split("&") if raw else ():
        key, _, value = part.partition("=")
        pairs.setdefault(unquote(key), []).append(unquote(value))
    return pairs


def rest_event(event: dict[str, Any], resource: str, params: dict[str, str]) -> dict[str, Any]:
    """The API Gateway REST proxy event for a function URL request already matched to ``resource``."""
    context = event.get("requestContext") or {}
    http = context.get("http") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    query = _query(event.get("rawQueryString") or "")
    method = http.get("method", "GET").upper()
    return {
        "resource": resource, "path": event.get("rawPath", "/"), "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": params or None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": event.get("rawPath", "/"),
                           "stage": FUNCTION_URL_STAGE, "requestId": context.get("requestId", ""),
                           "accountId": context.get("accountId", ""), "apiId": context.get("apiId", ""),
                           "domainName": context.get("domainName", ""),
                           "identity": {"sourceIp": http.get("sourceIp", ""), "userAgent": http.get("userAgent", "")}},
        "body": event.get("body"), "isBase64Encoded": bool(event.get("isBase64Encoded")),
    }


def url_response(answer: dict[str, Any]) -> dict[str, Any]:
    """A REST-shaped answer as a function URL response: ``Set-Cookie`` into ``cookies``, other repeated headers
    joined as HTTP allows."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    multi = {k: list(v) for k, v in (answer.get("multiValueHeaders") or {}).items()}
    for name, value in (answer.get("headers") or {}).items():
        multi.setdefault(name, [])
        if value not in multi[name]:
            multi[name].append(value)
    for name, values in multi.items():
        if name.lower() == "set-cookie":
            cookies.extend(values)
        elif values:
            headers[name] = ", ".join(values)
    response: dict[str, Any] = {"statusCode": answer["statusCode"], "headers": headers,
                                "body": answer.get("body") or "",
                                "isBase64Encoded": bool(answer.get("isBase64Encoded"))}
    if cookies:
        response["cookies"] = cookies
    return response


def not_found() -> dict[str, Any]:
    body = {"error": {"code": "not_found", "message": "no such route"}}
    return {"statusCode": 404, "headers": {"Content-Type": JSON_TYPE}, "body": json.dumps(body),
            "isBase64Encoded": False}


def serve(app: Any, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one function URL request with the app's own routes."""
    matched = match(app, event.get("rawPath") or "/")
    if matched is None:
        return not_found()
    return url_response(app(rest_event(event, *matched), context))

