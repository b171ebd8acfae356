"""Member routes: the signed entry link, the member's profile, the payment OTP."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers import entry
from chalicelib.callers.callers import member_channel, partner_channel
from chalicelib.core import web
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import count, logger
from chalicelib.core.routing import Routes
from chalicelib.members import members, payment_auth, sessions

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@routes.blueprint.route("/entry/{code}", methods=["GET"])
def channel_entry(code: str) -> Response:
    """The channel's fixed entry link: verify, map the member, start a session, redirect into the store."""
    request = req()
    try:
        web.check_path_params({"code": code})
        entered = entry.enter(code, request.query_params or {})
    except DomainError as error:
        count("EntryRefused")
        logger.info("entry refused", extra={"channel": code, "code": error.code})
        return web.error_page(error) if web.wants_html(request) else web.error_response(error)
    except Exception:
        logger.exception("entry failed", extra={"channel": code})
        return web.internal_error()
    count("Entries")
    return Response(body="", status_code=302, headers={
        "Location": web.base_url(request) + entered.redirect,  # the stage too: a bare /store/… is refused there
        "Set-Cookie": sessions.cookie(entered.token),
        "Cache-Control": "no-store",
    })


@route("/api/{code}/me")
def member_me(code: str) -> dict:
    session, _ = member_channel(req(), code)
    return members.view(members.get(session.member_id, code))


@route("/api/{code}/otp", methods=("POST",))
def member_otp(code: str) -> dict:
    session, channel = member_channel(req(), code)
    return payment_auth.send_otp(channel, members.get(session.member_id, code))


@route("/partner/{code}/members/{member_id}/points")
def partner_member_points(code: str, member_id: str) -> dict:
    """A hosted member's points as the channel's own app may show them: balance, lots with expiry, movements."""
    from chalicelib.checkout import wallets

    return wallets.channel_view(partner_channel(req(), code), member_id)
