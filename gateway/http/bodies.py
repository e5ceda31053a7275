"""Request bodies arrive whole within ``--body-timeout``, or the request gets a 408.

aiohttp reads a body only when a handler asks for it, and with no deadline: a client that sends a
head announcing a body and then stalls would hold its connection and handler for as long as it
likes. :func:`body_deadline_middleware` reads the body up front under the deadline (up to
``client_max_size``, 413 past it, exactly as ``request.read()`` does), so every handler then
reads it from memory. Nothing is lost by this: runcast's handlers buffer bodies whole anyway (the
proxy forwards them in one piece). Streams are untouched: they have no request body.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .errors import Handler, error_response
from .state import SETTINGS

__all__ = ["body_deadline_middleware"]


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.body_exists:
        seconds = request.app[SETTINGS].body_timeout
        try:
            async with asyncio.timeout(seconds):
                await request.read()
        except TimeoutError:
            response = error_response(
                408,
                f"the request body did not arrive within {seconds:g} s (--body-timeout)",
                code="body_timeout",
            )
            # The rest of the body may still come; the connection cannot be reused.
            response.force_close()
            return response
    return await handler(request)
