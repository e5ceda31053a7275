"""Upstream connections after a streamed run: back in the pool once the protocol's end is seen
(the rest of the body read, bounded), closed when a stream is left early, and enough of them for
many concurrent streams. Real aiohttp upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.upstream import UpstreamClient, transport
from parsers.assistants import DoneEvent

from .servers import FakeUpstream, Handler, collect, fixture_bytes, reply_sse

RUNS = "/threads/thread_9Qx/runs"


def done_then(pause: float, *, eof: bool = True, peers: list[object] | None = None) -> Handler:
    """An upstream that sends a whole run through ``data: [DONE]``, pauses, then ends the body
    (or, without ``eof``, leaves it open until the handler returns); ``peers`` records who
    asked."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if peers is not None:
            transport = request.transport
            peers.append(transport.get_extra_info("peername") if transport else None)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(fixture_bytes("A-text.sse"))
        await asyncio.sleep(pause)
        if eof:
            await resp.write_eof()
        return resp

    return handler


@pytest.mark.asyncio
async def test_a_stream_ended_by_done_leaves_its_connection_in_the_pool(
    upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream ends its body a moment after `data: [DONE]`, as a server does that writes the
    # last event and the chunked terminator separately: the connection must still be reused.
    # The finish window is widened so that a busy CI machine's scheduling cannot outlast it.
    monkeypatch.setattr(transport, "FINISH_SECONDS", 2.0)
    peers: list[object] = []
    upstream.route("POST", RUNS, done_then(0.02, peers=peers))
    for _ in range(3):
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
            assert isinstance((await collect(stream))[-1].event, DoneEvent)
    assert len(peers) == 3 and len(set(peers)) == 1, peers
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_a_stream_left_before_done_does_not_wait_for_the_body(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, reply_sse(fixture_bytes("A-text.sse"), stall_at=200, stall_for=2))
    loop = asyncio.get_running_loop()
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        await stream.__anext__()
        left = loop.time()
    assert loop.time() - left < 1.0
    assert client.statistics().open_responses == 0


@pytest.mark.asyncio
async def test_more_streams_than_a_hundred_run_at_once(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # Each streamed run holds its connection for the whole stream: with the default pool, 150
    # live streams all get their first event (none waits for another to end).
    release = asyncio.Event()
    body = fixture_bytes("A-text.sse")
    first_end = body.index(b"\n\n") + 2

    async def held(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body[:first_end])
        await release.wait()
        await resp.write(body[first_end:])
        await resp.write_eof()
        return resp

    upstream.route("POST", RUNS, held)
    started = 0

    async def one() -> str:
        nonlocal started
        async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
            await stream.__anext__()
            started += 1
            if started == 150:
                release.set()
            return (await collect(stream))[-1].name

    async with asyncio.timeout(8):
        names = await asyncio.gather(*(one() for _ in range(150)))
    assert names == ["done"] * 150


@pytest.mark.asyncio
async def test_a_body_that_goes_on_after_done_is_not_waited_for(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.route("POST", RUNS, done_then(2, eof=False))
    loop = asyncio.get_running_loop()
    async with client.stream_run("thread_9Qx", {"assistant_id": "a"}) as stream:
        assert isinstance((await collect(stream))[-1].event, DoneEvent)
        ended = loop.time()
    assert loop.time() - ended < 0.5
    assert client.statistics().open_responses == 0
