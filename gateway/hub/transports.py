"""aiohttp handlers for subscribers: an SSE response or a WebSocket fed by a hub channel.

The HTTP layer parses the route, authorises, and calls :func:`serve_subscriber` (or
:func:`serve_sse` / :func:`serve_websocket`). The subscription is made before any response byte is
sent, so limits and unknown channels surface as :class:`~gateway.errors.SubscriberError` the caller
turns into a JSON 4xx; events published while the response starts wait in the sink (bounded).

Once the response has started, the hub writes frames directly to the connection's transport:

- SSE: aiohttp's ``StreamResponse`` sends its headers at ``prepare()`` (``send_headers()`` is called
  again to be sure) and then writes nothing until ``write_eof()``. HTTP/1.1 responses are made
  chunked explicitly and every hub batch is one complete chunk, so ``write_eof()`` appends the
  terminating ``0\\r\\n\\r\\n`` to a well-formed body. HTTP/1.0 responses are unchunked and end with
  the connection. Response compression must stay off (it would expect to see the body).
- WebSocket: server frames are unmasked and written whole (RFC 6455 section 5.2), as aiohttp's own
  writer does for uncompressed frames, so our frames and aiohttp's pongs and close frame never
  interleave inside a frame. Compression is not negotiated. A client's frame that is not masked
  closes the connection with 1002 (``wsmask.py``). The client's frames are read by one
  task per connection, which answers its pings, notices its close, and tells the sink of every
  frame, so that a peer that stops answering the hub's pings is cut off (``sinks.py``).

A subscription to a channel that has ended, with nothing left to send (a browser reconnecting
with ``Last-Event-ID`` at the channel's last seq after ``done``), is answered 204 on SSE: the
``EventSource`` standard's signal to stop reconnecting (WHATWG HTML, server-sent events,
"fail the connection"); a WebSocket is closed with 1000 at once, after any missed events.

Ending. A subscriber cut off (``runcast.lagged``) or told of the shutdown has the notice queued
behind the bytes it has not read yet. A reader that stopped reading has filled the kernel's send
buffer too, so they cannot leave: after ``close_timeout`` the connection is aborted and what was
still queued here (the notice with it) is dropped; the peer gets what the kernel held, then the
end of the connection in the middle of the body, and resumes with ``Last-Event-ID``.

Heartbeats (SSE ``: ping`` comments, WebSocket pings) come from the broker's housekeeping task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from aiohttp.http_writer import HttpVersion11

from gateway.errors import SubscriberError
from gateway.hub.broker import Broker, EndReason, FrameFormat, Position, Subscription
from gateway.hub.sinks import TransportSink
from gateway.hub.wsmask import StrictWebSocketResponse

__all__ = [
    "SSE_HEADERS",
    "is_websocket_request",
    "serve_sse",
    "serve_subscriber",
    "serve_websocket",
    "since_from_request",
]

SSE_HEADERS: Final[Mapping[str, str]] = {
    hdrs.CONTENT_TYPE: "text/event-stream",
    hdrs.CACHE_CONTROL: "no-cache",
    # nginx buffers proxied responses unless told otherwise.
    "X-Accel-Buffering": "no",
}

WS_MAX_INCOMING = 4096
"""Subscribers have nothing to say beyond control frames; anything bigger closes with 1009."""
WS_FRAME_RATE = 20.0
WS_FRAME_BURST = 60
"""Frames a subscriber may send per second, and at once: it has nothing to say but pongs (one
per heartbeat) and its own pings; past them it is closed with 1008 (policy violation)."""
_WS_CLOSE_WRITE = 0.05
"""Seconds given to writing the close frame of a peer cut off for its frames."""

_WS_CLOSE_CODES: Final[Mapping[EndReason, int]] = {
    "ended": WSCloseCode.OK,
    "detached": WSCloseCode.OK,
    "lagged": WSCloseCode.TRY_AGAIN_LATER,
    # RFC 6455 section 7.4.1 leaves 1012 to IANA: "service restart", reconnect later.
    "shutdown": WSCloseCode.SERVICE_RESTART,
    "disconnected": WSCloseCode.OK,
}

_WS_RESERVED_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})
"""RFC 6455 section 7.4.1: codes that never travel in a close frame. aiohttp's reader refuses
the other invalid ones below 3000 and none at or above 5000, where no code is defined."""

_WS_GONE: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
"""What ``receive`` returns once the peer's side is over."""


def is_websocket_request(request: web.BaseRequest) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").strip().lower() == "websocket"


def since_from_request(request: web.BaseRequest) -> Position | None:
    """The resume position: ``Last-Event-ID`` or else ``?since=``.

    The header wins: an ``EventSource`` opened on ``?since=0`` reconnects with the same URL, and
    the header says how far it really got. Accepts ``<epoch>-<seq>`` (the SSE ids runcast sends)
    and a bare ``<seq>`` (``0``: from the start; any other number names no epoch, so it gets
    ``runcast.history_lost`` and the snapshot). Raises ``SubscriberError(400, "invalid_since")``
    otherwise.
    """
    value = request.headers.get("Last-Event-ID", "").strip()
    if not value:
        value = request.query.get("since", "").strip()
    if not value:
        return None
    try:
        return Position.parse(value)
    except ValueError:
        raise SubscriberError(
            400, "invalid_since", f"invalid resume position: {value[:40]!r}"
        ) from None


async def serve_subscriber(
    request: web.BaseRequest,
    broker: Broker,
    channel: str,
    *,
    since: Position | None = None,
    snapshot: bool = False,
    create: bool = False,
    owner: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """WebSocket when the request is an upgrade, else SSE."""
    if is_websocket_request(request):
        return await serve_websocket(
            request,
            broker,
            channel,
            since=since,
            snapshot=snapshot,
            create=create,
            owner=owner,
            headers=headers,
        )
    return await serve_sse(
        request,
        broker,
        channel,
        since=since,
        snapshot=snapshot,
        create=create,
        owner=owner,
        headers=headers,
    )


async def serve_sse(
    request: web.BaseRequest,
    broker: Broker,
    channel: str,
    *,
    since: Position | None = None,
    snapshot: bool = False,
    create: bool = False,
    owner: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Stream ``channel`` as ``text/event-stream`` until it ends, lags, or the client leaves."""
    if request.method == hdrs.METH_HEAD:
        # RFC 9110 section 9.3.2: the head a GET would get and no body. The hub writes frames
        # past aiohttp (which alone knows to drop a HEAD's body), so no subscription is made.
        if not create and await broker.held(channel) is None:
            raise SubscriberError(404, "unknown_channel", f"no such stream: {channel}")
        return web.Response(headers={**SSE_HEADERS, **(headers or {})})
    chunked = request.version >= HttpVersion11
    fmt = FrameFormat.SSE_CHUNKED if chunked else FrameFormat.SSE
    settings = broker.settings
    sink = TransportSink(fmt, buffer_limit=settings.subscriber_buffer_bytes)
    subscription = await broker.subscribe(
        channel, sink, since=since, snapshot=snapshot, create=create, owner=owner
    )
    if sink.end_reason == "ended" and not sink.buffered:
        # Otherwise the EventSource would come back every few seconds until retention ends.
        subscription.close()
        return web.Response(status=204, headers={hdrs.CACHE_CONTROL: "no-cache", **(headers or {})})
    try:
        response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.force_close()  # the body ends with the connection, whatever was asked
        writer = await response.prepare(request)
        flush_headers(writer, chunked=chunked)
        transport = request.transport
        if transport is None:
            sink.end("disconnected")
        else:
            sink.bind(transport)
        reason = await sink.wait()
    finally:
        _unsubscribe(request, sink, subscription)
    if reason != "disconnected" and (transport := request.transport) is not None:
        if reason != "ended":
            # A lagging or departing peer's connection is not worth keeping alive.
            response.force_close()
        try:
            async with asyncio.timeout(settings.close_timeout):
                await response.write_eof()
        except (TimeoutError, ConnectionError):
            transport.abort()
    return response


async def serve_websocket(
    request: web.BaseRequest,
    broker: Broker,
    channel: str,
    *,
    since: Position | None = None,
    snapshot: bool = False,
    create: bool = False,
    owner: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.WebSocketResponse:
    """Stream ``channel`` as WebSocket text frames ``{"seq", "event", "data"}``.

    The socket is closed with 1000 when the channel ends, 1013 after ``runcast.lagged`` and 1012
    (service restart) after ``runcast.shutdown`` when the hub shuts down.
    """
    settings = broker.settings
    # A client's frame that is not masked closes it with 1002 (wsmask.py), as aiohttp's reader
    # does for its other protocol errors.
    ws: web.WebSocketResponse = StrictWebSocketResponse(
        compress=False,
        autoping=False,  # the reader answers pings and sees pongs (_read_until_closed)
        autoclose=False,  # and answers a close frame, with 1002 for a code no peer may send
        heartbeat=None,
        max_msg_size=WS_MAX_INCOMING,
        timeout=settings.close_timeout,
    )
    if headers:
        ws.headers.update(headers)
    # RFC 6455 §4.1-4.2: a GET in HTTP/1.1, version 13 (aiohttp also takes the drafts' 7 and 8,
    # a HEAD, and HTTP/1.0).
    if request.method != "GET" or request.version != HttpVersion11:
        raise SubscriberError(400, "invalid_websocket", "a WebSocket upgrade is a GET in HTTP/1.1")
    version = request.headers.get(hdrs.SEC_WEBSOCKET_VERSION)
    if version is not None and version.strip() != "13":
        raise SubscriberError(
            426,
            "unsupported_websocket_version",
            "WebSocket version 13 only",
            headers={hdrs.SEC_WEBSOCKET_VERSION: "13"},
        )
    try:
        ready = ws.can_prepare(request).ok
    except ValueError:  # aiohttp's base64 check of a non-ASCII Sec-WebSocket-Key raises it
        ready = False
    if not ready:
        raise SubscriberError(400, "invalid_websocket", "malformed WebSocket upgrade request")
    sink = TransportSink(FrameFormat.WEBSOCKET, buffer_limit=settings.subscriber_buffer_bytes)
    subscription = await broker.subscribe(
        channel, sink, since=since, snapshot=snapshot, create=create, owner=owner
    )
    reader: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            sink.end("disconnected")
        else:
            sink.bind(transport)
            reader = asyncio.create_task(_read_until_closed(ws, sink))
        reason = await sink.wait()
        subscription.close()
        if not ws.closed and transport is not None:
            try:
                async with asyncio.timeout(settings.close_timeout):
                    await ws.close(code=_WS_CLOSE_CODES[reason])
            except TimeoutError:
                transport.abort()
    finally:
        _unsubscribe(request, sink, subscription)
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
    return ws


def _unsubscribe(request: web.BaseRequest, sink: TransportSink, subscription: Subscription) -> None:
    # A handler cancelled because its client left (aiohttp's handler_cancellation) ends as the
    # disconnect it is, so the hub's statistics count it like one found by a write or the sweep.
    if sink.end_reason is None:
        transport = request.transport
        if transport is None or transport.is_closing():
            sink.end("disconnected")
    subscription.close()


async def _read_until_closed(ws: web.WebSocketResponse, sink: TransportSink) -> None:
    # Every frame from the peer shows it alive (its pongs answer the hub's pings: sinks.py); its
    # pings are answered here and its close by aiohttp; other messages are ignored. Frames come
    # within a budget (a token bucket): each costs runcast some 30 times what it costs its sender.
    clock = asyncio.get_running_loop().time
    allowance, then = float(WS_FRAME_BURST), clock()
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.CLOSE:
            # The peer went first: answer 1000, or 1002 for a code no peer may send. Its close
            # frame is queued behind what it has not read yet, and the connection then closed.
            code = msg.data
            invalid = code in _WS_RESERVED_CLOSE_CODES or code >= 5000
            await ws.close(
                code=WSCloseCode.PROTOCOL_ERROR if invalid else WSCloseCode.OK, drain=False
            )
            break
        if msg.type in _WS_GONE:
            break
        now = clock()
        allowance = min(WS_FRAME_BURST, allowance + (now - then) * WS_FRAME_RATE) - 1
        then = now
        if allowance < 0:
            # The close frame goes out, then the connection (its reply would be read among
            # the flood's frames for up to close_timeout).
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(_WS_CLOSE_WRITE):
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many frames")
            if sink.transport is not None:
                sink.transport.abort()
            break
        sink.answered()
        if msg.type is WSMsgType.PING:
            with contextlib.suppress(ConnectionError):  # the peer left meanwhile: next receive
                await ws.pong(msg.data)
    sink.end("disconnected")


def flush_headers(writer: object, *, chunked: bool) -> None:
    """Before bytes are written past aiohttp on a prepared response: make sure its head went
    out (a writer that buffered it would put it after them) and that the transfer-coding is the
    one the bytes are framed for."""
    with contextlib.suppress(AttributeError):
        writer.send_headers()  # type: ignore[attr-defined]
    if getattr(writer, "chunked", chunked) != chunked:
        raise RuntimeError(
            "aiohttp chose a transfer-coding other than the one frames were made for"
        )
