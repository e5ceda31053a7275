"""Clients for the gateway tests: SSE and WebSocket subscribers that record what they receive,
SDK runs and tool-output submissions streamed to their end, and a ``runcast serve`` process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from openai import AsyncAssistantEventHandler, AsyncOpenAI
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import RequiredActionFunctionToolCall, Run

from gateway.cli import build_parser, settings_from_args
from gateway.http.connections import SubscriberConnections
from gateway.http.state import BROKER, CONNECTIONS, RELAYS
from gateway.hub import Broker
from gateway.runs.registry import RelayRegistry
from gateway.settings import Settings
from parsers.sse import ServerSentEvent, SSEDecoder


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
    id: str | None = field(default=None, compare=False)
    """The position as sent, ``<epoch>-<seq>`` (what a resume hands back)."""

    def json(self) -> Any:
        return orjson.loads(self.data)

    @classmethod
    def from_sse(cls, sse: ServerSentEvent) -> Received:
        if not sse.id:
            return cls(None, sse.event, sse.data_bytes)
        epoch, _, seq = sse.id.rpartition("-")
        assert epoch, f"an id without its epoch: {sse.id!r}"
        return cls(int(seq), sse.event, sse.data_bytes, sse.id)

    @classmethod
    def from_ws(cls, text: str) -> Received:
        """A WebSocket frame ``{"epoch", "seq", "event", "data"}``; JSON ``data`` back to its
        bytes."""
        frame = orjson.loads(text)
        data = frame["data"]
        raw = data.encode() if isinstance(data, str) else orjson.dumps(data)
        seq = frame.get("seq")
        position = None if seq is None else f"{frame['epoch']}-{seq}"
        return cls(seq, frame["event"], raw, position)


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
    """Record SSE events from ``response`` until ``stop_at_done`` ``done`` events or EOF; a
    response left before its end is released (its connection closed), as a client would."""
    decoder = SSEDecoder()
    dones = 0
    async for chunk in response.content.iter_any():
        for sse in decoder.feed(chunk):
            sub.events.append(Received.from_sse(sse))
            if sse.event == "done":
                dones += 1
                if dones >= stop_at_done:
                    response.release()
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


async def subscription_ended(
    response: aiohttp.ClientResponse, subscriber: asyncio.Task[Subscriber]
) -> Subscriber:
    """The record of an :func:`sse_subscribe` subscription once it ended; its response closed."""
    async with asyncio.timeout(WAIT):
        sub = await subscriber
    response.close()
    return sub


async def read_ws(ws: aiohttp.ClientWebSocketResponse, sub: Subscriber) -> Subscriber:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        received = Received.from_ws(msg.data)
        sub.events.append(received)
        if received.event == "done":
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


def numbered(events: list[Received]) -> list[tuple[int | None, str, Any]]:
    """(seq, name, parsed data) of every event: SSE and WebSocket subscribers compare equal."""
    parsed = canonical([(e.event, e.data) for e in events])
    return [(e.seq, name, data) for e, (name, data) in zip(events, parsed, strict=True)]


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


async def stream_run(
    sdk: AsyncOpenAI,
    assistant_id: str,
    thread_id: str,
    scenario: str | None = None,
    *,
    handler: RecordingHandler | None = None,
) -> RecordingHandler:
    """One run streamed to its end with the SDK's ``runs.stream``, recorded by ``handler`` (a new
    one by default); ``scenario`` is the simulator's ``metadata.mock_scenario``."""
    if handler is None:
        handler = RecordingHandler()
    metadata = {"metadata": {"mock_scenario": scenario}} if scenario else {}
    async with sdk.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler, **metadata
    ) as stream:
        await stream.until_done()
    return handler


async def submit_stream(
    sdk: AsyncOpenAI, run: Run, output: Callable[[RequiredActionFunctionToolCall], str]
) -> RecordingHandler:
    """Answer each call of ``run``'s action with ``output(call)`` through the SDK's
    ``submit_tool_outputs_stream``; the continuation streamed to its end, recorded."""
    assert run.required_action is not None
    handler = RecordingHandler()
    async with sdk.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=run.thread_id,
        run_id=run.id,
        tool_outputs=[
            {"tool_call_id": call.id, "output": output(call)}
            for call in run.required_action.submit_tool_outputs.tool_calls
        ],
        event_handler=handler,
    ) as stream:
        await stream.until_done()
    return handler


async def raw_connection(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the server at ``url`` (``http://host:port``), for bytes no
    HTTP client would send."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


@asynccontextmanager
async def served_upstream(app: web.Application) -> AsyncIterator[str]:
    """``app`` (an upstream of the test's own) on a free 127.0.0.1 port; its ``/v1`` base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def parse_serve(*argv: str, env: dict[str, str] | None = None) -> Settings:
    """The settings of ``runcast serve *argv`` with ``env`` (empty by default) as environment."""
    return settings_from_args(build_parser().parse_args(["serve", *argv]), env or {})


def clean_environ() -> dict[str, str]:
    """This process's environment without the ``RUNCAST_*`` and ``OPENAI_*`` variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNCAST_", "OPENAI_"))}


@asynccontextmanager
async def serve_process(
    *command: str, **options: Any
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """Start ``command`` (a ``runcast serve``) and wait for its ``listening on URL`` line; yields
    (process, URL, stderr lines so far). A process still running at exit is killed."""
    proc = await asyncio.create_subprocess_exec(
        *command, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, **options
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while not any("listening on" in line for line in lines):
                line = (await proc.stderr.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
        found = re.search(r"listening on (http://\S+)", lines[-1])
        assert found is not None
        yield proc, found.group(1), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop_with_sigterm(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM ``proc``; its exit status."""
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(WAIT):
        return await proc.wait()


def closed_port() -> int:
    """A port that was free a moment ago and has nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
