"""Who is calling, and with which proof, decided here and nowhere else: ops (IAM, or the local-only token), a
supplier's API key, a member's session, a channel's signed server (a sandbox's calls logged for its guide).

Every route asks one of these before it calls its area; the areas themselves never see a request."""
from __future__ import annotations

from urllib.parse import unquote

from chalice.app import Request

from chalicelib.billing import billing
from chalicelib.callers import entry, ops_sessions
from chalicelib.channels.models import Channel
from chalicelib.channels.signing import HEADER_FIELDS, body_sha256, encode, pairs_of, unique_params
from chalicelib.core import cache, config, web
from chalicelib.core.errors import Forbidden, Unauthorized
from chalicelib.members import sessions
from chalicelib.partners.kit import sandbox_log
from chalicelib.supply import signin, signin_rules, suppliers
from chalicelib.supply.models import Supplier


def ops_actor(request: Request) -> str:
    """Who is acting as ops: the IAM caller in AWS; on the local stack the local-only token, or a browser signed
    in with it (``ops_sessions``: reads with the session cookie, state changes only with its CSRF token too)."""
    if config.IS_LOCAL:
        token, signed_in = web.bearer(request), web.cookie(request, ops_sessions.COOKIE)
        if token is None and signed_in:
            session = ops_sessions.admit(signed_in, request.method, request.headers.get(ops_sessions.CSRF_HEADER))
            return f"ops:local:{session.session_id}"
        if not ops_sessions.token_matches(token):
            raise Unauthorized("ops_auth_required", "ops routes need the local ops token as a Bearer token "
                                                    "(or a browser signed in at /ops/sign-in)")
        return "ops:local"
    identity = (request.context or {}).get("identity") or {}
    caller = identity.get("userArn") or identity.get("caller")
    if not caller:
        raise Forbidden("ops_auth_required", "ops routes need IAM-signed requests")
    return caller


def supplier_of(request: Request) -> Supplier:
    """The supplier behind the API key (``X-Api-Key`` or a Bearer token), or else behind a workbench session
    cookie (``supply.signin``: a state-changing call must also carry the session's CSRF token). Every supplier
    route asks here, so both proofs reach the same routes and rules."""
    key = request.headers.get("x-api-key") or web.bearer(request)
    if key is None:
        cookie = signin_rules.cookie_value(request.headers.get("cookie"))
        if cookie is not None:
            return signin.supplier_of(cookie, request.method, request.headers.get(signin_rules.CSRF_HEADER))
    return suppliers.authenticate(key)


def supplier_by_key(request: Request) -> Supplier:
    """The supplier behind an API key only (what a workbench session may not do: make sign-in links)."""
    return suppliers.authenticate(request.headers.get("x-api-key") or web.bearer(request))


def session_token(request: Request) -> str | None:
    """The member session: ``Authorization: Bearer`` for API clients, the cookie for the H5 store."""
    token = web.bearer(request)
    if token:
        return token
    for part in (request.headers.get("cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "cm_session":
            return value
    return None


def partner_params(request: Request) -> dict[str, str]:
    """What a channel's server signed: query parameters, the envelope (query or X- headers), body hash.

    Every value counts: a key repeated in the query, or given both as a query parameter and a header,
    or a header given twice (API Gateway's ``multiValueHeaders``) is ``duplicate_parameter``."""
    pairs = pairs_of(request.query_params or {})
    multi_headers = {k.lower(): v for k, v in (request.to_original_event().get("multiValueHeaders") or {}).items()}
    for name, header in HEADER_FIELDS.items():
        values = multi_headers.get(header.lower())
        if values is None:
            values = [request.headers[header]] if header in request.headers else []
        pairs += [(name, value) for value in values]
    if request.raw_body:
        pairs.append(("body_sha256", body_sha256(request.raw_body)))
    return unique_params(pairs)


def signed_path(request: Request) -> str:
    """The path a server-to-server signature covers: relative to our published base (no stage prefix,
    nor a custom domain's base path), each path parameter percent-encoded as the contract encodes."""
    path = request.path
    for name, value in (request.uri_params or {}).items():
        path = path.replace("{" + name + "}", encode(unquote(value)))  # decoded once, as ``path_params``
    return path


def member_channel(request: Request, code: str, cached: bool = False) -> tuple[sessions.Session, Channel]:
    """The session's member and channel; a session never reaches another channel's data. ``cached``: the
    channel from the short-lived cache (``core.cache``; checkout, whose transaction re-checks what matters)."""
    session = sessions.read(session_token(request))
    if session.channel_code != code:
        raise Forbidden("wrong_channel", "this session belongs to another channel")
    if cached:
        return session, cache.cached((Channel.__name__, None, code), lambda: entry.active_channel(code))
    return session, entry.active_channel(code)


def partner_channel(request: Request, code: str) -> Channel:
    """A channel's server calling us: signed per the contract (method and path bound), channel active (an
    unknown or suspended channel is told apart only after the signature is proven: ``entry.verify``); then
    metered, and paid for on a prepaid plan (402 ``prepaid_exhausted`` once its balance cannot pay)."""
    channel = entry.named_channel(code)
    params, path = partner_params(request), signed_path(request)
    if channel is None:  # fails as a wrong signature: unknown and unsigned look alike
        entry.verify(None, params, method=request.method, path=path)
    with sandbox_log.logged(channel, request.method, request.path):  # a sandbox's calls tick its guide's checklist
        entry.verify(channel, params, method=request.method, path=path)
    billing.admit_call(channel)
    return channel


def supplier_actor(request: Request) -> tuple[Supplier, str]:
    """The supplier behind the API key, and how the audit trail names it."""
    supplier = supplier_of(request)
    return supplier, f"supplier:{supplier.supplier_id}"
