"""How an answer's body ends on its connection: an HTTP/1.0 answer of unknown length closes it.

An HTTP/1.1 answer of unknown length (a stream) is chunked, and its last chunk ends it. HTTP/1.0
has no chunking: an answer without ``Content-Length`` ends only when the connection closes (RFC
1945 section 7.2.2, RFC 9112 section 6.3 rule 8). aiohttp knows this when it writes the head (it
leaves out ``Connection: keep-alive``) but still keeps the connection for the next request when
the client asked for keep-alive: the client, reading to the close, then takes the next answer for
part of the stream, or waits for the idle timeout to end it. :func:`close_unframed`, an
``on_response_prepare`` hook of the app, closes the connection after every such answer, whatever
handler wrote it (creator streams, proxied streams, retrieve streams, subscribers).
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

__all__ = ["close_unframed"]

_EMPTY_STATUSES = frozenset({204, 304})
"""Answers that never have a body (RFC 9110 sections 15.3.5 and 15.4.5), nor do 1xx ones."""


async def close_unframed(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: an HTTP/1.0 answer whose body only the close can end closes the
    connection after it (module docstring)."""
    if request.version >= HttpVersion11 or response.content_length is not None:
        return
    if request.method == hdrs.METH_HEAD or response.status < 200:
        return
    if response.status not in _EMPTY_STATUSES:
        response.force_close()
