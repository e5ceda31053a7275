"""Fixtures for the gateway tests: a simulator on its own port, runcast in front of it, clients.

Everything runs over real sockets on 127.0.0.1. The simulator plays the upstream; runcast reaches
it through its upstream client like any OpenAI-compatible server.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import SECRET, Gateway, StartGateway, StartSim, sdk_client
from openai import AsyncOpenAI

sys.path.append(str(Path(__file__).resolve().parent.parent / "hub"))
from redis_server import RedisServer, served  # found through the line above (Redis-mode tests)

from gateway.http.app import create_app
from gateway.http.runner import start_runner
from gateway.hub import HubSettings
from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.runs.actions import ActionHandler, ActionOptions
from gateway.settings import Settings
from gateway.state import SharedState
from gateway.upstream import UpstreamSettings

SIM_DEFAULTS: dict[str, Any] = {"deltas": 8, "tokens_per_delta": 2, "seed": 3}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private ``redis-server`` on a free port, one per test module."""
    yield from served(tmp_path_factory)


@pytest_asyncio.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> str:
        app = create_simulator(MockSettings(**{**SIM_DEFAULTS, **overrides}))
        runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest_asyncio.fixture
async def start_gateway(start_sim: StartSim) -> AsyncIterator[StartGateway]:
    runners: list[web.AppRunner] = []

    async def start(
        *,
        sim: dict[str, Any] | None = None,
        upstream_url: str | None = None,
        upstream_key: str | None = None,
        upstream: dict[str, Any] | None = None,
        hub: dict[str, Any] | None = None,
        action_handler: ActionHandler | None = None,
        action_options: ActionOptions | None = None,
        state: SharedState | None = None,
        **overrides: Any,
    ) -> Gateway:
        if upstream_url is None:
            upstream_url = await start_sim(**(sim or {}))
        values: dict[str, Any] = {
            "port": 0,
            "subscribe_auth": "open",
            "token_secret": SECRET,
            "recovery_timeout": 5.0,
            "shutdown_timeout": 2.0,
            **overrides,
        }
        settings = Settings(
            upstream=UpstreamSettings(
                base_url=upstream_url,
                api_key=upstream_key,
                **{"max_retries": 0, "idle_timeout": 10.0, **(upstream or {})},
            ),
            hub=HubSettings(**(hub or {})),
            **values,
        )
        app = create_app(
            settings, action_handler=action_handler, action_options=action_options, state=state
        )
        runner, url = await start_runner(app, "127.0.0.1", 0)
        runners.append(runner)
        return Gateway(url=url, app=app, runner=runner, upstream_url=upstream_url)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest_asyncio.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


@pytest_asyncio.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[AsyncOpenAI]:
    client = sdk_client(gateway)
    try:
        yield client
    finally:
        await client.close()
