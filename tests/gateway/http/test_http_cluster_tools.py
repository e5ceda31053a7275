"""Tool automation across two gateways sharing the Redis state (gateway/state/redis/).

Two runcast apps on real sockets, one simulator that records every submission, one private
``redis-server``: a client's own submission through node B supersedes node A's automation,
whose handler is cancelled, and the action gets exactly one submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import SECRET, WAIT, new_thread, submit_stream
from openai import AsyncOpenAI
from redis_server import RedisServer  # tests/gateway/hub, on the path from conftest.py
from test_http_tools_races import Gate, SdkRun, wait_for_status
from tool_helpers import SIM_DEFAULTS, WEATHER, SimLog, _record_submissions, final_text, quoted

from gateway.http.app import create_app
from gateway.http.runner import start_runner
from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.settings import Settings
from gateway.tools import ToolRegistry, ToolSettings
from gateway.upstream import UpstreamSettings

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


def sdk_client_at(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-caller", max_retries=0, timeout=30)


StartNode = Callable[[ToolRegistry, str], Awaitable[str]]


@pytest_asyncio.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[tuple[SimLog, StartNode]]:
    """The simulator's submission log, and ``start(registry, node_id)`` -> a node's base URL."""
    redis_server.flush()
    runners: list[web.AppRunner] = []
    log = SimLog()
    sim_app = create_simulator(MockSettings(**SIM_DEFAULTS))
    _record_submissions(sim_app, log)
    sim = web.AppRunner(sim_app, shutdown_timeout=2.0, access_log=None)
    await sim.setup()
    runners.append(sim)
    await web.TCPSite(sim, "127.0.0.1", 0).start()
    upstream = f"http://127.0.0.1:{sim.addresses[0][1]}/v1"

    async def start(registry: ToolRegistry, node_id: str) -> str:
        settings = Settings(
            port=0,
            subscribe_auth="open",
            token_secret=SECRET,
            shutdown_timeout=2.0,
            broker=redis_server.url,
            node_id=node_id,
            upstream=UpstreamSettings(base_url=upstream, max_retries=0, idle_timeout=10.0),
            tools=ToolSettings(timeout=5.0),
        )
        runner, url = await start_runner(create_app(settings, tools=registry), "127.0.0.1", 0)
        runners.append(runner)
        return url

    try:
        yield log, start
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.mark.asyncio
async def test_a_submission_through_another_node_supersedes_the_owners_automation(
    cluster: tuple[SimLog, StartNode],
) -> None:
    sim, start = cluster
    on_a, on_b = Gate(), Gate()
    url_a = await start(on_a.registry(), "node-a")
    url_b = await start(on_b.registry(), "node-b")
    sdk_a = sdk_client_at(url_a)
    sdk_b = sdk_client_at(url_b)
    assistant_id, thread_id = await new_thread(sdk_a, tools=[WEATHER])
    creator = SdkRun(sdk_a, assistant_id, thread_id, "tool_call")
    run_id = await creator.run_id()
    async with asyncio.timeout(WAIT):
        await on_a.started.wait()
    # A client answers the action itself through node B while node A's handler runs.
    run = await wait_for_status(sdk_b, thread_id, run_id, "requires_action")
    client = await submit_stream(sdk_b, run, lambda call: "the client's answer")
    first = await creator.finished()
    await sdk_a.close()
    await sdk_b.close()

    # Node A stopped its handler and never submitted; node B ran none: one submission in all.
    assert on_a.cancelled == 1
    assert not on_b.started.is_set()
    assert sim.requests == [run_id]
    assert first.seen[-1][0] == "thread.run.requires_action"
    assert client.seen[-1][0] == "thread.run.completed"
    assert quoted("get_weather", "the client's answer") in final_text(client)
