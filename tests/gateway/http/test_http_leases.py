"""Lease discipline in Redis mode (gateway/runs/keeper.py, the fenced append of hub/redis/wire.py).

A relay renews its run's lease on a timer, so an upstream silent for longer than the lease keeps
its run; a relay whose lease is taken stops publishing at once and its creator's stream ends with
``runcast.upstream_error``; the broker refuses a publish carrying a token older than the run's.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from http_helpers import (
    StartGateway,
    new_thread,
    parse_serve,
    sdk_client,
    sse_subscribe,
    subscription_ended,
)
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py

from gateway.hub import Fence, HubEvent, StaleFence
from gateway.hub.redis import RedisBroker
from gateway.runs.channels import run_channel
from gateway.state import MemoryRunLeases
from gateway.state.redis import STATE_NAMESPACE, RedisRunLeases, state_client

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.mark.asyncio
async def test_the_broker_refuses_a_publish_fenced_by_an_older_token(
    redis_server: RedisServer,
) -> None:
    redis_server.flush()
    client = state_client(redis_server.url)
    leases = RedisRunLeases(client, namespace=STATE_NAMESPACE)
    try:
        async with RedisBroker(redis_server.url, node_id="a") as broker:
            old = await leases.acquire("run_1", "a", ttl=30)
            assert old is not None
            channels = [run_channel("run_1"), "thread:t"]
            ok = await broker.publish(channels, [HubEvent("e", b"1")], fence=leases.fence(old))
            assert ok[run_channel("run_1")].seq == 1
            new = await leases.acquire("run_1", "b", ttl=30, take_over=True)
            assert new is not None
            with pytest.raises(StaleFence):
                await broker.publish(channels, [HubEvent("e", b"2")], fence=leases.fence(old))
            info = await broker.channel_info(run_channel("run_1"))
            assert info is not None and info.last_seq == 1  # nothing of it was stored
            thread = await broker.channel_info("thread:t")
            assert thread is not None and thread.last_seq == 1
            # The new holder, and a publish without a fence (memory-mode callers), go through.
            ok = await broker.publish(channels, [HubEvent("e", b"3")], fence=leases.fence(new))
            assert ok[run_channel("run_1")].seq == 2
            await broker.publish(channels, [HubEvent("e", b"4")])
            # Released (or lapsed), the lease still fences out every older holder: a paused
            # owner that wakes after the taker finished writes nothing.
            assert await leases.release(new)
            with pytest.raises(StaleFence):
                await broker.publish(channels, [HubEvent("e", b"5")], fence=leases.fence(old))
            ok = await broker.publish(channels, [HubEvent("e", b"6")], fence=leases.fence(new))
            assert ok[run_channel("run_1")].seq == 4
            # A fence naming no lease (no token ever handed out) checks nothing.
            assert await broker.publish(channels, [HubEvent("e", b"7")], fence=Fence("x:none", 1))
    finally:
        await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_only_the_last_holder_takes_a_lapsed_lease_back(
    redis_server: RedisServer, store: str
) -> None:
    redis_server.flush()
    client = state_client(redis_server.url)
    leases = (
        RedisRunLeases(client, namespace=STATE_NAMESPACE) if store == "redis" else MemoryRunLeases()
    )
    try:
        first = await leases.acquire("run_2", "a", ttl=0.05)
        assert first is not None
        await asyncio.sleep(0.1)  # lapsed, nobody took it: its holder takes it back
        again = await leases.acquire("run_2", "a", ttl=30, after=first.token)
        assert again is not None and again.token > first.token
        # another node held it meanwhile (and released it): the old holder cannot take it back
        assert await leases.release(again)
        taker = await leases.acquire("run_2", "b", ttl=30)
        assert taker is not None and await leases.release(taker)
        assert await leases.acquire("run_2", "a", ttl=30, after=again.token) is None
        assert await leases.acquire("run_2", "c", ttl=30) is not None  # free for anyone else
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_relay_whose_lease_is_taken_stops_publishing_and_its_creator_is_told(
    start_gateway: StartGateway, redis_server: RedisServer, session: aiohttp.ClientSession
) -> None:
    redis_server.flush()
    gateway = await start_gateway(
        sim={"delay_ms": 50, "deltas": 200},
        broker=redis_server.url,
        node_id="a",
        lease_ttl=0.6,
        subscribe_auth="open",
    )
    client = state_client(redis_server.url)
    leases = RedisRunLeases(client, namespace=STATE_NAMESPACE)
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk)
        async with session.post(
            f"{gateway.v1}/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
            headers={"Authorization": "Bearer sk-caller"},
        ) as creator:
            assert creator.status == 200, await creator.text()
            run_id = creator.headers["runcast-run-id"]
            url = f"{gateway.url}/streams/runs/{run_id}?since=0"
            response, subscriber = await sse_subscribe(session, url)
            body = b""
            async with asyncio.timeout(30):
                async for chunk in creator.content.iter_any():
                    body += chunk
                    if body.count(b"thread.message.delta") >= 5 and b"taken" not in body:
                        # Another owner (a "node" holding it for 30 s) takes the run.
                        thief = await leases.acquire(run_id, "thief", ttl=30, take_over=True)
                        assert thief is not None
                        body += b"\n: taken\n"
        assert b"event: runcast.upstream_error" in body, body[-600:]
        assert b"another gateway node took this run over" in body
        assert b"thread.run.completed" not in body
        info = await gateway.broker.channel_info(run_channel(run_id))
        assert info is not None
        before = info.last_seq
        await asyncio.sleep(0.5)  # the upstream goes on streaming: nothing more is published
        info = await gateway.broker.channel_info(run_channel(run_id))
        assert info is not None and info.last_seq == before and not info.ended
        assert before < 200
        response.close()
        subscriber.cancel()
        await asyncio.wait([subscriber])
    finally:
        await sdk.close()
        await client.aclose()


@pytest.mark.asyncio
async def test_a_run_silent_for_longer_than_its_lease_keeps_its_owner(
    start_gateway: StartGateway, redis_server: RedisServer, session: aiohttp.ClientSession
) -> None:
    redis_server.flush()
    ttl = 0.6
    gateway = await start_gateway(
        sim={"delay_ms": 1000, "deltas": 2},  # events ~1.7 ttl apart
        broker=redis_server.url,
        node_id="a",
        lease_ttl=ttl,
    )
    client = state_client(redis_server.url)
    leases = RedisRunLeases(client, namespace=STATE_NAMESPACE)
    sdk = sdk_client(gateway)
    try:
        assistant_id, thread_id = await new_thread(sdk)
        raw = await sdk.beta.threads.runs.with_raw_response.create(
            thread_id, assistant_id=assistant_id, stream=True
        )
        run_id = raw.headers["runcast-run-id"]
        response, subscriber = await sse_subscribe(
            session, f"{gateway.url}/streams/runs/{run_id}?since=0"
        )
        tokens = set()
        async with asyncio.timeout(30):
            async for _ in raw.parse():
                holder = await leases.holder(run_id)
                if holder is not None:
                    tokens.add(holder.token)
        sub = await subscription_ended(response, subscriber)
        assert len(tokens) == 1  # one lease, renewed: never lapsed nor taken over
        assert sub.names[-2:] == ["thread.run.completed", "done"]
        assert not [n for n in sub.names if n.startswith("runcast.")]
        assert gateway.relays.statistics().taken_over == 0
        assert await leases.holder(run_id) is None  # released at the end
    finally:
        await sdk.close()
        await client.aclose()


def test_the_lease_ttl_comes_from_the_flag_or_the_environment() -> None:
    assert parse_serve().lease_ttl == 10.0
    assert parse_serve("--lease-ttl", "1.5").lease_ttl == 1.5
    assert parse_serve(env={"RUNCAST_LEASE_TTL": "4"}).lease_ttl == 4.0
    with pytest.raises(SystemExit):
        parse_serve("--lease-ttl", "0")
