"""What every route needs from HTTP: bodies, path parameters, links and error bodies (who is calling is
``chalicelib.callers``).

Kept apart from the business modules, which never see a request.
"""
from __future__ import annotations

import json
import re
from typing import Any

from chalice.app import Request, Response

from chalicelib.core import config
from chalicelib.core.errors import BadRequest, DomainError, PayloadTooLarge

JSON = {"Content-Type": "application/json"}


class _Schemas:
    """``chalicelib.core.schemas``, imported on first use: pydantic and the request models are ~85 ms of
    cold start that requests without a body (store, catalog, entry) never need."""

    def __getattr__(self, name: str) -> Any:
        from chalicelib.core import schemas as loaded

        return getattr(loaded, name)


schemas = _Schemas()


def error_response(error: DomainError) -> Response:
    return Response(body=error.body(), status_code=error.status, headers=JSON)


def internal_error() -> Response:
    return Response(body={"error": {"code": "internal_error", "message": "something went wrong on our side"}},
                    status_code=500, headers=JSON)


# Bounds every request meets before any handler runs (README, "Input bounds").
BODY_MAX_BYTES = 256 * 1024
BODY_MAX_DEPTH = 32
PATH_PARAM = re.compile(r"[A-Za-z0-9_.:~-]{1,128}")
# A channel's member id, wherever it comes in (entry link or code exchange, grants) and wherever it is named
# (``/partner/{code}/members/{member_id}/…``, percent-encoded as the contract encodes every path parameter and
# decoded once here): one alphabet, so every member a channel can create it can also read back. No ``%``: a
# value decoded once more (by a gateway that decodes too) could otherwise name another member.
MEMBER_ID = re.compile(r"[^\x00-\x1f\x7f%]{1,64}")
MEMBER_ID_RULE = "1 to 64 characters, no control characters, no %"
_PATH_RULES = {"member_id": (MEMBER_ID, MEMBER_ID_RULE)}


def _depth(data: Any) -> int:
    """How deeply arrays and objects nest (iteratively: the point is to refuse what recursion cannot hold)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if deepest > BODY_MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def body(request: Request, model: type | None = None) -> Any:
    """The JSON body, validated against ``model`` when given; an empty body is ``{}``."""
    raw = request.raw_body or b"{}"
    if len(raw) > BODY_MAX_BYTES:
        raise PayloadTooLarge("body_too_large", f"the body may be at most {BODY_MAX_BYTES} bytes", "body")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest("body_too_deep", f"the body may nest at most {BODY_MAX_DEPTH} levels", "body") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the body is not valid JSON", "body") from None
    if _depth(data) > BODY_MAX_DEPTH:
        raise BadRequest("body_too_deep", f"the body may nest at most {BODY_MAX_DEPTH} levels", "body")
    if model is None:
        return data
    from chalicelib.core.schemas import validated

    return validated(model, data)


def path_params(params: dict[str, str]) -> dict[str, str]:
    """The path parameters as the caller meant them, bounded: a member id goes percent-encoded (the contract
    encodes every path parameter), and whether the gateway decoded it already or not, it is decoded here
    exactly once (no accepted value holds a ``%``, so a second decode could never change one)."""
    from urllib.parse import unquote

    decoded = {name: unquote(value or "") for name, value in params.items()}
    check_path_params(decoded)
    return decoded


def check_path_params(params: dict[str, str]) -> None:
    """Every path parameter becomes (part of) a key: refuse what no id we issue looks like, before any read.

    DynamoDB refuses keys over 2,048 bytes with an error that would otherwise surface as a 500."""
    for name, value in params.items():
        pattern, rule = _PATH_RULES.get(name, (PATH_PARAM, "1 to 128 characters of A-Z a-z 0-9 _ . : ~ -"))
        if not pattern.fullmatch(value or ""):
            raise BadRequest("invalid_path_parameter", f"{name} must be {rule}", name)


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization") or ""
    return value[7:].strip() if value.lower().startswith("bearer ") else None



def opens_sign_in(request: Request) -> bool:
    """A browser on the local stack opening an ops page without a (valid) session: sent to sign in, not a 401."""
    return config.IS_LOCAL and request.method == "GET" and wants_html(request) and bearer(request) is None


def to_sign_in(request: Request) -> Response:
    """303 to the sign-in page, which comes back here (this path, its parameters and query) once signed in."""
    from urllib.parse import quote, urlencode

    path = request.path
    for name, value in (request.uri_params or {}).items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    here = path + (f"?{urlencode(request.query_params)}" if request.query_params else "")
    return Response(body="", status_code=303, headers={"Location": f"/ops/sign-in?next={quote(here, safe='')}",
                                                        "Cache-Control": "no-store"})


# What ``function_url`` puts in ``requestContext.stage``, as a function URL's payload 2.0 has it.
FUNCTION_URL_STAGE = "$default"



def base_url(request: Request) -> str:
    """The public base of this API, for the links we hand out: on the door the request came through (a
    function URL's own host, no stage; else the configured public base, or API Gateway's host and stage)."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "http")
    host = headers.get("host", "localhost")
    stage = (request.context or {}).get("stage")
    if stage == FUNCTION_URL_STAGE:
        return f"{scheme}://{host}"
    if config.PUBLIC_BASE_URL:
        return config.PUBLIC_BASE_URL.rstrip("/")
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


def cookie(request: Request, wanted: str) -> str | None:
    """The value of the cookie named ``wanted``, if the request carries it."""
    for part in (request.headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
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
    reference = getattr(error, "correlation_id", None)  # a failed call to the channel: the id both sides logged
    if reference:
        html += f"<p><small>Reference: {escape(reference)}</small></p>"
    return Response(body=html, status_code=error.status, headers={"Content-Type": "text/html; charset=utf-8"})

