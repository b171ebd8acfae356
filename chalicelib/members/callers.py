"""Who is calling, and with which proof: a member's session, a channel's signed server, a supplier's key."""
from __future__ import annotations

from chalice.app import Request

from chalicelib.channels.models import Channel
from chalicelib.core import web
from chalicelib.core.errors import Forbidden
from chalicelib.members import entry, sessions
from chalicelib.partners import billing
from chalicelib.partners.kit import sandbox_log
from chalicelib.supply.models import Supplier


def member_channel(request: Request, code: str) -> tuple[sessions.Session, Channel]:
    """The session's member and channel; a session never reaches another channel's data."""
    session = sessions.read(web.session_token(request))
    if session.channel_code != code:
        raise Forbidden("wrong_channel", "this session belongs to another channel")
    return session, entry.active_channel(code)


def partner_channel(request: Request, code: str) -> Channel:
    """A channel's server calling us: signed per the contract (method and path bound), channel active (an
    unknown or suspended channel is told apart only after the signature is proven: ``entry.verify``); then
    metered, and paid for on a prepaid plan (402 ``prepaid_exhausted`` once its balance cannot pay)."""
    channel = entry.named_channel(code)
    params, path = web.partner_params(request), web.signed_path(request)
    if channel is None:  # fails as a wrong signature: unknown and unsigned look alike
        entry.verify(None, params, method=request.method, path=path)
    with sandbox_log.logged(channel, request.method, request.path):  # a sandbox's calls tick its guide's checklist
        entry.verify(channel, params, method=request.method, path=path)
    billing.admit_call(channel)
    return channel


def supplier_actor(request: Request) -> tuple[Supplier, str]:
    """The supplier behind the API key, and how the audit trail names it."""
    supplier = web.supplier(request)
    return supplier, f"supplier:{supplier.supplier_id}"
