"""The access log (``--access-log``): its line, and the requests aiohttp would leave out of it.

A line is ``remote "METHOD path?query" status seconds``, with the ids the request names in its
context (``logcontext.py``), the values of query parameters named like credentials redacted
(``token``: subscribe tokens travel there because ``EventSource`` cannot set headers;
``password``, ``client_secret``, ``sig``, ``code``...: ``gateway.logs.credential_name``) and
never a header. The probes
(:data:`QUIET_PATHS`) that would otherwise fill it are skipped.

aiohttp writes the line once the handler has returned; a handler cancelled because its client
left (``handler_cancellation``, ``runner.py``) never returns, so every subscriber that went away
mid-stream, and every WebSocket session, which ends with its connection, went unlogged.
:func:`access_middleware` writes their line, through the same logger, with the status of the
response they had started (200 for SSE, 101 for a WebSocket) and their whole duration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway import logs

from .logcontext import request_ids

__all__ = [
    "MAX_TARGET_CHARS",
    "QUIET_PATHS",
    "AccessLogger",
    "access_middleware",
    "note_prepared",
    "prepared",
]

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probed every few seconds by orchestrators and scrapers: never in the access log."""

MAX_TARGET_CHARS = 1024
"""Characters of a request's target (path and query) an access line shows; the rest is counted."""

_PREPARED = web.RequestKey("runcast_prepared", web.StreamResponse)
"""The response a request's handler started (its head sent)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessLogger(AbstractAccessLogger):
    """``remote "METHOD path?query" status seconds`` with credential values redacted."""

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection; below INFO (``--log-level warning``) no line would
        # be written, so none is built and the request's start time is not read.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path in QUIET_PATHS:
            return
        url = request.rel_url
        query = url.query
        if any(logs.credential_name(name) for name in query):
            url = url.with_query(
                [(name, "***" if logs.credential_name(name) else v) for name, v in query.items()]
            )
        # A raw `"` in the query would close the line's quoted field early.
        target = str(url).replace('"', "%22")
        if len(target) > MAX_TARGET_CHARS:
            # One line per request, but not 8 KB of it at a client's will.
            cut = len(target) - MAX_TARGET_CHARS
            target = f"{target[:MAX_TARGET_CHARS]}...({cut} more)"
        with logs.bound(**request_ids(request)):
            self.logger.info(
                '%s "%s %s" %d %.3fs', request.remote, request.method, target, response.status, time
            )


async def note_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: remember the response, for a line if its handler is cancelled."""
    request[_PREPARED] = response


def prepared(request: web.Request) -> web.StreamResponse | None:
    """The response whose head was already sent for ``request``, if any."""
    return request.get(_PREPARED)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = asyncio.get_running_loop().time()
    try:
        return await handler(request)
    except asyncio.CancelledError:
        response = request.get(_PREPARED)
        if response is not None:
            request.protocol.log_access(request, response, started)
        raise
