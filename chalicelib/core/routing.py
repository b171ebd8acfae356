"""How each business area declares its HTTP routes: a Chalice Blueprint whose JSON views answer a
``DomainError`` in the contract's error shape and any other fault as a bare 500 (never a stack trace)."""
from __future__ import annotations

import functools
from typing import Callable

from chalice import Blueprint, IAMAuthorizer, Response
from chalice.app import Request

from chalicelib.core import web
from chalicelib.core.errors import DomainError
from chalicelib.core.observability import count, logger

# Admin routes are IAM-authorised in every deployed stage; chalice local admits
# them and ``callers.ops_actor`` demands the local-only token instead.
ops_iam = IAMAuthorizer()


class Routes:
    """One area's routes; ``app.py`` registers ``blueprint``."""

    def __init__(self, import_name: str) -> None:
        self.blueprint = Blueprint(import_name)

    @property
    def request(self) -> Request:
        return self.blueprint.current_request

    def json(self, path: str, methods: tuple[str, ...] = ("GET",), ops: bool = False, status: int = 200,
             content_types: tuple[str, ...] = ("application/json",)) -> Callable:
        """Register a JSON route; path parameters are bounded before the view runs. ``content_types``: the request
        bodies it takes (another is 415 before the view runs)."""
        def register(view: Callable) -> Callable:
            @functools.wraps(view)
            def handle(**params: str) -> Response:
                try:
                    result = view(**web.path_params(params))
                    return result if isinstance(result, Response) else Response(
                        body=result, status_code=status, headers=web.JSON)
                except DomainError as error:
                    count("ClientErrors")
                    if ops and error.status == 401 and web.opens_sign_in(self.request):
                        return web.to_sign_in(self.request)
                    return web.error_response(error)
                except Exception:
                    logger.exception("unhandled error", extra={"path": path})
                    count("ServerErrors")
                    return web.internal_error()
            return self.blueprint.route(path, methods=list(methods), authorizer=ops_iam if ops else None,
                                        content_types=list(content_types))(handle)
        return register
