"""Errors of the update server, and their JSON form on the API."""

from __future__ import annotations

from typing import Any

from pumpguard.errors import PumpguardError

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RefusedError",
    "ServerError",
    "UnauthorizedError",
]


class ServerError(PumpguardError):
    """Base of every error the update server raises."""


class ApiError(ServerError):
    """An error answered to an API client as JSON with an HTTP status.

    Attributes:
        status: HTTP status code.
        code: Short machine-readable error code.
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """The response body: ``{"error": {"code", "message", ...}}``."""
        return {"error": {"code": self.code, "message": str(self), **self.detail}}


class BadRequestError(ApiError):
    """Malformed input: the message says what is wrong."""


class UnauthorizedError(ApiError):
    """No or invalid credentials (token, device signature)."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    """Valid credentials without the right to do this."""

    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    """No such resource."""

    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The request conflicts with current state (exists already, replay ...)."""

    status = 409
    code = "conflict"


class PayloadTooLargeError(ApiError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"


class RefusedError(ApiError):
    """Well-formed input that fails verification (e.g. a refused release)."""

    status = 422
    code = "refused"
