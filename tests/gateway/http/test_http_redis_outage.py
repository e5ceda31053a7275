"""Redis mode while the cluster's Redis is away: requests that need it get a 503
``broker_unavailable`` to retry, never a 500 with a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from http_helpers import (
    StartGateway,
    new_thread,
    sdk_client,
    sse_subscribe,
    stream_run,
    subscription_ended,
)
from redis_server import RedisServer, emptied  # tests/gateway/hub, on the path from conftest.py
from tool_helpers import WEATHER


@pytest.fixture
def redis_server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The module's server, emptied; running again after a test that stopped it."""
    yield from emptied(redis_server)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/streams/runs/run_x", "/streams/runs/run_x/snapshot", "/streams/threads/thread_x"],
)
async def test_subscribing_while_redis_is_away_is_a_503_to_retry(
    start_gateway: StartGateway,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    gateway = await start_gateway(broker=redis_server.url, node_id="a")
    redis_server.stop()
    with caplog.at_level(logging.WARNING):
        async with aiohttp.ClientSession() as session, session.get(gateway.url + path) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            error = (await response.json())["error"]
    assert error["code"] == "broker_unavailable"
    assert redis_server.url.rsplit(":", 1)[-1].split("/")[0] not in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_a_node_stops_cleanly_while_redis_is_away(
    start_gateway: StartGateway, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling restart during an outage: what the node cannot tidy in Redis lapses there.
    gateway = await start_gateway(broker=redis_server.url, node_id="a")
    redis_server.stop()
    with caplog.at_level(logging.WARNING):
        await gateway.runner.cleanup()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]


CREATORS = {
    "assistants": ("/threads/{thread_id}/runs", {"assistant_id": "{assistant_id}", "stream": True}),
    "responses": ("/responses", {"model": "gpt-5", "input": "Hi", "stream": True}),
    "chat": (
        "/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", CREATORS)
async def test_a_stream_started_while_redis_is_away_is_a_503_not_an_empty_200(
    start_gateway: StartGateway,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    # The relay cannot hold the run (its lease is in Redis): the creator must learn it, not get
    # a 200 whose body is empty.
    gateway = await start_gateway(broker=redis_server.url, node_id="a")
    sdk = sdk_client(gateway)
    assistant_id, thread_id = await new_thread(sdk)  # proxied: Redis is not needed
    await sdk.close()
    redis_server.stop()
    path, body = CREATORS[protocol]
    path = path.format(thread_id=thread_id)
    body = {
        k: v.format(assistant_id=assistant_id) if isinstance(v, str) else v for k, v in body.items()
    }
    headers = {"Authorization": "Bearer sk-caller", "OpenAI-Beta": "assistants=v2"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.v1 + path, json=body, headers=headers) as response,
    ):
        assert response.status == 503, await response.text()
        error = (await response.json())["error"]
    assert error["code"] == "broker_unavailable"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_an_action_that_expires_during_an_outage_still_ends_its_run(
    start_gateway: StartGateway, redis_server: RedisServer
) -> None:
    # The expiry watcher reads its schedule in Redis when the deadline comes: Redis away then
    # must delay the run's end, not stop the watch for good.
    gateway = await start_gateway(
        broker=redis_server.url,
        node_id="a",
        sim={"scenario": "tool_call", "expires_in": 0.8},
        expiry_grace=0.1,
    )
    sdk = sdk_client(gateway)
    async with aiohttp.ClientSession() as session:
        try:
            assistant_id, thread_id = await new_thread(sdk, tools=[WEATHER])
            creator = await stream_run(sdk, assistant_id, thread_id)
            assert creator.seen[-1][0] == "thread.run.requires_action"
            url = f"{gateway.url}/streams/runs/{creator.run_id}?since=0"
            response, subscriber = await sse_subscribe(session, url, stop_at_done=2)
            redis_server.stop(save=True)  # comes back as it was
            await asyncio.sleep(1.5)  # past the deadline: the watcher meets the outage
            redis_server.start()
            record = await subscription_ended(response, subscriber)
        finally:
            await sdk.close()
    assert "thread.run.expired" in [name for name, _ in record.upstream]
    # And the node still stops: a cancellation redis-py swallowed in a read just after Redis
    # came back left the watcher waiting for ever, and the node's shutdown with it.
    async with asyncio.timeout(10):
        await gateway.runner.cleanup()
