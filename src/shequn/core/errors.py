"""Domain errors. Services raise these; the API and console turn them into one error shape:
``{"code": ..., "message": ..., "details": ...}``. Messages are translatable (zh-Hans first)."""

from __future__ import annotations

from typing import Any


class ShequnError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = str(message)
        if code:
            self.code = code
        self.details = details


class NotFound(ShequnError):
    status = 404
    code = "not_found"


class Forbidden(ShequnError):
    status = 403
    code = "forbidden"


class Conflict(ShequnError):
    status = 409
    code = "conflict"


class Unavailable(ShequnError):
    """A dependency the operation needs is down (Redis for a gated flash sale): nothing was done,
    retry later (HTTP 503). Failing closed like this is what keeps a sale from overselling."""

    status = 503
    code = "unavailable"


class Invalid(ShequnError):
    """Input that is well-formed but breaks a rule; ``details`` names the fields."""

    status = 422
    code = "invalid"


class TooManyAttempts(ShequnError):
    """A throttled door (:mod:`shequn.core.throttle`): try again after ``details["retry_after"]`` seconds."""

    status = 429
    code = "rate_limited"
