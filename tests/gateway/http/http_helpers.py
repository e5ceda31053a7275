"""Clients for the gateway tests: SSE and WebSocket subscribers that record what they receive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from openai import AsyncAssistantEventHandler, AsyncOpenAI
from openai.types.beta import AssistantStreamEvent

from gateway.http.connections import SubscriberConnections
from gateway.http.registry import RelayRegistry
from gateway.http.state import BROKER, CONNECTIONS, RELAYS
from gateway.hub import Broker
from parsers.sse import SSEDecoder


@dataclass
class Gateway:
    url: str
    app: web.Application
    runner: web.AppRunner
    upstream_url: str

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def broker(self) -> Broker:
        return self.app[BROKER]

    @property
    def relays(self) -> RelayRegistry:
        return self.app[RELAYS]

    @property
    def connections(self) -> SubscriberConnections:
        return self.app[CONNECTIONS]


def sdk_client(gateway: Gateway, api_key: str = "sk-caller") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.v1, api_key=api_key, max_retries=0, timeout=30)


async def new_thread(client: AsyncOpenAI, **assistant: Any) -> tuple[str, str]:
    """(assistant id, thread id) with one user message, created through the gateway."""
    asst = await client.beta.assistants.create(model="gpt-4o", name="t", **assistant)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.create(thread.id, role="user", content="Hello there")
    return asst.id, thread.id


StartSim = Callable[..., Awaitable[str]]
StartGateway = Callable[..., Awaitable[Gateway]]
SECRET = "test-secret-with-at-least-32-bytes!!"

WAIT = 20.0
"""Upper bound for anything a test waits for (the suite's own timeout is 120 s)."""


@dataclass(frozen=True)
class Received:
    seq: int | None
    event: str
    data: bytes

    def json(self) -> Any:
        return orjson.loads(self.data)


@dataclass
class Subscriber:
    """One subscriber's record: events in arrival order, and whether the stream ended."""

    events: list[Received] = field(default_factory=list)
    ended: bool = False

    @property
    def names(self) -> list[str]:
        return [e.event for e in self.events]

    @property
    def upstream(self) -> list[tuple[str, bytes]]:
        """(name, data) of the events that are not runcast notices."""
        return [(e.event, e.data) for e in self.events if not e.event.startswith("runcast.")]

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events if e.seq is not None]


async def read_sse(
    response: aiohttp.ClientResponse, sub: Subscriber, *, stop_at_done: int = 1
) -> Subscriber:
    """Record SSE events from ``response`` until ``stop_at_done`` ``done`` events or EOF."""
    decoder = SSEDecoder()
    dones = 0
    async for chunk in response.content.iter_any():
        for sse in decoder.feed(chunk):
            seq = int(sse.id) if sse.id else None
            sub.events.append(Received(seq, sse.event, sse.data_bytes))
            if sse.event == "done":
                dones += 1
                if dones >= stop_at_done:
                    return sub
    sub.ended = True
    return sub


async def sse_subscribe(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    stop_at_done: int = 1,
) -> tuple[aiohttp.ClientResponse, asyncio.Task[Subscriber]]:
    """Open an SSE subscription (subscribed once this returns) and record it in a task."""
    response = await session.get(url, headers=headers)
    assert response.status == 200, await response.text()
    task = asyncio.create_task(read_sse(response, Subscriber(), stop_at_done=stop_at_done))
    return response, task


async def read_ws(ws: aiohttp.ClientWebSocketResponse, sub: Subscriber) -> Subscriber:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frame = orjson.loads(msg.data)
        data = frame["data"]
        raw = data.encode() if isinstance(data, str) else orjson.dumps(data)
        sub.events.append(Received(frame.get("seq"), frame["event"], raw))
        if frame["event"] == "done":
            return sub
    sub.ended = True
    return sub


async def ws_subscribe(
    session: aiohttp.ClientSession, url: str
) -> tuple[aiohttp.ClientWebSocketResponse, asyncio.Task[Subscriber]]:
    ws = await session.ws_connect(url)
    return ws, asyncio.create_task(read_ws(ws, Subscriber()))


def canonical(events: list[tuple[str, bytes]]) -> list[tuple[str, Any]]:
    """Events with parsed JSON data, to compare SSE bytes with WebSocket-embedded JSON."""
    out = []
    for name, data in events:
        out.append((name, data.decode() if data == b"[DONE]" else orjson.loads(data)))
    return out


class RecordingHandler(AsyncAssistantEventHandler):
    """An SDK event handler that records every event as (name, JSON-able data)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any]] = []
        self.untyped: list[dict[str, Any]] = []
        self.run_id: str | None = None
        self.run_started = asyncio.Event()
        self.deltas = 0

    async def on_event(self, event: AssistantStreamEvent) -> None:
        if event.data is None:  # a non-`thread.*` event the SDK cannot type (spec §6.2)
            self.untyped.append(event.to_dict(mode="json"))
            return
        self.seen.append((event.event, event.data.to_dict(mode="json")))
        if event.event == "thread.run.created":
            self.run_id = event.data.id
            self.run_started.set()
        if event.event == "thread.message.delta":
            self.deltas += 1
