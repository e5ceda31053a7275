"""Request bodies decoded with a msgspec Decoder, failures answered as OpenAI's 400s.

A type error names the offending path in ``param`` (``tools[0].type``), as the API does; a body
that is not JSON gets the API's own sentence. Parts of a body kept as plain JSON (Responses input
items, stored and echoed whole) are checked against a view of the keys the simulator reads with
:func:`check_view`, so a wrong type there is the same 400, not a handler's crash. Integers in a
query or a header are read by :func:`decimal`, as runcast reads its own ``starting_after``.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.mock.errors import APIError

__all__ = ["check_view", "decimal", "read_body"]

T = TypeVar("T")

_MAX_DIGITS = 18  # within int64, like the largest starting_after runcast passes on

_PATH = re.compile(r"at `\$\.?(.*?)`")
_FIELD = re.compile(r"field `(.+?)`")


def _param(message: str) -> str | None:
    """The offending parameter named by a msgspec error, e.g. ``tools[0].type``."""
    path = match.group(1) if (match := _PATH.search(message)) else ""
    if field := _FIELD.search(message):
        path = f"{path}.{field.group(1)}" if path else field.group(1)
    return path or None


async def read_body(
    request: web.Request, decoder: msgspec.json.Decoder[T], *, optional: bool = False
) -> T | None:
    """The decoded body; None for an empty body when ``optional``."""
    raw = await request.read()
    if optional and not raw.strip():
        return None
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise APIError(400, str(exc), param=_param(str(exc))) from None
    except msgspec.DecodeError:
        raise APIError(
            400,
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            "payload.",
        ) from None
    except RecursionError:
        raise APIError(400, "The JSON body of your request is nested too deeply.") from None


def check_view(value: object, view: Any, param: str) -> None:
    """Raise the 400 :func:`read_body` would when ``value``, found at ``param`` of a body, does
    not convert to ``view`` (whose Structs ignore the keys they do not name)."""
    try:
        msgspec.convert(value, view)
    except msgspec.ValidationError as exc:
        message = str(exc).replace(" - at `$", f" - at `$.{param}", 1)
        raise APIError(400, message, param=_param(message) or param) from None


def decimal(raw: str) -> int | None:
    """``raw`` as an integer: ASCII digits after an optional ``-``, at most ``_MAX_DIGITS``
    characters; None for anything else. ``int()`` would also take ``+5``, ``1_0``, spaces
    around, and the digits of other scripts (U+FF15, fullwidth 5)."""
    digits = raw.removeprefix("-")
    if len(raw) > _MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(raw)
