"""Fixtures for the simulator's tests: real servers on 127.0.0.1, raw and SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from mock_helpers import MockAPI, MockServer, StartMock
from openai import AsyncOpenAI

from gateway.mock import MockSettings, create_app
from gateway.mock.app import SERVICE_KEY
from gateway.mock.site import start_site

# Small and deterministic: a few deltas per message keep every test fast.
TEST_SETTINGS: dict[str, Any] = {"deltas": 6, "tokens_per_delta": 2, "seed": 7}


@pytest_asyncio.fixture
async def start_mock() -> AsyncIterator[StartMock]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> MockServer:
        app = create_app(MockSettings(**{**TEST_SETTINGS, **overrides}))
        runner = web.AppRunner(app, shutdown_timeout=30.0)
        await runner.setup()
        runners.append(runner)
        base_url = await start_site(runner, "127.0.0.1", 0) + "/v1"  # as `runcast mock` serves
        return MockServer(base_url=base_url, service=app[SERVICE_KEY], runner=runner)

    yield start
    for runner in runners:
        await runner.cleanup()  # idempotent: a test may have stopped its server already


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


@pytest_asyncio.fixture
async def server(start_mock: StartMock) -> MockServer:
    return await start_mock()


@pytest_asyncio.fixture
async def api(server: MockServer, session: aiohttp.ClientSession) -> MockAPI:
    return MockAPI(session, server.base_url)


@pytest_asyncio.fixture
async def sdk(server: MockServer) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    try:
        yield client
    finally:
        await client.close()
