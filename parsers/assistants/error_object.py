"""The payload of ``event: error`` (spec §4.7), in both forms seen on the wire.

The spec sends the bare Error object; older OpenAI code and Node's decoder use the HTTP
``ErrorResponse`` shape ``{"error": {...}}`` (spec §2.4, §6.4). Both decode to one
:class:`ErrorObject`. A plain string under ``error`` (common on OpenAI-compatible servers) becomes
its ``message``.
"""

from __future__ import annotations

from ._common import Model

__all__ = ["ErrorEnvelope", "ErrorObject"]


class ErrorObject(Model, frozen=True):
    """``message`` and ``type`` are the keys the spec marks required; all default here."""

    code: str | None = None
    message: str = ""
    param: str | None = None
    type: str = ""


class ErrorEnvelope(Model, frozen=True):
    """Decoding shape that accepts the bare and the wrapped form; see :meth:`unwrap`."""

    code: str | None = None
    message: str = ""
    param: str | None = None
    type: str = ""
    error: ErrorObject | str | None = None

    def unwrap(self) -> ErrorObject:
        inner = self.error
        if isinstance(inner, ErrorObject):
            return inner
        if isinstance(inner, str):
            return ErrorObject(code=self.code, message=inner, param=self.param, type=self.type)
        return ErrorObject(code=self.code, message=self.message, param=self.param, type=self.type)
