"""The supplier workbench's own routes: sign-in links, the session cookie, the page, and the supplier API's
OpenAPI document. Everything the workbench does after sign-in goes through the supplier API's routes."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers.callers import ops_actor, supplier_by_key
from chalicelib.core import web
from chalicelib.core.routing import Routes
from chalicelib.core.web import schemas  # loads on first use (pydantic is ~85 ms of cold start)
from chalicelib.routes import supplier_openapi
from chalicelib.supply import signin, signin_rules, workbench

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


def _cookie() -> str | None:
    return signin_rules.cookie_value(req().headers.get("cookie"))


@route("/supplier/signin-links", methods=("POST",), status=201)
def supplier_signin_link() -> dict:
    """The key holder makes a link for a member of its staff; a workbench session cannot (it proves less)."""
    supplier = supplier_by_key(req())
    return signin.create_link(supplier.supplier_id, f"supplier:{supplier.supplier_id}", web.base_url(req()))


@route("/ops/suppliers/{supplier_id}/signin-links", methods=("POST",), ops=True, status=201)
def ops_supplier_signin_link(supplier_id: str) -> dict:
    actor = ops_actor(req())
    return signin.create_link(supplier_id, actor, web.base_url(req()))


@route("/supplier/session", methods=("POST",), status=201)
def supplier_session_start() -> Response:
    """A sign-in link's token → the session cookie. JSON only: a form on another site cannot post here (and
    the cookie is SameSite=Strict), so nobody can be signed in to someone else's workbench unawares."""
    signed_in = signin.sign_in(web.body(req(), schemas.WorkbenchSignIn).token)
    body = signin.view(signed_in.session, signin.suppliers.get(signed_in.session.supplier_id))
    return Response(body=body, status_code=201, headers={
        **web.JSON, "Cache-Control": "no-store",
        "Set-Cookie": signin_rules.cookie(signed_in.token, signin_rules.SESSION_SECONDS, signin.secure_cookies())})


@route("/supplier/session")
def supplier_session() -> Response:
    """The signed-in session: the supplier and the CSRF token the page sends back on every change."""
    session = signin.session_of(_cookie())
    supplier = signin.supplier_of(_cookie(), "GET", None)
    return Response(body=signin.view(session, supplier), status_code=200,
                    headers={**web.JSON, "Cache-Control": "no-store"})


@route("/supplier/session", methods=("DELETE",))
def supplier_session_end() -> Response:
    signin.sign_out(_cookie(), req().headers.get(signin_rules.CSRF_HEADER))
    return Response(body={"signed_out": True}, status_code=200, headers={
        **web.JSON, "Set-Cookie": signin_rules.cleared_cookie(signin.secure_cookies())})


@routes.blueprint.route("/workbench", methods=["GET"])
def workbench_page() -> Response:
    """The supplier workbench: one static page; it holds no secret and reads everything through the API."""
    return Response(body=workbench.page(), status_code=200, headers=workbench.HEADERS)


@route("/docs/supplier-openapi.json")
def supplier_openapi_document() -> Response:
    """Public: it describes routes, never a supplier or a key."""
    return Response(body=supplier_openapi.document(web.base_url(req())), status_code=200,
                    headers={**web.JSON, "Cache-Control": "public, max-age=300"})
