"""Integration kit routes: the public OpenAPI document, and each channel's integration guide for ops."""
from __future__ import annotations

from chalice import Response

from chalicelib.callers.callers import ops_actor
from chalicelib.channels import channels
from chalicelib.core import web
from chalicelib.core.errors import BadRequest
from chalicelib.core.routing import Routes
from chalicelib.partners.kit import guide, openapi

routes = Routes(__name__)
route = routes.json


def req():
    return routes.request


@route("/docs/openapi.json")
def openapi_document() -> Response:
    """Public: it describes routes and contracts, never a channel or a key."""
    return Response(body=openapi.document(web.base_url(req())), status_code=200,
                    headers={**web.JSON, "Cache-Control": "public, max-age=300"})


@route("/ops/channels/{code}/guide", ops=True)
def ops_channel_guide(code: str) -> Response:
    """The channel's integration guide as an HTML page, or with ``format=md`` as Markdown."""
    ops_actor(req())
    fmt = web.query(req(), "format", "html")
    if fmt not in ("html", "md"):
        raise BadRequest("validation_error", "format is html or md", "format")
    text = guide.render(channels.get(code), web.base_url(req()), fmt)
    content_type = "text/markdown; charset=utf-8" if fmt == "md" else "text/html; charset=utf-8"
    headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
    if fmt == "md":
        headers["Content-Disposition"] = f'inline; filename="integration-guide-{code}.md"'
    return Response(body=text, status_code=200, headers=headers)
