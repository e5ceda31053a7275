"""The creator's side of a streamed ``POST /v1/responses`` or ``POST /v1/chat/completions``.

The request goes upstream unchanged (no retry: a second POST would create and bill a second
response) and its stream is pumped by a :class:`~gateway.runs.protocols.StreamRelay` that the
relay registry owns. The response head is sent once the stream's id is known (its first event),
with the ids and subscribe tokens the creator hands to its frontends:

- ``runcast-response-id`` (Responses) or ``runcast-completion-id`` (Chat), and
  ``runcast-subscribe-token`` for ``GET /streams/responses/{id}`` or ``/streams/chat/{id}``;
- ``runcast-conversation-id`` and ``runcast-conversation-token`` when a Responses request names a
  ``conversation`` (``GET /streams/conversations/{id}``);
- ``runcast-channel`` and ``runcast-channel-token`` when the request carries the header
  ``Runcast-Channel: <name>`` (``GET /streams/channels/{name}``).

With tool automation configured, a stream that ends with function calls that all have handlers
is continued by runcast (``gateway/runs/protocols/toolchain.py``): the follow-ups go on in the
same channels and in this response, which then ends with the last stream of the chain; with
the request header ``Runcast-Creator-Stream: first`` it carries the first stream only (for
``client.responses.stream()``, whose helper holds one response per stream), and the follow-ups
go on in the channels its head names. A chat creator never gets ``runcast.*`` tool events nor an
intermediate ``[DONE]``; a Responses creator gets the tool events only with
``emit_tool_events_to_creator``. ``chat.completions.stream()`` takes the chain (its chunks
change ``id`` at each follow-up): its final completion has the final answer's content and
``finish_reason``, with the first completion's ``id`` and the earlier rounds' ``tool_calls``
still in its message (the helper merges chunks by choice index); the header works there too.

A Responses stream cut before its end that cannot be resumed is polled to its end when the
request did not say ``store: false`` (``gateway/runs/protocols/responses_recovery.py``). In
Redis mode the relay holds the stream under a lease, and another node takes it over if this one
dies (``gateway/runs/protocols/relay.py``, Takeover).

An upstream failure before the first event is answered as for runs (the upstream's own HTTP
error, 502/504, 503 ``shutting_down``). The body is the upstream's events, same bytes, with
``id: <seq in the stream's channel>`` lines; a creator that falls behind is cut off with
``runcast.lagged`` naming where to resume, and one still reading at shutdown gets
``runcast.shutdown``, as for runs (``creator.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Mapping

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.hub import LAGGED_EVENT, SHUTDOWN_EVENT, START, Position, lagged_payload
from gateway.metrics import NO_METER
from gateway.runs.channels import conversation_channel, named_channel
from gateway.runs.feed import CreatorFeed
from gateway.runs.protocols import (
    CHAT,
    CREATOR_STREAM_HEADER,
    RESPONSES,
    ResponseRecovery,
    StreamRelay,
    StreamStart,
    ToolChain,
    conversation_of,
    stored,
    tool_round,
)
from gateway.upstream import UpstreamClient, UpstreamResponse
from parsers.errors import RemoteProtocolError
from parsers.sse import encode_sse

from .creator import http_error_response, write_feed
from .drain import shutting_down
from .errors import RequestError, upstream_failure
from .exposition import METRICS
from .headers import copy_response_headers
from .routes import StreamedCall
from .state import BROKER, DRAIN, RELAYS, SETTINGS, TOKENS, TOOL_AUTOMATION, UPSTREAM
from .streams import advertised, routable

__all__ = ["CHANNEL_HEADER", "serve_protocol_stream"]

CHANNEL_HEADER = "Runcast-Channel"
_STREAMS = {"response": "responses", "chat": "chat"}
"""The subscriber path segment of each stream kind (``/streams/<segment>/<id>``)."""


async def serve_protocol_stream(
    request: web.Request,
    call: StreamedCall,
    body: bytes,
    *,
    api_key: str | None,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    app = request.app
    spec = RESPONSES if call.kind == "response" else CHAT
    channels: dict[str, str] = {}
    conversation = conversation_of(body) if call.kind == "response" else None
    if conversation is not None:
        if not routable(conversation):
            raise RequestError(
                400,
                f"invalid conversation id: {conversation[:140]!r} (runcast routes ids of 1-128"
                " letters, digits, '_', '-' and '.')",
                code="invalid_channel",
                param="conversation",
            )
        channels["conversation"] = conversation
    name = request.headers.get(CHANNEL_HEADER)
    if name is not None:
        if not routable(name):
            raise RequestError(
                400,
                f"invalid {CHANNEL_HEADER} header: {name[:140]!r} (a channel name is 1-128"
                " letters, digits, '_', '-' and '.')",
                code="invalid_channel",
                param=CHANNEL_HEADER,
            )
        channels["channel"] = name
    relays = app[RELAYS]
    if relays.closed:
        raise shutting_down()
    app[DRAIN].check()
    upstream = app[UPSTREAM]
    # Sent once: the caller's own client decides on retries (as in ``creator.py``).
    opener = functools.partial(
        upstream.open_stream,
        "POST",
        request.rel_url.raw_path.removeprefix("/v1"),
        body=body,
        query=request.rel_url.raw_query_string or None,
        api_key=api_key,
        headers=headers,
        max_retries=0,
    )
    # A resumption is tried once a time: its own budget (settling.py) counts the attempts.
    reopen = functools.partial(
        upstream.open_stream, "GET", api_key=api_key, headers=headers, max_retries=0
    )
    key = upstream.settings.api_key
    chain = _tool_chain(request, upstream, spec.kind, body, api_key=api_key, headers=headers)
    metrics = app.get(METRICS)
    feed = CreatorFeed(app[SETTINGS].creator_buffer_bytes)
    relay = StreamRelay(
        spec,
        opener,
        app[BROKER],
        feed=feed,
        channels=[
            *([conversation_channel(conversation)] if conversation is not None else []),
            *([named_channel(name)] if name is not None else []),
        ],
        reopen=lambda path, query: reopen(path, query=query),
        max_event_bytes=upstream.settings.max_event_bytes,
        max_stream_bytes=upstream.settings.max_stream_bytes,
        meter=metrics.meter(_STREAMS[spec.kind]) if metrics is not None else NO_METER,
        scrub=(lambda text: text.replace(key, "***")) if key else str,
        chain=chain,
        reconcile=ResponseRecovery(upstream, within=app[SETTINGS].recovery_timeout, api_key=api_key)
        if call.kind == "response" and stored(body)
        else None,
        ownership=relays.stream_ownership(
            api_key=api_key, stored=call.kind == "response" and stored(body)
        ),
    )
    relays.spawn(relay, name=f"runcast-{spec.kind}-relay")
    try:
        try:
            # A creator that leaves while waiting leaves the relay running (registry-owned).
            start = await relay.ready.wait()
        except UpstreamHTTPError as exc:
            return http_error_response(request, exc)
        except (UpstreamError, RemoteProtocolError) as exc:
            if relays.closed:
                raise shutting_down() from None
            raise upstream_failure(exc) from None
        if conversation is not None and start.object_id is not None and start.channel is not None:
            # Only a response with a channel of its own: one whose id the upstream reused is
            # another caller's, and its conversation's token must not open it.
            await relays.note_conversation(start.object_id, conversation)
        response = web.StreamResponse(headers=_head(request, spec.kind, start, channels))
        writer = await response.prepare(request)
        await write_feed(
            request,
            response,
            writer,
            feed,
            lag_notice=lambda: _lag_notice(spec.kind, start, feed),
            shutdown_notice=lambda: _notice(
                SHUTDOWN_EVENT,
                feed,
                "runcast_shutdown",
                "shutting_down",
                "runcast is shutting down before the end of this stream; what follows is lost "
                f"to this response ({_resume_hint(spec.kind, start, _position(feed))} on another "
                "node)",
            ),
        )
        return response
    finally:
        feed.detach()


def _tool_chain(
    request: web.Request,
    upstream: UpstreamClient,
    kind: str,
    body: bytes,
    *,
    api_key: str | None,
    headers: Mapping[str, str],
) -> ToolChain | None:
    automation = request.app.get(TOOL_AUTOMATION)
    if automation is None:
        return None
    round_ = tool_round(kind, body)
    if round_ is None:
        return None
    # A follow-up is a new request: the creator's idempotency key named the first one.
    follow_headers = {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}
    path = request.rel_url.raw_path.removeprefix("/v1")
    query = request.rel_url.raw_query_string or None

    def open_follow_up(follow_up: bytes) -> Awaitable[UpstreamResponse]:
        return upstream.open_stream(
            "POST", path, body=follow_up, query=query, api_key=api_key, headers=follow_headers
        )

    return ToolChain(
        automation,
        round_,
        open_follow_up,
        events_to_creator=kind == "response" and automation.settings.emit_tool_events_to_creator,
        creator_first=request.headers.get(CREATOR_STREAM_HEADER, "").strip().lower() == "first",
    )


def _head(
    request: web.Request, kind: str, start: StreamStart, channels: Mapping[str, str]
) -> CIMultiDict[str]:
    # The upstream's request id, rate-limit and processing headers, as the proxy returns them.
    head = copy_response_headers(start.upstream_headers, content_type=False)
    head["Content-Type"] = "text/event-stream; charset=utf-8"
    head["Cache-Control"] = "no-cache"
    head["X-Accel-Buffering"] = "no"
    tokens = request.app[TOKENS]
    # An upstream id no subscriber URL can name is not advertised (see creator._head).
    # Nor one whose channel is another stream's (the upstream reused the id: relay._claim).
    if (
        start.object_id is not None
        and start.channel is not None
        and advertised(kind, start.object_id)
    ):
        head["runcast-response-id" if kind == "response" else "runcast-completion-id"] = (
            start.object_id
        )
        head["runcast-subscribe-token"] = tokens.mint(start.channel).token
    conversation = channels.get("conversation")
    if conversation is not None:
        head["runcast-conversation-id"] = conversation
        head["runcast-conversation-token"] = tokens.mint(conversation_channel(conversation)).token
    name = channels.get("channel")
    if name is not None:
        head["runcast-channel"] = name
        head["runcast-channel-token"] = tokens.mint(named_channel(name)).token
    return head


def _position(feed: CreatorFeed) -> Position:
    """The last position the creator was handed (START: none, so a resume replays it all)."""
    return Position.parse(feed.last_id) if feed.last_id is not None else START


def _resume_hint(kind: str, start: StreamStart, position: Position) -> str:
    if start.object_id is None or start.channel is None:
        return "its channel"
    return f"GET /streams/{_STREAMS[kind]}/{start.object_id}?since={position}"


def _lag_notice(kind: str, start: StreamStart, feed: CreatorFeed) -> bytes:
    position = _position(feed)
    where = _resume_hint(kind, start, position)
    return encode_sse(lagged_payload(position.epoch, position.seq, where), event=LAGGED_EVENT)


def _notice(event: str, feed: CreatorFeed, type_: str, code: str, message: str) -> bytes:
    data = orjson.dumps(
        {
            "error": {"message": message, "type": type_, "param": None, "code": code},
            "epoch": _position(feed).epoch,
            "seq": _position(feed).seq,
        }
    )
    return encode_sse(data, event=event)
