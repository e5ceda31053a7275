"""Half a UTF-16 surrogate pair escaped in upstream JSON (``"\\ud83d"``): decoding it, and
encoding the strings that hold one.

JSON's grammar allows a ``\\uXXXX`` escape of either half of a pair on its own (RFC 8259 §7;
§8.2 leaves what a reader makes of it open). A server that cuts its text by UTF-16 code units
can send the two halves of one character in two deltas. msgspec (like orjson) rejects such a
string, which would lose the whole event. The openai SDK reads events with ``json.loads``,
which keeps each half as a lone code point, so its concatenated deltas hold the pair again.
runcast does the same, on the error path only:

* :func:`loads_lone_surrogates` decodes, with ``json.loads``, an event msgspec rejected when it
  holds a surrogate escape; the protocol decoder converts the result to its event type;
* the reducers keep the halves as they came: fragments joined at snapshot time rejoin the pair;
* :func:`scrub`, called when a snapshot does not encode (a ``str`` with a lone surrogate has no
  UTF-8), makes each adjacent pair its character and each half without its other half U+FFFD,
  as a UTF-8 decoder replaces bytes it cannot read. Fragments are not scrubbed in place: a half
  that ends one delta still meets its other half in the next.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["loads_lone_surrogates", "scrub"]

_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> None:
    # msgspec refuses NaN and Infinity; the fallback must not accept what it refused for them.
    raise ValueError(f"{name} is not JSON")


def loads_lone_surrogates(data: bytes) -> Any | None:
    """``data`` as Python values when it holds a surrogate escape and is valid JSON otherwise;
    None if it does not (the caller then reports its own decoding error)."""
    if _SURROGATE_ESCAPE.search(data) is None:
        return None
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def scrub(value: Any) -> Any:
    """A copy of JSON-like ``value`` whose strings all encode to UTF-8 (module docstring)."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
