"""The creator's side of a streamed run-starting call: start a relay, stream its feed back.

The response head is sent once the relay knows the run id (the first run event), so it carries
``runcast-run-id``, ``runcast-thread-id`` and the subscribe tokens ``runcast-subscribe-token``
(run channel) and ``runcast-thread-token`` (thread channel) that the creator hands to its
frontends. An upstream failure before the first event is answered as a normal HTTP error: the
upstream's own status and JSON body for an HTTP error (e.g. 400 "already has an active run"),
502/504 for connection failures and timeouts; 503 ``shutting_down`` when the gateway is stopping.

The body is the upstream's events (same names and data bytes) with ``id: <epoch>-<seq>`` lines. A
creator that reads too slowly to keep up (more than ``creator_buffer_bytes`` waiting) is cut off
with a final ``runcast.lagged`` event (its ``error`` member makes the openai SDK raise) naming the
position to resume from on ``GET /streams/runs/{run_id}?since=<epoch>-<seq>``; one whose socket accepts nothing
for ``creator_write_timeout`` is disconnected. Either way the run itself is unaffected.

Drain (``drain.py``): while the gateway drains, new runs get 503 ``shutting_down`` (a submission
for a running run is still relayed, so the run can finish); a run still going when the gateway
stops ends its creator's response with ``runcast.shutdown``, whose ``error`` member makes the
openai SDK raise instead of ending the stream as if the run were over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import msgspec
import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.hub import LAGGED_EVENT, SHUTDOWN_EVENT, START, Position, lagged_payload
from gateway.hub.transports import flush_headers
from gateway.runs.channels import run_channel, thread_channel
from gateway.runs.feed import CreatorFeed
from gateway.runs.relay import Opener, RelayStart
from parsers.errors import RemoteProtocolError
from parsers.sse import encode_sse

from .drain import shutting_down
from .errors import RequestError, upstream_failure
from .headers import copy_response_headers, relayed_body
from .routes import StreamedCall
from .state import DRAIN, RELAYS, SETTINGS, TOKENS, UPSTREAM, UPSTREAM_KEY
from .streams import advertised

__all__ = ["http_error_response", "serve_streamed_call", "write_feed"]


class _ToolOutputsBody(msgspec.Struct, kw_only=True):
    tool_outputs: list[dict[str, object]]
    stream: bool | None = None


_tool_outputs_decoder = msgspec.json.Decoder(_ToolOutputsBody)


def _opener(
    request: web.Request,
    call: StreamedCall,
    body: bytes,
    api_key: str | None,
    headers: Mapping[str, str],
) -> Opener:
    upstream = request.app[UPSTREAM]
    query = request.rel_url.raw_query_string or None
    # The caller's request is sent once: its own client (the SDK's max_retries) decides whether a
    # 429 or a failed connection is tried again, as through the transparent proxy.
    if call.kind == "run":
        assert call.thread_id is not None
        thread_id = call.thread_id
        return lambda: upstream.stream_run(
            thread_id, body, query=query, api_key=api_key, headers=headers, max_retries=0
        )
    if call.kind == "thread_and_run":
        return lambda: upstream.stream_thread_and_run(
            body, query=query, api_key=api_key, headers=headers, max_retries=0
        )
    assert call.thread_id is not None and call.run_id is not None
    try:
        outputs = _tool_outputs_decoder.decode(body).tool_outputs
        # The relay sends them re-encoded by orjson, which has no integers past 64 bits.
        orjson.dumps(outputs)
    except (msgspec.DecodeError, orjson.JSONEncodeError) as exc:
        raise RequestError(
            400,
            f"invalid submit_tool_outputs body: {exc}",
            code="invalid_body",
            param="tool_outputs",
        ) from None
    thread_id, run_id = call.thread_id, call.run_id
    return lambda: upstream.stream_submit_tool_outputs(
        thread_id, run_id, outputs, api_key=api_key, headers=headers, max_retries=0
    )


async def serve_streamed_call(
    request: web.Request,
    call: StreamedCall,
    body: bytes,
    *,
    api_key: str | None,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    opener = _opener(request, call, body, api_key, headers)
    relays = app[RELAYS]
    if relays.closed:
        raise shutting_down()
    if call.kind != "submit":
        app[DRAIN].check()
    feed = CreatorFeed(settings.creator_buffer_bytes)
    try:
        try:
            # A creator that leaves stops waiting; the relay runs on, owned by the registry.
            start = await relays.start(
                opener,
                feed=feed,
                api_key=api_key,
                headers=headers,
                run_id=call.run_id,
                thread_id=call.thread_id,
            )
        except UpstreamHTTPError as exc:
            return http_error_response(request, exc)
        except (UpstreamError, RemoteProtocolError) as exc:
            if relays.closed:
                # The relay was stopped by the gateway's shutdown, not by the upstream.
                raise shutting_down() from None
            raise upstream_failure(exc) from None
        response = web.StreamResponse(headers=_head(request, start))
        writer = await response.prepare(request)
        await write_feed(
            request,
            response,
            writer,
            feed,
            lag_notice=lambda: _lag_notice(feed, start),
            shutdown_notice=lambda: _shutdown_notice(feed, start),
        )
        return response
    finally:
        feed.detach()


def http_error_response(request: web.Request, exc: UpstreamHTTPError) -> web.Response:
    """The upstream's own error answer, relayed (status, JSON body, useful headers)."""
    if isinstance(exc.body, bytes):
        body, content_type = exc.body, exc.headers.get("content-type", "application/json")
    else:
        body, content_type = orjson.dumps(exc.body), "application/json"
    headers = copy_response_headers(exc.headers, content_type=False)
    return web.Response(
        status=exc.status,
        body=relayed_body(exc.status, body, request.app[UPSTREAM_KEY]),
        content_type=content_type.split(";")[0].strip(),
        headers=headers,
    )


def _head(request: web.Request, start: RelayStart) -> CIMultiDict[str]:
    # The upstream's request id, rate-limit and processing headers, as the proxy returns them.
    head = copy_response_headers(start.upstream_headers, content_type=False)
    head["Content-Type"] = "text/event-stream; charset=utf-8"
    head["Cache-Control"] = "no-cache"
    head["X-Accel-Buffering"] = "no"
    tokens = request.app[TOKENS]
    # An id no subscriber URL can name (from an upstream that does not check its ids) is not
    # advertised: it could not be subscribed to, and may not even be a valid header value.
    if start.run_id is not None and advertised("run", start.run_id):
        head["runcast-run-id"] = start.run_id
        head["runcast-subscribe-token"] = tokens.mint(run_channel(start.run_id)).token
    if start.thread_id is not None and advertised("thread", start.thread_id):
        head["runcast-thread-id"] = start.thread_id
        head["runcast-thread-token"] = tokens.mint(thread_channel(start.thread_id)).token
    return head


async def write_feed(
    request: web.Request,
    response: web.StreamResponse,
    writer: AbstractStreamWriter | None,
    feed: CreatorFeed,
    *,
    lag_notice: Callable[[], bytes],
    shutdown_notice: Callable[[], bytes],
) -> None:
    """Write ``feed`` to the creator's prepared ``response`` (``writer``: what ``prepare()``
    returned) until it ends, then its notice if it was cut off (lagged) or stopped (shutdown);
    every write here bounded by ``creator_write_timeout``. A chunked response binds the feed to
    its socket first, so the relay's pushes go out at once (``gateway.runs.feed``)."""
    timeout = request.app[SETTINGS].creator_write_timeout
    transport = request.transport
    if transport is not None and writer is not None and getattr(writer, "chunked", False):
        flush_headers(writer, chunked=True)
        feed.bind(transport)
    try:
        while (chunk := await feed.read()) is not None:
            async with asyncio.timeout(timeout):
                await response.write(chunk)
        if feed.lagged:
            async with asyncio.timeout(timeout):
                await response.write(lag_notice())
        elif feed.stopped:
            async with asyncio.timeout(timeout):
                await response.write(shutdown_notice())
        # write_eof() waits for the socket to drain (aiohttp), which a peer that stopped
        # reading never lets happen; the last bytes are bounded like every other write.
        async with asyncio.timeout(timeout):
            await response.write_eof()
    except (TimeoutError, ConnectionError):
        if request.transport is not None:
            request.transport.abort()


def _lag_notice(feed: CreatorFeed, start: RelayStart) -> bytes:
    position, where = _resume_at(feed, start)
    return encode_sse(lagged_payload(position.epoch, position.seq, where), event=LAGGED_EVENT)


def _shutdown_notice(feed: CreatorFeed, start: RelayStart) -> bytes:
    position, _ = _resume_at(feed, start)
    run = (
        f"GET /v1/threads/{start.thread_id}/runs/{start.run_id}"
        if start.run_id and start.thread_id
        else "the run"
    )
    data = orjson.dumps(
        {
            "error": {
                "message": "runcast is shutting down before the end of this run, which goes on "
                f"upstream; retry, or read its state with {run}",
                "type": "runcast_shutdown",
                "param": None,
                "code": "shutting_down",
            },
            "epoch": position.epoch,
            "seq": position.seq,
            "run_id": start.run_id,
            "thread_id": start.thread_id,
        }
    )
    return encode_sse(data, event=SHUTDOWN_EVENT)


def _resume_at(feed: CreatorFeed, start: RelayStart) -> tuple[Position, str]:
    position = Position.parse(feed.last_id) if feed.last_id is not None else START
    where = (
        f"GET /streams/runs/{start.run_id}?since={position}" if start.run_id else "the run channel"
    )
    return position, where
