"""``GET /v1/responses/{id}?stream=true[&starting_after=N]`` answered from runcast's own log.

When the response's channel (``response:{id}``) is held, the answer is its events as the
upstream sent them (same event names and data bytes, so the original ``sequence_number``s) from
0, or after ``N``, then live until the response ends; runcast's own notices are left out but for
``runcast.upstream_lost``, whose ``error`` member makes the openai SDK raise rather than end as
if the response were complete. If the events wanted are no longer all held, the answer is a 400
in the OpenAI error shape, never a silently shorter stream. A response runcast does not hold is
proxied (:func:`serve_logged_response` returns None).

A caller whose own key goes upstream (runcast holds none) must show that it may read the
response: runcast asks the upstream for it (``GET /responses/{id}``) with that key first, and
proxies the request unchanged on any answer but 200 (502/504 when the upstream cannot be asked).
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import msgspec
import orjson
from aiohttp import web

from gateway.errors import UpstreamError
from gateway.hub import HISTORY_LOST_EVENT, START, EndReason, FrameFormat, Position
from gateway.hub.sinks import BufferSink
from gateway.runs.channels import response_channel
from gateway.runs.protocols import UPSTREAM_LOST_EVENT
from parsers.errors import DECODE_ERRORS, RemoteProtocolError
from parsers.sse import ServerSentEvent, SSEDecoder, encode_sse

from .errors import RequestError, upstream_failure
from .state import BROKER, SETTINGS, UPSTREAM

__all__ = ["logged_response_call", "serve_logged_response"]

_PATH = re.compile(r"^/v1/responses/([A-Za-z0-9_\-.]{1,128})/?$")
_TRUE = frozenset({"true", "1"})
_UNNAMED = "message"


class _Seq(msgspec.Struct, gc=False):
    sequence_number: int | None = None


_seq_decoder = msgspec.json.Decoder(_Seq)


def _sequence_number(sse: ServerSentEvent) -> int | None:
    try:
        return _seq_decoder.decode(sse.data_bytes).sequence_number
    except DECODE_ERRORS:
        return None


def logged_response_call(request: web.Request) -> tuple[str, int | None] | None:
    """(response id, ``starting_after``) of a retrieve-stream request, or None for another call.

    Raises a 400 for a ``starting_after`` that is not an integer >= -1.
    """
    if request.method != "GET" or request.query.get("stream", "").lower() not in _TRUE:
        return None
    match = _PATH.match(request.rel_url.raw_path)
    if match is None:
        return None
    raw = request.query.get("starting_after")
    if raw is None:
        return unquote(match.group(1)), None
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(raw) > 18 or int(raw) < -1:
        # -1, like no value, means from the start (as the upstream accepts it).
        raise RequestError(
            400, f"invalid starting_after {raw[:40]!r}: an integer >= -1", param="starting_after"
        )
    return unquote(match.group(1)), int(raw)


class _Sink(BufferSink):
    """A :class:`BufferSink` that wakes its reader when bytes arrive or it ends."""

    __slots__ = ("_ready",)

    def __init__(self, buffer_limit: int) -> None:
        super().__init__(FrameFormat.SSE, buffer_limit=buffer_limit)
        self._ready = asyncio.Event()

    def send(self, frames: bytes, last_seq: int) -> bool:
        alive = super().send(frames, last_seq)
        self._ready.set()
        return alive

    def end(self, reason: EndReason) -> None:
        super().end(reason)
        self._ready.set()

    async def ready(self) -> None:
        await self._ready.wait()
        self._ready.clear()


class _Filter:
    """Held SSE frames -> the upstream's own frames after ``starting_after``."""

    def __init__(self, after: int | None) -> None:
        self._after = after
        self._decoder = SSEDecoder()
        self.first: ServerSentEvent | None = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for sse in self._decoder.feed(data):
            if self.first is None:
                self.first = sse
            name = sse.event
            if name.startswith("runcast.") and name != UPSTREAM_LOST_EVENT:
                continue
            seq = _sequence_number(sse)
            if self._after is not None and seq is not None and seq <= self._after:
                continue
            out.append(encode_sse(sse.data_bytes, event=None if name == _UNNAMED else name))
        return b"".join(out)


def _cut_notice(reason: EndReason, seq: int) -> bytes:
    """What a reader cut off before the response's end gets last: an ``error`` member, so the
    openai SDK raises instead of ending as if the response were complete."""
    if reason == "ended":
        return b""
    message = f"runcast stopped this stream before the response's end ({reason}); retrieve again"
    data = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "runcast_" + reason,
                "param": None,
                "code": reason,
            },
            "seq": seq,
        }
    )
    return encode_sse(data, event="runcast." + reason)


def _gone(response_id: str) -> RequestError:
    return RequestError(
        400,
        f"runcast no longer holds the beginning of the stream of response {response_id!r}; "
        "retrieve it without stream=true",
        param="starting_after",
        code="stream_history_lost",
    )


async def _may_read(request: web.Request, response_id: str, api_key: str | None) -> bool:
    if api_key is None:
        # Where runcast holds the upstream key, None means the caller showed a runcast key
        # (upstream_api_key checked it). Where callers' own keys pass on, it means the caller
        # showed none: it is proxied, and the upstream tells it what it tells anyone.
        return request.app[SETTINGS].upstream_key_held
    upstream = request.app[UPSTREAM]
    try:
        async with upstream.request(
            "GET", f"/responses/{response_id}", api_key=api_key, max_retries=0
        ) as answer:
            return answer.status == 200
    except (UpstreamError, RemoteProtocolError) as exc:
        raise upstream_failure(exc) from None


async def serve_logged_response(
    request: web.Request, response_id: str, after: int | None, *, api_key: str | None
) -> web.StreamResponse | None:
    """Answer from the log, or None when runcast does not hold the response (proxy it)."""
    broker = request.app[BROKER]
    channel = response_channel(response_id)
    stats = await broker.held(channel)
    if stats is None or not await _may_read(request, response_id, api_key):
        return None
    sink = _Sink(request.app[SETTINGS].creator_buffer_bytes)
    start = Position(stats.epoch, stats.first_seq - 1) if stats.first_seq > 1 else START
    subscription = await broker.subscribe(channel, sink, since=start)
    try:
        wanted = 0 if after is None else after + 1
        events = _Filter(after)
        body = events.feed(sink.take())
        first = events.first
        if first is None or first.event == HISTORY_LOST_EVENT:
            raise _gone(response_id)
        first_seq = _sequence_number(first)
        if first_seq is not None and first_seq > wanted:
            raise _gone(response_id)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        timeout = request.app[SETTINGS].creator_write_timeout
        while True:
            if body:
                async with asyncio.timeout(timeout):
                    await response.write(body)
            if sink.end_reason is not None:
                body = events.feed(sink.take()) + _cut_notice(sink.end_reason, sink.last_seq)
                async with asyncio.timeout(timeout):
                    await response.write(body)
                    await response.write_eof()
                break
            await sink.ready()
            body = events.feed(sink.take())
        return response
    finally:
        subscription.close()
