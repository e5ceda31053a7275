"""Request bodies: which are read at all, how large, how many at once, and within what time.

aiohttp reads a body only when a handler asks for it, and with no deadline: a client that sends a
head announcing a body and then stalls would hold its connection and handler for as long as it
likes. :func:`body_deadline_middleware` reads the body up front under ``--body-timeout`` (408
past it), so every handler then reads it from memory. Nothing is lost by this: runcast's handlers
buffer bodies whole anyway (the proxy forwards them in one piece).

Before a byte of a body is read, it decides whether the body will be, so that no client can make
runcast hold an upload it was never going to accept:

* only ``/v1`` and ``POST /tokens`` take bodies; elsewhere (streams, health, the viewer) a body is
  left unread and aiohttp discards it after the answer;
* a declared ``Content-Length`` over ``--max-body-bytes`` gets its 413 at once;
* a caller those endpoints refuse (no runcast key where one is required) gets its 401/403 at once;
* bodies held at once share ``--body-buffer-bytes`` (``body_budget.BodyBudget``): each takes its declared
  length, or ``--max-body-bytes`` when sent chunked, until its request is answered; past it a new
  body gets a 503 with ``Retry-After``.

Every refusal closes the connection, since the rest of the body is never read. A body that cannot
be decoded (a broken ``Content-Encoding``) is a 400, not an error of runcast's.

A client that asks ``Expect: 100-continue`` waits for the go-ahead before sending its body:
:func:`expect_body` (the expect handler of the routes that take bodies) gives it only after the
size and the caller were checked, so a refused client gets its 413/401/403 instead and never
sends the upload at all. Any other expectation is a 417 (RFC 9110 section 10.1.1).
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.web_protocol import RequestPayloadError

from .errors import Handler, RequestError, error_response
from .state import BODY_BUDGET, CALLERS, SETTINGS

__all__ = ["body_deadline_middleware", "expect_body"]


@web.middleware
async def body_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.body_exists or not _takes_body(request):
        return await handler(request)
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    limit = request.client_max_size
    declared = request.content_length
    budget = request.app[BODY_BUDGET]
    size = limit if declared is None else declared
    if not budget.take(size):
        return _refused(
            error_response(
                503,
                "too many request bodies are being received at once (--body-buffer-bytes); "
                "retry shortly",
                code="server_busy",
                type="server_error",
                headers={"Retry-After": "1"},
            )
        )
    try:
        seconds = request.app[SETTINGS].body_timeout
        try:
            async with asyncio.timeout(seconds):
                body = await request.read()
        except TimeoutError:
            return _refused(
                error_response(
                    408,
                    f"the request body did not arrive within {seconds:g} s (--body-timeout)",
                    code="body_timeout",
                )
            )
        except RequestPayloadError:
            response = error_response(
                400,
                "the request body could not be read: its Content-Encoding does not match its "
                "bytes, or its chunked framing is broken",
                code="malformed_body",
            )
            # Written whole, then the connection closed: aiohttp would otherwise read the rest of
            # the body to discard it, meet the same error again and log it as its own failure.
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()
            return response
        # A chunked body held the whole limit while it came; from here it holds its own size.
        budget.give(size - len(body))
        size = len(body)
        return await handler(request)
    finally:
        budget.give(size)


async def expect_body(request: web.Request) -> web.StreamResponse | None:
    """The routes' ``expect_handler``: ``100 Continue`` once the body is one runcast would read,
    else the refusal (aiohttp's default answers 100 before any check)."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        # Returned, not raised: aiohttp runs expect handlers outside the middlewares, so an
        # HTTPException here would reach the client as aiohttp's text/plain answer.
        return _refused(
            error_response(
                417,
                "unsupported Expect header: the only expectation runcast meets is 100-continue",
                code="expectation_failed",
            )
        )
    if _takes_body(request):
        refusal = _refusal(request)
        if refusal is not None:
            return refusal
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the response's own bytes start after it
    return None


def _takes_body(request: web.Request) -> bool:
    path = request.path
    return path.startswith("/v1/") or (path == "/tokens" and request.method == "POST")


def _refusal(request: web.Request) -> web.Response | None:
    """The answer to a body that is not to be read: too large, or from a caller the endpoint
    refuses (its own 401/403); None when the body may come."""
    limit = request.client_max_size
    declared = request.content_length
    if declared is not None and declared > limit:
        return _refused(
            error_response(
                413,
                f"request body too large: {declared} bytes declared, the limit is {limit} "
                "(--max-body-bytes)",
                code="body_too_large",
            )
        )
    callers = request.app[CALLERS]
    try:
        if request.path == "/tokens":
            callers.require_key(request)
        else:
            callers.upstream_api_key(request)
    except RequestError as exc:
        return _refused(error_response(exc.status, exc.message, code=exc.code, type=exc.type))
    return None


def _refused(response: web.Response) -> web.Response:
    # What is left of the body is not read: the connection cannot carry another request.
    response.force_close()
    return response
