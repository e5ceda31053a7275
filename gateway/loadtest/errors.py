"""The target's own words for a refused request, kept with the error kind the report counts.

A status alone (``subscriber_http_429``) leaves the user guessing which limit was hit; the body
of an OpenAI-shaped error (``{"error": {"code", "message", ...}}``, runcast's own errors have the
same shape) says it: ``too_many_channels_per_client: client 127.0.0.1 holds 256 thread
streams...``. :func:`error_text` reads it from at most ``ERROR_BODY_BYTES`` and returns printable
text only (a target's bytes are shown on the user's terminal), cut at ``MAX_TEXT`` characters.
A redirect is never followed (the load goes to the URLs it is given, nowhere else):
:func:`refusal_text` says where it pointed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from parsers.errors import DECODE_ERRORS

__all__ = ["ERROR_BODY_BYTES", "MAX_TEXT", "error_text", "refusal_text"]

ERROR_BODY_BYTES = 4096
MAX_TEXT = 200


def error_text(body: bytes) -> str | None:
    """``code: message`` of an OpenAI-shaped error body (or its string ``error``); None when
    the body is not one."""
    try:
        obj: Any = msgspec.json.decode(body)
    except DECODE_ERRORS:
        return None
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict):
        parts = [error.get("code"), error.get("message")]
        text = ": ".join(p for p in parts if isinstance(p, str) and p)
    elif isinstance(error, str):
        text = error
    else:
        return None
    return _printable(text) or None


def refusal_text(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """What the target said with a status other than 200: where a redirect pointed (it is not
    followed), else :func:`error_text` of the body."""
    if 300 <= status < 400:
        where = _printable(headers.get("Location", "")) or "nowhere"
        return f"redirect to {where} not followed: the load goes only to the URLs it is given"
    return error_text(body)


def _printable(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:MAX_TEXT]
