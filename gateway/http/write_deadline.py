"""Whole answers are written within ``--creator-write-timeout``, as streamed ones are.

aiohttp writes the ``web.Response`` a handler returns (a snapshot, a proxied error body of up to
``max_response_bytes``, an error of runcast's) after the handler, with no deadline: a client that
never reads held its body in memory for as long as it kept the connection open (600 unread
snapshots of a 0.9 MB channel: +530 MB). :func:`write_deadline_middleware` writes such a body itself, within the
deadline, and drops the connection past it. Bodies that fit a socket's buffers are left to
aiohttp: they are out of runcast's memory at once.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .errors import Handler
from .state import SETTINGS

__all__ = ["write_deadline_middleware"]

log = logging.getLogger("runcast.http")

_SMALL = 64 * 1024
"""Bodies below this size are written by aiohttp as usual."""


@web.middleware
async def write_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if type(response) is not web.Response or response.prepared:
        return response
    body = response.body
    if not isinstance(body, bytes) or len(body) < _SMALL:
        return response
    seconds = request.app[SETTINGS].creator_write_timeout
    try:
        async with asyncio.timeout(seconds):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        log.warning(
            "%s %s: the client read no answer within %g s; connection dropped",
            request.method,
            request.path,
            seconds,
        )
        if request.transport is not None:
            request.transport.abort()
    return response
