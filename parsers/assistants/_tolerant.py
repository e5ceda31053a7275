"""Fallback decoding for payloads that carry a union member this version does not know.

Theory of operation. The spec says new content, tool, annotation and step types may appear
(§3, §4.8), but a msgspec tagged union rejects an unknown tag. Rather than slow down every
payload (decoding union lists as ``Raw`` and dispatching item by item costs a second parse per
item), decoding is two-tier:

1. Fast path: the strict msgspec Decoder of the payload type. Every known payload takes it, so
   the hot path (``thread.message.delta``) pays nothing for tolerance.
2. Only when that raises ``ValidationError``: decode the JSON to builtins, walk it alongside the
   payload type (``msgspec.inspect``, so only real union positions are touched - a JSON-Schema
   ``"type": "object"`` inside ``FunctionDefinition.parameters`` is left alone), replace every
   member whose tag is unknown (or missing) by an ``UnknownVariant`` form, and ``msgspec.convert``
   the result. If that still fails the payload is genuinely invalid and the caller reports it.

Cost: nothing on known payloads; a payload that takes the fallback costs about ten times a fast
decode (a message delta with an unknown part type: ~7 us instead of ~0.7 us per event,
bench/parse_bench.py), acceptable for types that appear only after an upstream change.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from msgspec import inspect as mi

from ._common import UnknownVariant

__all__ = ["TolerantDecoder"]

_T = TypeVar("_T")

_UNKNOWN_TAG = UnknownVariant.__struct_config__.tag


class TolerantDecoder(Generic[_T]):
    """Decode ``type_`` from JSON, turning unknown tagged-union members into ``UnknownVariant``."""

    __slots__ = ("_info", "_type")

    def __init__(self, type_: type[_T]) -> None:
        self._type = type_
        self._info = mi.type_info(type_)

    def decode(self, data: bytes) -> _T:
        """Raise ``msgspec.DecodeError`` (or ``ValidationError``) when the payload stays invalid."""
        obj = msgspec.json.decode(data)
        return msgspec.convert(_sanitize(obj, self._info), self._type)


def _sanitize(obj: Any, info: mi.Type) -> Any:
    if isinstance(info, mi.UnionType):
        return _sanitize_union(obj, info)
    if isinstance(info, mi.StructType):
        if type(obj) is dict:
            for field in info.fields:
                key = field.encode_name
                if key in obj:
                    obj[key] = _sanitize(obj[key], field.type)
        return obj
    if isinstance(info, mi.ListType) and type(obj) is list:
        return [_sanitize(item, info.item_type) for item in obj]
    return obj


def _sanitize_union(obj: Any, union: mi.UnionType) -> Any:
    if type(obj) is list:
        for member in union.types:
            if isinstance(member, mi.ListType):
                return _sanitize(obj, member)
        return obj
    if type(obj) is not dict:
        return obj
    structs = [m for m in union.types if isinstance(m, mi.StructType)]
    tagged = {m.tag: m for m in structs if m.tag_field is not None and m.tag != _UNKNOWN_TAG}
    if not tagged:
        return _sanitize(obj, structs[0]) if structs else obj
    tag_field = next(iter(tagged.values())).tag_field or "type"
    tag = obj.get(tag_field)
    known = tagged.get(tag) if isinstance(tag, str) else None
    if known is not None:
        return _sanitize(obj, known)
    if not any(m.cls is UnknownVariant for m in structs):
        return obj
    return {
        tag_field: _UNKNOWN_TAG,
        "original_type": tag if isinstance(tag, str) else "",
        "raw": obj,
    }
