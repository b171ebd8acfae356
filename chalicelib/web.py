"""What every route needs from HTTP: bodies, callers, links and error bodies.

Kept apart from the business modules, which never see a request.
"""
from __future__ import annotations

import hmac
import json
from typing import Any

from chalice.app import Request, Response

from chalicelib import config, suppliers
from chalicelib.errors import BadRequest, DomainError, Forbidden, Unauthorized
from chalicelib.models import Supplier

JSON = {"Content-Type": "application/json"}


class _Schemas:
    """``chalicelib.schemas``, imported on first use: pydantic and the request models are ~85 ms of
    cold start that requests without a body (store, catalog, entry) never need."""

    def __getattr__(self, name: str) -> Any:
        from chalicelib import schemas as loaded

        return getattr(loaded, name)


schemas = _Schemas()


def error_response(error: DomainError) -> Response:
    return Response(body=error.body(), status_code=error.status, headers=JSON)


def internal_error() -> Response:
    return Response(body={"error": {"code": "internal_error", "message": "something went wrong on our side"}},
                    status_code=500, headers=JSON)


def body(request: Request, model: type | None = None) -> Any:
    """The JSON body, validated against ``model`` when given; an empty body is ``{}``."""
    raw = request.raw_body or b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the body is not valid JSON", "body") from None
    if model is None:
        return data
    from chalicelib.schemas import validated

    return validated(model, data)


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization") or ""
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def ops_actor(request: Request) -> str:
    """Who is acting as ops: the IAM caller in AWS, the local-only token on the local stack."""
    if config.IS_LOCAL:
        token = bearer(request)
        if not (config.LOCAL_OPS_TOKEN and token and hmac.compare_digest(token, config.LOCAL_OPS_TOKEN)):
            raise Unauthorized("ops_auth_required", "ops routes need the local ops token as a Bearer token")
        return "ops:local"
    identity = (request.context or {}).get("identity") or {}
    caller = identity.get("userArn") or identity.get("caller")
    if not caller:
        raise Forbidden("ops_auth_required", "ops routes need IAM-signed requests")
    return caller


def supplier(request: Request) -> Supplier:
    key = request.headers.get("x-api-key") or bearer(request)
    return suppliers.authenticate(key)


def base_url(request: Request) -> str:
    """The public base of this API, for the links we hand out."""
    if config.PUBLIC_BASE_URL:
        return config.PUBLIC_BASE_URL.rstrip("/")
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "http")
    host = headers.get("host", "localhost")
    stage = (request.context or {}).get("stage")
    prefix = f"/{stage}" if stage and ".execute-api." in host else ""
    return f"{scheme}://{host}{prefix}"


def query(request: Request, name: str, default: str | None = None) -> str | None:
    return (request.query_params or {}).get(name, default)


def chalice_error_to_contract(response: Response) -> Response:
    """Chalice's own errors (415, 404 …) into the ``{"error": {code, message}}`` shape."""
    body = response.body
    if isinstance(body, dict) and "Code" in body and "error" not in body:
        code = "".join("_" + c.lower() if c.isupper() else c for c in str(body["Code"])).lstrip("_")
        response.body = {"error": {"code": code, "message": str(body.get("Message", ""))}}
        response.headers.update(JSON)
    return response


def session_token(request: Request) -> str | None:
    """The member session: ``Authorization: Bearer`` for API clients, the cookie for the H5 store."""
    token = bearer(request)
    if token:
        return token
    for part in (request.headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "cm_session":
            return value
    return None


def wants_html(request: Request) -> bool:
    return "text/html" in (request.headers.get("accept") or "")


def error_page(error: DomainError) -> Response:
    """What a member's browser shows when an entry fails: plain words and the code to quote."""
    from html import escape

    html = (f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>Cannot open the store</title><body style='font-family:sans-serif;padding:2em'>"
            f"<h1>We could not open the store</h1><p>{escape(error.message)}</p>"
            f"<p>Please go back to your app and try again.</p><p><small>Error code: {escape(error.code)}</small></p>")
    return Response(body=html, status_code=error.status, headers={"Content-Type": "text/html; charset=utf-8"})


def partner_params(request: Request) -> dict[str, str]:
    """What a channel's server signed: query parameters, the envelope (query or X- headers), body hash."""
    from chalicelib.signing import body_sha256

    params = dict(request.query_params or {})
    for name in ("timestamp", "nonce", "sign"):
        header = request.headers.get(f"x-{name}")
        if header and name not in params:
            params[name] = header
    if request.raw_body:
        params["body_sha256"] = body_sha256(request.raw_body)
    return params
