"""An upstream stream that never ends is cut at ``max_stream_bytes``, on all three protocols.

What a channel holds (history, snapshot state) grows with what its stream brings, so a stream that
never ended (a runaway generation, a broken server) grew the gateway without bound: 1.16 GB
against a 256 MiB memory budget, creator gone and nobody subscribed. The upstream here answers
every stream with its golden head, then the same delta for ever; the official SDK as creator must
get an error naming ``stream_too_large``, the channel must end, the upstream's connection must be
closed, and nothing may be asked of the upstream again (no resumption of the background response,
no reconciliation, no recovery polling of the run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from http_helpers import WAIT, Gateway, StartGateway, sdk_client, served_upstream
from openai import APIError, AsyncOpenAI
from protocol_helpers import subscribe_sse

from parsers.sse import SSEDecoder

CAP = 256 * 1024
"""``max_stream_bytes`` of the gateway under test."""
SLACK = 1024 * 1024
"""What one upstream read may bring past the cap (it is handed out whole)."""
DATA = Path(__file__).resolve().parents[2] / "data"


class Endless:
    """The upstream: every stream is a golden head and then one delta repeated for ever."""

    def __init__(self) -> None:
        self.closed: dict[str, asyncio.Event] = {}
        self.other_requests: list[str] = []

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_post("/v1/threads/{thread_id}/runs", self._run)
        app.router.add_post("/v1/responses", self._response)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    async def _other(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.other_requests.append(f"{request.method} {request.path}")
        return aiohttp.web.json_response({"error": {"message": "not here"}}, status=404)

    async def _run(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        head, delta = _split("assistants", "thread.message.delta")
        return await self._serve(request, "run", head, lambda _: delta)

    async def _response(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        head, delta = _split("responses", "response.output_text.delta")
        # A background response: one the relay would resume after a cut.
        head = head.replace(b'"background":false', b'"background":true')
        first = len(list(_events(head)))

        def numbered(n: int) -> bytes:
            return re.sub(rb'"sequence_number":\d+', b'"sequence_number":%d' % (first + n), delta)

        return await self._serve(request, "response", head, numbered)

    async def _chat(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        head, delta = _split("chat", '"content":"')
        return await self._serve(request, "chat", head, lambda _: delta)

    async def _serve(
        self,
        request: aiohttp.web.Request,
        kind: str,
        head: bytes,
        delta: Callable[[int], bytes],
    ) -> aiohttp.web.StreamResponse:
        """``head``, then ``delta(n)`` for n = 0, 1, ... until the gateway hangs up."""
        closed = self.closed.setdefault(kind, asyncio.Event())
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(head)
            n = 0
            while True:
                await response.write(b"".join(delta(n + i) for i in range(64)))
                n += 64
        except ConnectionError:
            return response  # the gateway hung up: what this test waits for
        finally:
            closed.set()


def _events(body: bytes) -> Iterator[bytes]:
    """``body``'s events as SSE text, each with its blank line."""
    for part in body.split(b"\n\n"):
        if part.strip():
            yield part + b"\n\n"


def _split(protocol: str, first_delta: str) -> tuple[bytes, bytes]:
    """A golden stream's events before its first delta, and that delta."""
    events = list(_events((DATA / protocol / "A-text.sse").read_bytes()))
    at = next(i for i, event in enumerate(events) if first_delta.encode() in event)
    return b"".join(events[:at]), events[at]


@dataclasses.dataclass
class Capped:
    """The endless upstream, a gateway capped at ``CAP`` in front of it, and an SDK client."""

    upstream: Endless
    gateway: Gateway
    sdk: AsyncOpenAI


@pytest_asyncio.fixture
async def capped(start_gateway: StartGateway) -> AsyncIterator[Capped]:
    upstream = Endless()
    async with served_upstream(upstream.app()) as url:
        gateway = await start_gateway(upstream_url=url, upstream={"max_stream_bytes": CAP})
        client = sdk_client(gateway)
        try:
            yield Capped(upstream, gateway, client)
        finally:
            await client.close()


async def _cut_cleanly(
    capped: Capped, session: aiohttp.ClientSession, kind: str, channel: str
) -> None:
    """The upstream's connection was closed, the channel ended within the cap, nothing more was
    asked of the upstream (no resumption, reconciliation or recovery), the gateway is healthy."""
    upstream, gateway = capped.upstream, capped.gateway
    async with asyncio.timeout(WAIT):
        while kind not in upstream.closed:
            await asyncio.sleep(0.01)
        await upstream.closed[kind].wait()
    stats = gateway.broker.channel_statistics(channel)
    assert stats is not None and stats.ended
    assert CAP // 2 < stats.bytes_published < CAP + SLACK
    assert upstream.other_requests == []
    async with session.get(f"{gateway.url}/healthz") as response:
        assert response.status == 200


@pytest.mark.asyncio
async def test_a_run_that_never_ends_is_cut_and_not_recovered(
    capped: Capped, session: aiohttp.ClientSession
) -> None:
    gateway, sdk = capped.gateway, capped.sdk
    stream = await sdk.beta.threads.runs.create(
        thread_id="thread_9Qx", assistant_id="asst_1", stream=True
    )
    deltas = 0
    with pytest.raises(APIError) as raised:
        async with asyncio.timeout(WAIT):
            async for event in stream:
                deltas += event.event == "thread.message.delta"
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "stream_too_large"
    assert f"passed {CAP} bytes" in raised.value.message
    assert deltas > 100
    await _cut_cleanly(capped, session, "run", "run:run_7Lm")
    replay = await read_all(session, f"{gateway.url}/streams/runs/run_7Lm?since=0")
    assert replay[-2] == "runcast.upstream_error" and replay[-1] == "done"


@pytest.mark.asyncio
async def test_a_background_response_that_never_ends_is_cut_and_not_resumed(
    capped: Capped, session: aiohttp.ClientSession
) -> None:
    gateway, sdk = capped.gateway, capped.sdk
    url = f"{gateway.url}/streams/channels/runaway"
    sse_response, subscriber = await subscribe_sse(session, url)
    stream = await sdk.responses.create(
        model="gpt-5",
        input="Hi",
        stream=True,
        background=True,
        extra_headers={"Runcast-Channel": "runaway"},
    )
    with pytest.raises(APIError, match="stream_too_large"):
        async with asyncio.timeout(WAIT):
            async for _ in stream:
                pass
    async with asyncio.timeout(WAIT):
        sub = await subscriber
    sse_response.close()
    lost = sub.events[-1]
    assert lost.event == "runcast.upstream_lost"
    assert lost.json()["reason"] == "stream_too_large"
    await _cut_cleanly(capped, session, "response", f"response:{lost.json()['id']}")


@pytest.mark.asyncio
async def test_a_chat_stream_that_never_ends_is_cut(
    capped: Capped, session: aiohttp.ClientSession
) -> None:
    stream = await capped.sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    ids = set()
    with pytest.raises(APIError, match="stream_too_large"):
        async with asyncio.timeout(WAIT):
            async for chunk in stream:
                ids.add(chunk.id)
    [completion_id] = ids
    await _cut_cleanly(capped, session, "chat", f"chat:{completion_id}")


async def read_all(session: aiohttp.ClientSession, url: str) -> list[str]:
    """The event names of an ended channel's whole replay."""
    decoder = SSEDecoder()
    async with session.get(url) as response:
        assert response.status == 200
        body = await response.read()
    return [event.event for event in decoder.feed(body) + decoder.close()]
