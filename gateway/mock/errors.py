"""HTTP errors of the simulated API, in OpenAI's body shape (spec §1.5).

Handlers raise :class:`APIError`; the middleware turns it into
``{"error": {"message", "type", "param", "code"}}`` with the status. It never leaves the app.
"""

from __future__ import annotations

import msgspec

__all__ = ["APIError", "ErrorBody", "ErrorObject", "clipped", "not_found", "quoted"]

QUOTE_CHARS = 64
"""At most this much of a caller's value is quoted back in an error message."""


class ErrorObject(msgspec.Struct, frozen=True, kw_only=True):
    """The inner error object; all four keys are always present (spec §1.5, §4.7)."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorObject


class APIError(Exception):
    """An HTTP error answer: status, the error object, and extra response headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = ErrorObject(message=message, type=type, param=param, code=code)
        self.headers = headers or {}


def not_found(kind: str, object_id: str, param: str | None = None) -> APIError:
    """The 404 OpenAI answers for an unknown id, e.g. ``No thread found with id 'thread_x'.``"""
    return APIError(404, f"No {kind} found with id '{clipped(object_id)}'.", param=param)


def clipped(text: str) -> str:
    """A caller's ``text`` for an error message, cut to :data:`QUOTE_CHARS` (a caller's
    megabyte of ``limit`` or of an id is not sent back to it)."""
    return text if len(text) <= QUOTE_CHARS else f"{text[: QUOTE_CHARS - 3]}..."


def quoted(value: object) -> str:
    """``value``'s repr for an error message, :func:`clipped`."""
    return clipped(repr(value))
