"""Plausible tool-call arguments generated from a function tool's JSON Schema ``parameters``.

Covers what function schemas use in practice: ``type`` (single or a list), ``enum``, ``const``,
``anyOf``/``oneOf``/``allOf`` (first usable branch), objects with ``properties``/``required``
(every property is filled, so required ones always are), arrays with ``items`` and
``minItems``/``maxItems``, strings with ``minLength``/``maxLength`` and common ``format``s, numbers
and integers within ``minimum``/``maximum`` (and the exclusive forms), booleans and null. Output is
deterministic for a given ``random.Random`` state.
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
    value = _value(parameters, rng, 0)
    return value if isinstance(value, dict) else {"value": value}


def _value(schema: Any, rng: random.Random, depth: int) -> Any:
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
            return _value(usable[0] if usable else branches[0], rng, depth + 1)
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, rng, depth)
    if kind == "array":
        return _array(schema, rng, depth)
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
    return _string(schema, rng)


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


def _object(schema: Mapping[str, Any], rng: random.Random, depth: int) -> dict[str, Any]:
    if depth >= _MAX_DEPTH:
        return {}
    props = schema.get("properties")
    out: dict[str, Any] = {}
    if isinstance(props, Mapping):
        for name, sub in props.items():
            out[str(name)] = _value(sub, rng, depth + 1)
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            out.setdefault(str(name), rng.choice(WORDS))
    return out


def _array(schema: Mapping[str, Any], rng: random.Random, depth: int) -> list[Any]:
    if depth >= _MAX_DEPTH:
        return []
    lo = max(int(schema.get("minItems", 1)), 0)
    hi = int(schema.get("maxItems", lo + 2))
    count = rng.randint(lo, max(lo, hi))
    items = schema.get("items", {})
    return [_value(items, rng, depth + 1) for _ in range(count)]


def _string(schema: Mapping[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    text = _FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
    if not text:
        text = rng.choice(WORDS)
    min_len = int(schema.get("minLength", 0))
    max_len = schema.get("maxLength")
    while len(text) < min_len:
        text += " " + rng.choice(WORDS)
    if isinstance(max_len, int):
        text = text[: max(max_len, min_len)]
    return text


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
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
