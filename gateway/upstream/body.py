"""Request building for upstream calls: URLs, query strings and JSON bodies (pure, no I/O).

A body given as bytes is the caller's own JSON and is sent as is (the transparent proxy must not
re-encode a client's request). The one exception is the ``stream`` flag of the run-starting calls,
which decides whether the answer is SSE or JSON (spec §1.4): :func:`with_stream_flag` splices
``"stream":true`` into the bytes when it is missing, and re-encodes only when the caller set it to
something else. :func:`json_object` is the one reading of a body's bytes, which runcast also
applies to a streamed call's body before it starts a relay (``gateway/http/routes.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import quote, unquote, urlencode

import orjson
from yarl import URL

__all__ = [
    "MAX_NESTING",
    "Body",
    "Query",
    "build_url",
    "json_object",
    "path_id",
    "query_pairs",
    "unsafe_path",
    "with_stream_flag",
]

Body: TypeAlias = bytes | Mapping[str, Any]
"""A JSON request body: raw bytes (sent untouched) or a mapping (encoded with orjson)."""

QueryValue: TypeAlias = str | int | float | bool | Sequence[str]
Query: TypeAlias = str | Mapping[str, QueryValue | None] | None
"""A query: an already-encoded string (sent verbatim) or a mapping; None values are dropped."""

_JSON_WS = b" \t\r\n"  # RFC 8259 §2 insignificant whitespace

MAX_NESTING = 254
"""Deepest nesting of arrays and objects read in a body: orjson.dumps refuses deeper values, and
bodies are written back with it (here, tool outputs); far within the recursion budget of the
msgspec views that read them on Python's stack (``RecursionError`` past it)."""


def path_id(value: str) -> str:
    """An object ID made safe as one path segment (IDs are opaque; never let one add a ``/``)."""
    if not value:
        raise ValueError("empty object ID in upstream path")
    return quote(value, safe="")


def query_pairs(query: Mapping[str, QueryValue | None]) -> list[tuple[str, str]]:
    """Mapping to ordered pairs: booleans as ``true``/``false``; a sequence value ``v`` of key ``k``
    becomes repeated ``k[]=v`` pairs, the encoding the openai SDK uses for ``include[]`` (spec §1.2)."""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            pairs.append((key, str(value)))
        else:
            name = key if key.endswith("[]") else key + "[]"
            pairs.extend((name, str(item)) for item in value)
    return pairs


_DOT_SEGMENTS = frozenset({".", ".."})
_DECODE_ROUNDS = 3
"""Percent-decodings tried per segment: ``%252e`` is ``%2e`` to a server that decodes twice."""


def unsafe_path(path: str) -> str | None:
    """Why ``path`` (percent-encoded, as received) must not be sent upstream, or None.

    The proxy forwards a caller's path with runcast's key attached, so it must stay below the
    upstream's base URL whatever normalisation the upstream (or a proxy before it) applies:
    no dot segment (RFC 3986 §5.2.4 removes them, and a server may do so after decoding
    ``%2e``, in any case, or stop a segment at ``;``), no encoded ``/`` or backslash (servers that
    decode them see more segments), and no empty segment (``//`` is collapsed by some servers).
    """
    for segment in path.removeprefix("/").split("/"):
        if not segment:
            return "empty path segment"
        decoded = segment
        for _ in range(_DECODE_ROUNDS):
            if "%" not in decoded:
                break
            decoded = unquote(decoded)
        if "/" in decoded or "\\" in decoded:
            return "encoded '/' or '\\' in a path segment"
        if decoded.partition(";")[0] in _DOT_SEGMENTS:
            return "'.' or '..' path segment"
    return None


def build_url(base_url: str, path: str, query: Query = None) -> URL:
    """``base_url`` joined with ``path`` (already percent-encoded, kept byte-exact) and ``query``.

    A query in ``base_url`` (Azure's ``?api-version=``, a function key's ``?code=``) belongs to
    every request, as the openai SDK's ``default_query`` does: ``path`` joins the base URL's path
    and ``query`` follows the base URL's own parameters, both byte-exact (a parameter named in
    both goes twice, the base URL's first). A fragment is never sent (RFC 9110 section 4.2.1)."""
    if not path.startswith("/"):
        path = "/" + path
    base, _, base_query = base_url.partition("#")[0].partition("?")
    text = base.rstrip("/") + path
    if isinstance(query, str):
        own = query.removeprefix("?")
    else:
        own = urlencode(query_pairs(query), quote_via=quote) if query else ""
    joined = "&".join(part for part in (base_query.strip("&"), own) if part)
    if joined:
        text += "?" + joined
    return URL(text, encoded=True)


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed, when it is a JSON object runcast can read and write back; else ValueError.

    orjson refuses what RFC 8259 leaves unpredictable between implementations (§8.1 invalid UTF-8,
    §8.2 unpaired surrogates, §6 numbers beyond a double) and nesting deeper than 1024 levels;
    :data:`MAX_NESTING` bounds the nesting further.
    """
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError("request body must be a JSON object")
    level: list[Any] = [parsed]
    for _ in range(MAX_NESTING):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return parsed
    raise ValueError(f"request body nests arrays and objects deeper than {MAX_NESTING} levels")


def with_stream_flag(body: Body | None, stream: bool) -> bytes:
    """The JSON object ``body`` with its top-level ``stream`` set to ``stream``.

    Bytes that already carry the wanted value come back unchanged; when the key is missing and a
    stream is wanted, ``"stream":true`` is spliced in after the opening brace so every other byte
    stays the client's. Raises ValueError when ``body`` is not a JSON object (:func:`json_object`).
    """
    if body is None:
        return b'{"stream":true}' if stream else b"{}"
    if not isinstance(body, bytes):
        obj = dict(body)
        if stream:
            obj["stream"] = True
        else:
            obj.pop("stream", None)
        return orjson.dumps(obj)
    parsed = json_object(body)
    current = parsed.get("stream")
    if stream:
        if current is True:
            return body
        if "stream" not in parsed:
            start = len(body) - len(body.lstrip(_JSON_WS))
            # `{` is at `start` (a JSON object); anything but `}` after it means members follow.
            rest = body[start + 1 :]
            sep = b"" if rest.lstrip(_JSON_WS).startswith(b"}") else b","
            return body[: start + 1] + b'"stream":true' + sep + rest
        parsed["stream"] = True
        return orjson.dumps(parsed)
    if not current:
        return body
    del parsed["stream"]
    return orjson.dumps(parsed)
