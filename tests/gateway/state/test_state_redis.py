"""The Redis stores shared by two processes' clients (gateway/state/redis/).

Two clients with their own connection pools on one namespace stand for two gateway processes:
what one writes, the other's compare-and-write sees.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis_server import RedisServer

from gateway.state import ExpiryEntry, RoundState
from gateway.state.redis import (
    RedisActionClaims,
    RedisRunLeases,
    RedisState,
    RedisToolRounds,
    state_client,
)


@pytest_asyncio.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[tuple[str, list[aioredis.Redis]]]:
    clients = [state_client(redis_server.url) for _ in range(2)]
    try:
        yield f"test-{uuid.uuid4().hex}", clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.asyncio
async def test_a_lease_taken_over_by_another_node_fences_the_first(
    nodes: tuple[str, list[aioredis.Redis]],
) -> None:
    ns, (a, b) = nodes
    on_a = RedisRunLeases(a, namespace=ns)
    on_b = RedisRunLeases(b, namespace=ns)
    old = await on_a.acquire("run_1", "node-a", ttl=10)
    assert old is not None
    assert await on_b.acquire("run_1", "node-b", ttl=10) is None
    assert await on_b.holder("run_1") == old
    new = await on_b.acquire("run_1", "node-b", ttl=10, take_over=True)
    assert new is not None and new.token > old.token
    # The first holder learns it lost the run at its next renewal, and cannot release it.
    assert await on_a.renew(old, ttl=10) is None
    assert not await on_a.release(old)
    assert await on_a.holder("run_1") == new
    # The fence (the last token handed out) outlives the lease: a week while the run may be
    # taken back, an hour once released (one key per run a week held 60 M keys at 100 runs/s).
    fence = f"{ns}:lease:run_1:last"
    assert await a.ttl(fence) > 24 * 3600
    assert await on_b.release(new)
    assert 3500 < await a.ttl(fence) <= 3600
    assert int(await a.get(fence)) == new.token


@pytest.mark.asyncio
async def test_a_take_over_on_one_node_supersedes_the_claimant_on_another(
    nodes: tuple[str, list[aioredis.Redis]],
) -> None:
    ns, (a, b) = nodes
    on_a = RedisActionClaims(a, namespace=ns, poll=0.01)
    on_b = RedisActionClaims(b, namespace=ns, poll=0.01, takeover_timeout=5)
    claim = await on_a.claim("run_1")
    taker = asyncio.create_task(on_b.take_over("run_1"))
    await asyncio.wait_for(claim.wait_superseded(), 2)
    assert not taker.done()
    await on_a.release(claim)
    assert await asyncio.wait_for(taker, 2) is True
    await on_a.arriving("run_1")
    assert await on_b.incoming("run_1")
    await on_b.arrived("run_1")
    assert not await on_a.incoming("run_1")


@pytest.mark.asyncio
async def test_of_concurrent_answerers_on_two_nodes_exactly_one_wins(
    nodes: tuple[str, list[aioredis.Redis]],
) -> None:
    ns, (a, b) = nodes
    stores = [RedisToolRounds(c, namespace=ns) for c in (a, b)]
    for n in range(20):
        run = f"run_{n}"
        wins = await asyncio.gather(
            *(
                store.swap(run, RoundState(), RoundState(last_action=(f"call_{i}",)))
                for i, store in enumerate(stores)
            )
        )
        assert sorted(wins) == [False, True]
        winner = wins.index(True)
        assert await stores[1 - winner].get(run) == RoundState(last_action=(f"call_{winner}",))


@pytest.mark.asyncio
async def test_each_node_keeps_its_own_expiry_schedule(redis_server: RedisServer) -> None:
    ns = f"test-{uuid.uuid4().hex}"
    a = RedisState(redis_server.url, namespace=ns, node_id="a")
    b = RedisState(redis_server.url, namespace=ns, node_id="b")
    try:
        entry = ExpiryEntry(run_id="run_1", thread_id="t", api_key=None, seq=3, deadline=1.0)
        await a.state.schedule.put(entry)
        assert await b.state.schedule.earliest() is None
        await b.state.schedule.clear()  # node b's watcher stopping
        assert await a.state.schedule.earliest() == entry
        # What the run lifecycle shares is shared.
        await a.state.threads.note("run_1", "thread_1")
        assert await b.state.threads.thread_of("run_1") == "thread_1"
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.asyncio
async def test_more_concurrent_calls_than_pooled_connections_wait_for_one(
    nodes: tuple[str, list[aioredis.Redis]],
) -> None:
    # A busy node's stores all call at once (every run starting, renewing, claiming): the state
    # client's pool is bounded, so calls beyond it wait for a connection instead of failing.
    namespace, (client, _) = nodes
    await asyncio.gather(*(client.set(f"{namespace}:k{i}", i) for i in range(300)))
    assert await client.get(f"{namespace}:k299") == b"299"
