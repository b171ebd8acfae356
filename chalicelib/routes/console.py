"""Ops' browser door on the local stack: sign in once with the printed ops token (a signed session in an
``HttpOnly; SameSite=Strict`` cookie, ``callers.ops_sessions``), a home page of ops links, sign out.

Deployed stages put these routes behind IAM like every ``/ops`` route, and they refuse anyway: ops there use the
AWS console (its dashboard's custom widgets, ``routes.widgets``)."""
from __future__ import annotations

import re
from html import escape
from urllib.parse import parse_qs, quote

from chalice import Response

from chalicelib.callers import ops_sessions as sessions
from chalicelib.callers.callers import ops_actor
from chalicelib.channels import channels
from chalicelib.core import config, web
from chalicelib.core.errors import NotFound
from chalicelib.core.routing import Routes

routes = Routes(__name__)
route = routes.json
FORM = ("application/x-www-form-urlencoded",)
HTML = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
        # no other site may frame the token form or the ops home (a click there would be ours)
        "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# Where a sign-in may send the browser: an ops page of this site, never another site (``//host``, ``/\\host``).
_NEXT = re.compile(r"/ops/[A-Za-z0-9_.:~%/-]*(\?[A-Za-z0-9_.:~%=&,+-]*)?")
HOME = "/ops/home"
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:40em;color:#222}input,button{font-size:1em;"
         "padding:.4em}input[type=password]{width:100%;box-sizing:border-box}li{margin:.3em 0}.error{color:#b00020}")


def req():
    return routes.request


def _local_only() -> None:
    if not config.IS_LOCAL:
        raise NotFound("not_found", "ops sign in on the local stack only; in AWS use the console's dashboard")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` if it is an ops page of this site, else the ops home page."""
    return value if value and _NEXT.fullmatch(value) else HOME


def _page(title: str, body: str, status: int = 200, headers: dict | None = None) -> Response:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{body}</body></html>")
    return Response(body=html, status_code=status, headers={**HTML, **(headers or {})})


def _sign_in_form(next_url: str, error: str = "") -> str:
    shown = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return (f"<h1>Channel Mall ops: sign in</h1><p>Paste the ops token <code>make run</code> printed "
            f"(also in <code>.local/stack.json</code>). It is asked once; this browser then keeps a session "
            f"for {sessions.SECONDS // 3600} hours.</p>{shown}"
            f'<form method="post" action="/ops/sign-in"><input type="hidden" name="next" value="{escape(next_url)}">'
            f'<label>Ops token<br><input type="password" name="token" autocomplete="off" autofocus required>'
            f"</label><p><button type=submit>Sign in</button></p></form>"
            # A link followed from another site arrives without the SameSite=Strict cookie; one click from here does.
            f'<p><small>Signed in already? <a href="{escape(next_url)}">Continue</a>.</small></p>')


@route("/ops/sign-in", ops=True)
def sign_in_page() -> Response:
    _local_only()
    return _page("Sign in", _sign_in_form(safe_next(web.query(req(), "next"))))


@route("/ops/sign-in", methods=("POST",), ops=True, content_types=FORM)
def sign_in() -> Response:
    """The token, once (constant-time comparison); a session cookie (not the token) and back to the page."""
    _local_only()
    form = parse_qs((req().raw_body or b"").decode("utf-8", "replace"), max_num_fields=4)
    next_url = safe_next((form.get("next") or [""])[0])
    if not sessions.token_matches((form.get("token") or [""])[0]):
        return _page("Sign in", _sign_in_form(next_url, "That is not this stack's ops token."), 401)
    value, _ = sessions.issue()
    return Response(body="", status_code=303, headers={"Location": next_url, "Set-Cookie": sessions.cookie(value),
                                                        "Cache-Control": "no-store"})


@route("/ops/sign-out", methods=("POST",), ops=True, content_types=FORM)
def sign_out() -> Response:
    """Only a signed-in page can sign out (its form carries the CSRF token); the cookie is cleared."""
    _local_only()
    form = parse_qs((req().raw_body or b"").decode("utf-8", "replace"), max_num_fields=4)
    sessions.admit(web.cookie(req(), sessions.COOKIE) or "", "POST", (form.get("csrf") or [""])[0])
    return Response(body="", status_code=303, headers={"Location": "/ops/sign-in",
                                                        "Set-Cookie": sessions.cleared(), "Cache-Control": "no-store"})


@route("/ops/home", ops=True)
def home() -> Response:
    """The ops pages a browser can open; the CSRF token for state-changing calls in a meta tag."""
    _local_only()
    ops_actor(req())
    value = web.cookie(req(), sessions.COOKIE)
    csrf = sessions.read(value).csrf if value else ""
    links = [("/ops/reports/operating", "Daily operating report, every channel"),
             ("/ops/goods?status=pending_review", "Goods waiting for review"),
             ("/ops/audit/latest", "Latest invariant audit"), ("/ops/channels", "Channels"),
             ("/ops/settlement", "Settlement periods that can be settled")]
    for channel in channels.list_all():
        code = quote(channel.code)
        links += [(f"/ops/channels/{code}/guide", f"{channel.name}: integration guide"),
                  (f"/ops/channels/{code}/webhooks/parked", f"{channel.name}: parked webhooks")]
    items = "".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in links)
    sign_out_form = (f'<form method="post" action="/ops/sign-out"><input type="hidden" name="csrf" '
                     f'value="{escape(csrf)}"><button type=submit>Sign out</button></form>') if csrf else ""
    return _page("Ops", f'<meta name="csrf-token" content="{escape(csrf)}"><h1>Channel Mall ops</h1>'
                        f"<ul>{items}</ul>{sign_out_form}")
