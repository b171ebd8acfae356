"""Errors with a stable machine-readable code, raised by the business code.

The HTTP layer turns each into ``{"error": {"code", "message"}}`` with the
status carried here; anything else becomes ``internal_error`` with no detail.
"""
from __future__ import annotations


class DomainError(Exception):
    status: int = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class Unprocessable(DomainError):
    status = 422


class Busy(DomainError):
    """Lost too many races on the same items; the caller may retry (idempotently)."""

    status = 503
