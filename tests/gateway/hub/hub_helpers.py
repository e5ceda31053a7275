"""Helpers for the hub tests: a toy reducer, a test app mounting the hub's handlers, raw clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.errors import SubscriberError
from gateway.hub import (
    Broker,
    HubEvent,
    HubSettings,
    MemoryBroker,
    Position,
    serve_sse,
    serve_subscriber,
    serve_websocket,
    since_from_request,
)
from parsers.sse import ServerSentEvent, SSEDecoder

MakeBroker = Callable[..., AbstractAsyncContextManager[Broker]]
"""``make_broker(**settings_overrides)``: a started broker of the kind under test, closed after."""

FAST = {"sweep_interval": 0.02, "heartbeat_interval": 0.0, "close_timeout": 2.0}
"""Settings that make housekeeping quick enough for tests."""


class CountingReducer:
    """Snapshot = how many events and their names, in order (so it can be recomputed)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def apply(self, event: HubEvent) -> None:
        if event.name == "boom":
            raise ValueError("the reducer refuses this event")
        self.names.append(event.name)

    def snapshot(self) -> bytes:
        return json.dumps({"count": len(self.names), "names": self.names}).encode()


def counting_reducer(channel: str) -> CountingReducer | None:
    return CountingReducer() if channel.startswith("run:") else None


def seq_of(event_id: str) -> int:
    """The seq of an SSE id ``<epoch>-<seq>``."""
    epoch, _, seq = event_id.rpartition("-")
    assert epoch, f"id without an epoch: {event_id!r}"
    return int(seq)


def at(broker: MemoryBroker, channel: str, seq: int) -> Position:
    """The position ``seq`` in the channel's current epoch."""
    stats = broker.channel_statistics(channel)
    assert stats is not None
    return Position(stats.epoch, seq)


def epoch_of(broker: MemoryBroker, channel: str) -> str:
    stats = broker.channel_statistics(channel)
    assert stats is not None
    return stats.epoch


def ev(i: int, name: str = "tick") -> HubEvent:
    return HubEvent(name, b'{"i":%d}' % i)


@web.middleware
async def subscriber_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except SubscriberError as exc:
        return web.json_response(
            {"error": {"code": exc.code, "message": str(exc)}}, status=exc.status
        )


def make_app(broker: MemoryBroker) -> web.Application:
    async def any_transport(request: web.Request) -> web.StreamResponse:
        return await serve_subscriber(
            request, broker, request.match_info["channel"], **_opts(request)
        )

    async def sse_only(request: web.Request) -> web.StreamResponse:
        return await serve_sse(request, broker, request.match_info["channel"], **_opts(request))

    async def ws_only(request: web.Request) -> web.StreamResponse:
        return await serve_websocket(
            request, broker, request.match_info["channel"], **_opts(request)
        )

    app = web.Application(middlewares=[subscriber_errors])
    app.router.add_get("/streams/{channel}", any_transport)
    app.router.add_get("/sse/{channel}", sse_only)
    app.router.add_get("/ws/{channel}", ws_only)
    return app


def _opts(request: web.Request) -> dict[str, Any]:
    return {
        "since": since_from_request(request),
        "snapshot": request.query.get("snapshot") == "1",
        "create": request.query.get("create") == "1",
    }


@dataclass
class Hub:
    broker: MemoryBroker
    base: str
    port: int
    session: aiohttp.ClientSession

    def url(self, channel: str, path: str = "streams", **query: Any) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.base}/{path}/{channel}" + (f"?{q}" if q else "")

    async def publish(self, channel: str, *events: HubEvent) -> None:
        await self.broker.publish([channel], list(events))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    async def wait_subscribers(self, channel: str, n: int) -> None:
        def ok() -> bool:
            stats = self.broker.channel_statistics(channel)
            return stats is not None and stats.subscribers == n

        await self.wait_for(ok)


@dataclass
class SSEStream:
    """An SSE response being read with the project's decoder."""

    response: aiohttp.ClientResponse
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    events: list[ServerSentEvent] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)

    async def read_until(self, predicate: Callable[[list[ServerSentEvent]], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate(self.events):
                chunk = await self.response.content.readany()
                if not chunk:
                    raise AssertionError(f"stream ended after {len(self.events)} events")
                self._feed(chunk)

    async def read_to_end(self) -> list[ServerSentEvent]:
        async with asyncio.timeout(5):
            while chunk := await self.response.content.readany():
                self._feed(chunk)
        self.events.extend(self.decoder.close())
        assert not self.decoder.truncated
        return self.events

    def _feed(self, chunk: bytes) -> None:
        self.raw += chunk
        self.events.extend(self.decoder.feed(chunk))


def numbered(events: list[ServerSentEvent]) -> list[int]:
    return [seq_of(e.id) for e in events if not e.event.startswith("runcast.")]


async def open_sse(hub: Hub, url: str, **headers: str) -> SSEStream:
    response = await hub.session.get(url, headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    return SSEStream(response)


async def raw_request(
    port: int, request: bytes, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket client (its receive buffer optionally tiny, to play a stalled reader)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
    writer.write(request)
    return reader, writer


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; returns the payload and whether the terminating chunk was seen."""
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return bytes(out), False
        size = int(body[pos:end], 16)
        if size == 0:
            assert body[end : end + 4] == b"\r\n\r\n"
            return bytes(out), True
        start = end + 2
        if len(body) < start + size + 2:
            return bytes(out), False
        out += body[start : start + size]
        assert body[start + size : start + size + 2] == b"\r\n"
        pos = start + size + 2


async def aiter_ws(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[aiohttp.WSMessage]:
    async with asyncio.timeout(5):
        async for msg in ws:
            yield msg


StartHub = Callable[..., Awaitable[Hub]]
"""The ``start_hub`` fixture: keyword arguments override :data:`FAST` settings."""


def settings(**overrides: Any) -> HubSettings:
    return HubSettings(**{**FAST, **overrides})
