"""Which headers cross the proxy in each direction, the 401 that describes runcast's key, and
the header every answer carries.

Requests forward only what the upstream uses (spec §1.1): content type (multipart uploads need
the caller's boundary), accept, the ``OpenAI-*`` scoping and beta headers, an idempotency key,
the SDKs' ``X-Stainless-*`` telemetry (their retry count and timeout among it) and the
simulator's ``X-Mock-*`` switches. ``Authorization`` is never copied here: the upstream client
sets it (runcast's key, or the caller's bearer when runcast holds none). Responses return what
SDKs and HTTP clients read: request id, retry and poll hints, rate-limit headers, content type
and disposition, caching (``Cache-Control``, ``ETag``, ``Last-Modified``), ``Location``, ``Link``
and ``Allow``. Everything else (hop-by-hop headers, cookies, server internals) stays behind. The upstream key itself is already masked in
whatever the upstream sent (``gateway/upstream/scrub.py``, applied where upstream bytes enter).

What goes upstream goes byte for byte. Header bytes that are not UTF-8 reach runcast as surrogate
escapes, which aiohttp's client leaves out when it writes the header (``Bearer sk-\\xffabc`` would
go as ``Bearer sk-abc``): a request with such a header to forward (one of these, or the caller's
own ``Authorization`` where it passes on) is refused with a 400 naming the header, never its
value, before anything goes upstream (:func:`forwardable`).

Every answer says ``X-Content-Type-Options: nosniff``: a proxied file (its type is the
upstream's), an error quoting a path or a stream is never rendered as a page by a browser on
runcast's origin, where the viewer lives.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict

from .errors import RequestError

__all__ = [
    "copy_response_headers",
    "forward_request_headers",
    "forwardable",
    "nosniff",
    "relayed_body",
]

_REQUEST_HEADERS = (
    "Accept",
    "Content-Type",
    "OpenAI-Beta",
    "OpenAI-Organization",
    "OpenAI-Project",
    "Idempotency-Key",
)

_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Disposition",
    "x-request-id",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Location",
    "Link",
    "Allow",
)
_RESPONSE_NAMES = frozenset(name.lower() for name in _RESPONSE_HEADERS)
_RESPONSE_PREFIXES = ("x-ratelimit-", "openai-")
_LIST_NAMES = frozenset({"link", "cache-control", "allow"})
"""Headers whose values are lists (RFC 9110 §5.3): repeated, each value counts. Any other
repeated one (a ``Content-Type``, a ``Location``, a rate-limit count) passes its last value,
as a client reading it expects one (httpx joins repeats: ``false, false``)."""


_REQUEST_PREFIXES = ("x-stainless-", "x-mock-")


def forward_request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers that go upstream (names as the upstream client expects them).

    Raises a 400 :class:`RequestError` when one of them cannot go byte for byte."""
    out = {name: headers[name] for name in _REQUEST_HEADERS if name in headers}
    out.update(
        (name, value)
        for name, value in headers.items()
        if name.lower().startswith(_REQUEST_PREFIXES)
    )
    for name, value in out.items():
        forwardable(name, value)
    return out


def forwardable(name: str, value: str) -> str:
    """``value`` of the caller's header ``name``, when it can go upstream as it came; else a 400
    :class:`RequestError` (module docstring)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        name = str(name)  # aiohttp's names are istr, which the error's encoder refuses
        raise RequestError(
            400,
            f"the {name} header holds bytes that are not UTF-8, which runcast cannot forward"
            " unchanged",
            code="invalid_header",
            param=name,
        ) from None
    return value


def copy_response_headers(
    headers: Mapping[str, str], *, content_type: bool = True
) -> CIMultiDict[str]:
    """The upstream's response headers that go back to the caller (any name case; setting one
    on the result replaces the upstream's, whatever its case).

    A list header the upstream repeats (two ``Link``) comes back with every value, in order,
    when ``headers`` holds them all (a multidict); any other repeated one with its last value."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low == "content-type" and not content_type:
            continue
        if low in _LIST_NAMES:
            out.add(name, value)
        elif low in _RESPONSE_NAMES or low.startswith(_RESPONSE_PREFIXES):
            out[name] = value
    return out


_KEY_REJECTED = (
    b'{"error":{"message":"the upstream rejected the API key configured in runcast",'
    b'"type":"upstream_auth_error","param":null,"code":"upstream_key_rejected"}}'
)


def relayed_body(status: int, body: bytes, key: bytes) -> bytes:
    """An upstream answer's body as the caller gets it.

    With runcast's own upstream key (``key``), a 401 describes that key, not the caller's: its
    body (which may quote the key shortened, as OpenAI's "Incorrect API key provided:
    sk-...abcd" does: masked already, ``scrub.py``, but it is not the caller's key that failed)
    is replaced by runcast's own message.
    """
    if key and status == 401:
        return _KEY_REJECTED
    return body


async def nosniff(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the answer's ``Content-Type`` is final (module docstring)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
