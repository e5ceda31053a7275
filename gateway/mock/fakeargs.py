"""Plausible tool-call arguments generated from a function tool's JSON Schema ``parameters``.

Covers what function schemas use in practice: ``type`` (single or a list), ``enum``, ``const``,
``anyOf``/``oneOf``/``allOf`` (first usable branch), objects with ``properties``/``required``
(every property is filled, so required ones always are), arrays with ``items`` and
``minItems``/``maxItems``, strings with ``minLength``/``maxLength`` and common ``format``s, numbers
and integers within ``minimum``/``maximum`` (and the exclusive forms), booleans and null. Output is
deterministic for a given ``random.Random`` state.

The schema comes from a request, so what it asks for is clamped: at most 16 items an array, 8
levels, and 2,000 values and words (a string's padding to ``minLength``) in all. A schema asking
for more (``minItems`` of 10**7, ``minLength`` of 10**12) gets short arguments that do not meet
it, at once, instead of holding the event loop; a size that is not a number is ignored.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from typing import Any

from gateway.mock.textgen import WORDS

__all__ = ["fake_arguments"]

_MAX_DEPTH = 8
_MAX_ITEMS = 16
_MAX_VALUES = 2000
_FORMATS = {
    "date-time": "2024-05-01T12:00:00Z",
    "date": "2024-05-01",
    "time": "12:00:00",
    "email": "ada@example.com",
    "uri": "https://example.com/resource",
    "url": "https://example.com/resource",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def fake_arguments(parameters: Mapping[str, Any] | None, rng: random.Random) -> dict[str, Any]:
    """A JSON object that fits ``parameters`` (an empty object when there is no schema)."""
    if not parameters:
        return {}
    value = _Faker(rng).value(parameters, 0)
    return value if isinstance(value, dict) else {"value": value}


class _Faker:
    """One call's generation: the random source and the values and words still allowed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.left = _MAX_VALUES

    def value(self, schema: Any, depth: int) -> Any:
        self.left -= 1
        if self.left < 0 or depth > _MAX_DEPTH:
            return None
        return _value(schema, self, depth)


def _value(schema: Any, faker: _Faker, depth: int) -> Any:
    rng = faker.rng
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return rng.choice(enum)
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if isinstance(b, Mapping) and b.get("type") != "null"]
            return faker.value(usable[0] if usable else branches[0], depth + 1)
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, faker, depth)
    if kind == "array":
        return _array(schema, faker, depth)
    if kind == "integer":
        lo, hi = _bounds(schema, 0, 100)
        lo, hi = math.ceil(lo), math.floor(hi)
        return rng.randint(lo, hi) if lo <= hi else lo
    if kind == "number":
        lo, hi = _bounds(schema, 0.0, 100.0)
        return round(rng.uniform(lo, hi), 2) if lo < hi else lo
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, faker)


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _object(schema: Mapping[str, Any], faker: _Faker, depth: int) -> dict[str, Any]:
    if depth >= _MAX_DEPTH:
        return {}
    props = schema.get("properties")
    out: dict[str, Any] = {}
    if isinstance(props, Mapping):
        for name, sub in props.items():
            out[str(name)] = faker.value(sub, depth + 1)
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            out.setdefault(str(name), faker.rng.choice(WORDS))
    return out


def _array(schema: Mapping[str, Any], faker: _Faker, depth: int) -> list[Any]:
    if depth >= _MAX_DEPTH:
        return []
    lo = min(_size(schema.get("minItems"), 1), _MAX_ITEMS)
    hi = min(_size(schema.get("maxItems"), lo + 2), _MAX_ITEMS)
    count = faker.rng.randint(lo, max(lo, hi))
    items = schema.get("items", {})
    return [faker.value(items, depth + 1) for _ in range(count)]


def _string(schema: Mapping[str, Any], faker: _Faker) -> str:
    rng = faker.rng
    fmt = schema.get("format")
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
    if not text:
        text = rng.choice(WORDS)
    min_len = _size(schema.get("minLength"), 0)
    max_len = schema.get("maxLength")
    words = [text]
    length = len(text)
    while length < min_len and faker.left > 0:
        faker.left -= 1
        word = rng.choice(WORDS)
        words.append(word)
        length += 1 + len(word)
    text = " ".join(words)
    if isinstance(max_len, int):
        text = text[: max(max_len, min_len)]
    return text


def _size(value: Any, default: int) -> int:
    """A schema's count (``minItems``, ``minLength`` ...): ``default`` unless a non-negative
    integer (or an integral float)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


def _bounds(schema: Mapping[str, Any], lo: float, hi: float) -> tuple[float, float]:
    step = 1 if schema.get("type") == "integer" else 0.01
    low = _number(schema.get("minimum"))
    high = _number(schema.get("maximum"))
    ex_low = _number(schema.get("exclusiveMinimum"))
    ex_high = _number(schema.get("exclusiveMaximum"))
    if ex_low is not None:
        low = ex_low + step
    if ex_high is not None:
        high = ex_high - step
    if low is not None and high is not None:
        return low, high
    if low is not None:
        return low, low + (hi - lo)
    if high is not None:
        return (lo if high >= lo else high - (hi - lo)), high
    return lo, hi


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= 1e300:
        return None  # not a number, NaN, infinite, or past what random.uniform can take
    return value
