"""Fixtures for the hub tests: a broker behind a small aiohttp app on 127.0.0.1, and a client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hub_helpers import Hub, MakeBroker, StartHub, counting_reducer, make_app, settings
from redis_server import RedisServer, served

from gateway.hub import Broker, MemoryBroker
from gateway.hub.redis import RedisBroker


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from served(tmp_path_factory)


@pytest.fixture(params=["memory", "redis"])
def make_broker(request: pytest.FixtureRequest) -> MakeBroker:
    """Each broker kind in turn, for the contract suite (test_hub_broker_contract.py)."""
    url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        url = server.url

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Broker]:
        if url is None:
            async with MemoryBroker(settings(**overrides), reducer_factory=counting_reducer) as b:
                yield b
        else:
            broker = RedisBroker(
                url, settings(**overrides), reducer_factory=counting_reducer, position_check=0.5
            )
            async with broker as b:
                yield b

    return make


@pytest_asyncio.fixture
async def start_hub() -> AsyncIterator[StartHub]:
    """Start a hub app; keyword arguments override :data:`hub_helpers.FAST` settings."""
    started: list[tuple[MemoryBroker, web.AppRunner, aiohttp.ClientSession]] = []

    async def start(**overrides: Any) -> Hub:
        broker = MemoryBroker(settings(**overrides), reducer_factory=counting_reducer)
        await broker.__aenter__()
        runner = web.AppRunner(make_app(broker), shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=10))
        started.append((broker, runner, session))
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return Hub(broker, f"http://127.0.0.1:{port}", port, session)

    yield start
    for broker, runner, session in reversed(started):
        await broker.aclose()
        await session.close()
        await runner.cleanup()


@pytest_asyncio.fixture
async def hub(start_hub: StartHub) -> Hub:
    return await start_hub()
