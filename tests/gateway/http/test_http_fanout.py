"""A streamed run made with the openai SDK through runcast reaches every subscriber identically."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from http_helpers import (
    WAIT,
    Gateway,
    RecordingHandler,
    StartGateway,
    Subscriber,
    canonical,
    new_thread,
    read_sse,
    sdk_client,
    sse_subscribe,
    ws_subscribe,
)
from openai import AsyncOpenAI

from parsers.sse import SSEDecoder

# openai marks `beta.assistants` with a bare "deprecated" message (threads use the long one).
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.mark.asyncio
async def test_sdk_run_fans_out_to_sse_and_websocket_subscribers(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 30, "delay_ms": 5})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    channel_url = f"{gateway.url}/streams/threads/{thread_id}"
    sse = [await sse_subscribe(session, channel_url) for _ in range(3)]
    ws = [await ws_subscribe(session, channel_url) for _ in range(2)]

    handler = RecordingHandler()

    async def join_run_channel_mid_run() -> Subscriber:
        await handler.run_started.wait()
        while handler.deltas < 3:
            await asyncio.sleep(0.005)
        response, task = await sse_subscribe(
            session, f"{gateway.url}/streams/runs/{handler.run_id}?since=0"
        )
        async with response:
            return await task

    late = asyncio.create_task(join_run_channel_mid_run())
    async with sdk.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()
    await sdk.close()

    async with asyncio.timeout(WAIT):
        subscribers = [await task for _, task in sse] + [await task for _, task in ws]
        mid_run = await late
    for response, _ in sse:
        response.close()
    for socket, _ in ws:
        await socket.close()

    creator = [(name, data) for name, data in handler.seen]
    assert creator[0][0] == "thread.run.created"
    assert creator[-1][0] == "thread.run.completed"
    assert handler.deltas == 30
    for sub in [*subscribers, mid_run]:
        events = canonical(sub.upstream)
        assert events[-1] == ("done", "[DONE]")
        assert events[:-1] == creator
    # The same bytes on every SSE subscriber, numbered 1, 2, 3... on the thread channel.
    first = subscribers[0]
    assert first.seqs == list(range(1, len(first.events) + 1))
    for sub in subscribers[1:3]:
        assert sub.events == first.events
    for sub in subscribers[3:]:
        assert sub.seqs == first.seqs
    # The run channel numbers the same events from 1 as well.
    assert mid_run.seqs == list(range(1, len(mid_run.events) + 1))


@pytest.mark.asyncio
async def test_creator_stream_carries_run_channel_ids_and_tokens(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    assistant_id, thread_id = await new_thread(sdk)
    async with session.post(
        f"{gateway.v1}/threads/{thread_id}/runs",
        json={"assistant_id": assistant_id, "stream": True},
        headers={"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"},
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        run_id = response.headers["runcast-run-id"]
        assert response.headers["runcast-thread-id"] == thread_id
        assert response.headers["runcast-subscribe-token"].count(".") == 2
        assert response.headers["runcast-thread-token"].count(".") == 2
        assert response.headers["x-request-id"]
        creator = await read_sse(response, Subscriber())

    async with session.get(f"{gateway.url}/streams/runs/{run_id}?since=0") as replay:
        channel = await read_sse(replay, Subscriber())
    assert creator.events == channel.events
    assert creator.seqs == list(range(1, len(creator.events) + 1))


@pytest.mark.asyncio
async def test_create_thread_and_run_starts_run_channel_with_thread_created(
    gateway: Gateway, sdk: AsyncOpenAI, session: aiohttp.ClientSession
) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    handler = RecordingHandler()
    async with sdk.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        event_handler=handler,
    ) as stream:
        await stream.until_done()
    names = [name for name, _ in handler.seen]
    assert names[:2] == ["thread.created", "thread.run.created"]
    thread_id = handler.seen[0][1]["id"]
    async with session.get(f"{gateway.url}/streams/runs/{handler.run_id}?since=0") as run_sub:
        run_events = await read_sse(run_sub, Subscriber())
    async with session.get(f"{gateway.url}/streams/threads/{thread_id}?since=0") as thread_sub:
        thread_events = await read_sse(thread_sub, Subscriber())
    assert canonical(run_events.upstream)[:-1] == handler.seen
    assert run_events.events == thread_events.events


@pytest.mark.asyncio
async def test_creator_disconnect_does_not_stop_the_run(
    start_gateway: StartGateway, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(sim={"deltas": 100, "delay_ms": 10})
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)
    await sdk.close()
    response, subscriber = await sse_subscribe(
        session, f"{gateway.url}/streams/threads/{thread_id}"
    )
    async with aiohttp.ClientSession() as creator_session:
        creator = await creator_session.post(
            f"{gateway.v1}/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
            headers={"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"},
        )
        decoder = SSEDecoder()
        deltas = 0
        while deltas < 3:
            chunk = await creator.content.readany()
            deltas += sum(e.event == "thread.message.delta" for e in decoder.feed(chunk))
        assert gateway.relays.statistics().active == 1  # events reach the creator as they come
        creator.close()  # the creator vanishes mid-run
    async with asyncio.timeout(WAIT):
        events = await subscriber
    response.close()
    names = events.names
    assert names[-2:] == ["thread.run.completed", "done"]
    assert names.count("thread.message.delta") == 100
    assert events.seqs == list(range(1, len(names) + 1))
