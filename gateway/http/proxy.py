"""Transparent ``/v1/*`` passthrough to the upstream, and the switch to the run relay.

Method, path (percent-encoding kept), query string and body bytes go upstream unchanged, with the
headers listed in ``headers.py``; a path that could leave the upstream's ``/v1`` once normalised
(dot segments, encoded slashes, empty segments: ``body.unsafe_path``) is refused with a 400
before anything is sent; status, those response headers and the body (error bodies
included) come back unchanged, but for runcast's upstream key, masked where upstream bytes enter
(``gateway/upstream/scrub.py``). Retries are left to the caller's own client (``max_retries=0``),
which sees the upstream's ``retry-after`` hints. The upstream has ``answer_timeout`` (600 s, the
openai SDK's default) to begin its answer to a passthrough call, which is not streamed (a
completion, a reasoning model's response), but ``first_byte_timeout`` for a stream passed through
(``GET /v1/responses/{id}?stream=true``, a legacy completion with ``"stream": true``); a 504 for an
upstream that did not answer in time says ``x-should-retry: false`` (``errors.upstream_failure``).
Streamed run-starting calls go to ``creator.serve_streamed_call`` instead, which relays and fans
them out; streamed Responses and Chat Completions calls to
``protocol_creator.serve_protocol_stream``; a retrieve stream of a response runcast holds is
answered from its log (``retrieve.py``).

A 2xx body (a file, audio, JSON, an event stream) is relayed as it comes, chunk by chunk, each
write within ``creator_write_timeout`` (a caller that stops reading is cut off, and the upstream
connection released), whatever its size: chunked, without the upstream's ``Content-Length``, which
masking may falsify. A body that is not an event stream is answered once its first bytes came (a
body that fails before any is a 502/504; one that had all come by then, as a JSON answer's has, is
answered whole with its length); if it breaks off after that, the caller's connection is aborted,
so that its client reports an error rather than a shorter file. An HTTP/1.0 caller, whose body can
only end with its connection (it could not tell a cut one), gets a 2xx body other than an event
stream whole, up to ``max_response_bytes``. An error answer (non-2xx) is read whole too, within the
same bound, so that a 401 is replaced (``headers.py``).

Authentication (``auth.CallerAuth``): when runcast holds the upstream key, the caller's bearer
must be a runcast key and the upstream key is added by the upstream client; otherwise the
caller's bearer token is passed on.
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import unquote

from aiohttp import HttpVersion11, web
from multidict import CIMultiDict

from gateway.errors import UpstreamError
from gateway.upstream import UpstreamResponse
from gateway.upstream.body import unsafe_path
from parsers.errors import RemoteProtocolError

from .creator import serve_streamed_call
from .errors import RequestError, upstream_failure
from .headers import copy_response_headers, forward_request_headers, relayed_body
from .protocol_creator import serve_protocol_stream
from .retrieve import logged_response_call, serve_logged_response
from .routes import asks_for_stream, streamed_call
from .state import CALLERS, RELAYS, SETTINGS, UPSTREAM, UPSTREAM_KEY

__all__ = ["proxy"]

log = logging.getLogger("runcast.proxy")


async def proxy(request: web.Request) -> web.StreamResponse:
    raw_path = request.rel_url.raw_path
    # aiohttp routes the raw path as received: `/v1/../tokens` lands here, not at /tokens.
    reason = unsafe_path(raw_path.removeprefix("/v1"))
    if reason is not None:
        raise RequestError(400, f"invalid path: {reason}", code="invalid_path")
    api_key = request.app[CALLERS].upstream_api_key(request)
    # client_max_size bounds this read (413 above it).
    body = await request.read() if request.body_exists else b""
    headers = forward_request_headers(request.headers)
    logged = logged_response_call(request)
    if logged is not None:
        answer = await serve_logged_response(request, *logged, api_key=api_key)
        if answer is not None:
            return answer
    call = streamed_call(request.method, raw_path, body)
    if call is not None and call.kind in ("response", "chat"):
        return await serve_protocol_stream(request, call, body, api_key=api_key, headers=headers)
    if call is not None:
        return await serve_streamed_call(request, call, body, api_key=api_key, headers=headers)
    # A stream passed through (a retrieve stream of a response runcast does not hold, a legacy
    # completion asked with "stream": true) begins its answer at once: first_byte_timeout.
    streamed = logged is not None or asks_for_stream(body)
    wait = None if streamed else request.app[UPSTREAM].settings.answer_timeout
    try:
        answer = await _passthrough(request, raw_path, body, api_key, headers, wait)
    except (UpstreamError, RemoteProtocolError) as exc:
        raise upstream_failure(exc) from None
    cancelled = _CANCEL.fullmatch(raw_path) if request.method == "POST" else None
    if cancelled is not None and 200 <= answer.status < 300:
        request.app[RELAYS].cancelled(unquote(cancelled[1]))
    return answer


_CANCEL = re.compile(r"/v1/responses/([^/]+)/cancel")
"""A background response's cancel: its stream then ends, and is not to be resumed."""


async def _passthrough(
    request: web.Request,
    raw_path: str,
    body: bytes,
    api_key: str | None,
    headers: dict[str, str],
    first_byte_timeout: float | None = None,
) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    path = raw_path.removeprefix("/v1")
    async with upstream.request(
        request.method,
        path,
        query=request.rel_url.raw_query_string or None,
        body=body or None,
        headers=headers,
        api_key=api_key,
        max_retries=0,
        first_byte_timeout=first_byte_timeout,
    ) as answer:
        out_headers = copy_response_headers(answer.headers)
        if not answer.ok:
            # An error is read whole whatever its type, so that a 401 is replaced (headers.py).
            data = await answer.read(limit=upstream.settings.max_response_bytes)
            body = relayed_body(answer.status, data, request.app[UPSTREAM_KEY])
            return web.Response(status=answer.status, body=body, headers=out_headers)
        events = answer.content_type.startswith("text/event-stream")
        if not events and request.version < HttpVersion11:
            # HTTP/1.0 has no chunks: a body ends where its connection does, so an aborted one
            # would pass for whole. It is read whole (bounded) and sent with its length.
            return await _whole(answer, out_headers, upstream.settings.max_response_bytes)
        if not events:
            # Before the head: a body that fails before its first byte is still a 502/504.
            first = await answer.read_chunk()
            if not first or answer.complete:
                # All of it came at once (a JSON answer, as most are): one answer with its
                # length, one write, not a head and two chunks.
                limit = upstream.settings.max_response_bytes
                return await _whole(answer, out_headers, limit, first=first)
            return await _relay(request, answer, out_headers, raw_path, first=first)
        return await _relay(request, answer, out_headers, raw_path)


async def _whole(
    answer: UpstreamResponse, headers: CIMultiDict[str], limit: int, *, first: bytes = b""
) -> web.Response:
    """A 2xx answer sent whole, with its length: the rest of its body read (up to ``limit``)."""
    body = first + await answer.read(limit=limit)
    return web.Response(status=answer.status, body=body, headers=headers)


async def _relay(
    request: web.Request,
    answer: UpstreamResponse,
    headers: CIMultiDict[str],
    raw_path: str,
    *,
    first: bytes | None = None,
) -> web.StreamResponse:
    """A 2xx answer's body relayed as it comes, each write bounded as a creator's are, so a
    caller that stops reading cannot hold an upstream connection (module docstring). ``first``:
    the first chunk of a body that is not an event stream, read before the head."""
    events = first is None
    response = web.StreamResponse(status=answer.status, headers=headers)
    timeout = request.app[SETTINGS].creator_write_timeout
    kind = "stream" if events else "body"
    try:
        async with asyncio.timeout(timeout):
            await response.prepare(request)
            if first:
                await response.write(first)
        try:
            async for chunk in answer:
                async with asyncio.timeout(timeout):
                    await response.write(chunk)
        except (UpstreamError, RemoteProtocolError) as exc:
            if not events:
                # A clean end would pass a shorter file for the whole one: the caller's client
                # is made to see the cut (HTTP/1.1 chunking left unterminated).
                log.warning(
                    "passthrough body %s broke off: %s; the caller's connection is aborted",
                    raw_path,
                    exc,
                )
                _abort(request)
                return response
            # Headers are out: the caller sees the stream end early, as it would upstream.
            log.warning("passthrough stream %s broke off: %s", raw_path, exc)
        async with asyncio.timeout(timeout):
            await response.write_eof()
    except TimeoutError:
        log.warning("passthrough %s %s: the caller stopped reading; cut off", kind, raw_path)
        _abort(request)
    return response


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
