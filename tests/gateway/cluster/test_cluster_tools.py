"""Tool automation on three real ``runcast serve`` nodes sharing Redis, the creator on A and
subscribers on B and C: each tool call's webhook runs once cluster-wide and the simulator gets
exactly one submission per action (counted by the webhook and by the simulator)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cluster_helpers import API_KEY, Cluster
from http_helpers import WAIT, Received, Subscriber, numbered, read_sse, read_ws
from openai import AsyncOpenAI
from tool_helpers import SIM_DEFAULTS, WEATHER, SimLog, _record_submissions, quoted

from gateway.mock import MockSettings
from gateway.mock import create_app as create_simulator
from gateway.tools import verify_signature
from parsers.sse import SSEDecoder

pytestmark = pytest.mark.asyncio

WEBHOOK_SECRET = "webhook-secret-for-the-cluster-test"


class Webhook:
    """A tool webhook on 127.0.0.1 counting calls per ``tool_call_id``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        call = await request.json()
        self.calls[call["tool_call_id"]] += 1
        headers = request.headers
        timestamp, signature = headers["Runcast-Timestamp"], headers["Runcast-Signature"]
        assert verify_signature(WEBHOOK_SECRET, timestamp, body, signature)
        return web.json_response({"output": f"sunny ({call['tool_call_id']})"})


@pytest_asyncio.fixture
async def upstream_and_webhook() -> AsyncIterator[tuple[str, SimLog, str, Webhook]]:
    """(simulator URL, its submission log, webhook URL, the webhook's counts)."""
    log, hook = SimLog(), Webhook()
    sim_app = create_simulator(MockSettings(**{**SIM_DEFAULTS, "deltas": 30, "delay_ms": 10}))
    _record_submissions(sim_app, log)
    hook_app = web.Application()
    hook_app.router.add_post("/tools", hook.handle)
    runners = []
    try:
        for app in (sim_app, hook_app):
            runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        sim_port, hook_port = (r.addresses[0][1] for r in runners)
        yield f"http://127.0.0.1:{sim_port}/v1", log, f"http://127.0.0.1:{hook_port}/tools", hook
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.mark.parametrize("scenario", ["tool_call", "multi_round"])
async def test_each_call_is_handled_once_and_each_action_submitted_once_across_nodes(
    cluster: Cluster,
    upstream_and_webhook: tuple[str, SimLog, str, Webhook],
    scenario: str,
) -> None:
    upstream, sim, hook_url, hook = upstream_and_webhook
    cluster.use_upstream(upstream)
    tools = ("--tool-webhook", f"get_weather={hook_url}", "--tool-webhook-secret", WEBHOOK_SECRET)
    a, b, c = [(await cluster.node(name, *tools)).url for name in ("a", "b", "c")]
    sdk = AsyncOpenAI(base_url=f"{a}/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    try:
        assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=[WEATHER])
        thread = await sdk.beta.threads.create()
        raw = await sdk.beta.threads.runs.with_raw_response.create(
            thread.id,
            assistant_id=assistant.id,
            stream=True,
            metadata={"mock_scenario": scenario},
        )
        run_id = raw.headers["runcast-run-id"]
        token = raw.headers["runcast-subscribe-token"]
        url = f"/streams/runs/{run_id}?since=0&token={token}"
        sse = await session.get(f"{b}{url}")
        assert sse.status == 200
        ws = await session.ws_connect(f"{c}{url}")
        readers = [
            asyncio.create_task(read_sse(sse, Subscriber())),
            asyncio.create_task(read_ws(ws, Subscriber())),
        ]
        async with asyncio.timeout(WAIT):
            created = [event.event async for event in raw.parse()]
            on_b, on_c = await asyncio.gather(*readers)
        sse.close()
        await ws.close()
    finally:
        await sdk.close()
        await session.close()

    # Every handler ran once; the simulator accepted one submission per action, nothing refused.
    assert hook.calls and set(hook.calls.values()) == {1}
    assert sim.requests == [run_id] * len(sim.accepted)
    submitted = [call for _, outputs in sim.accepted for call in outputs]
    assert sorted(submitted) == sorted(hook.calls)
    assert created[-1] == "thread.run.completed"
    assert numbered(on_b.events) == numbered(on_c.events)
    started = [e for e in on_b.events if e.event == "runcast.tool_call.started"]
    assert len(started) == len(hook.calls)
    text = b"".join(e.data for e in on_b.events if e.event == "thread.message.completed").decode()
    for call in hook.calls:
        assert quoted("get_weather", f"sunny ({call})") in text
    if scenario == "multi_round":
        assert len(sim.accepted) > 1


async def _read_until(response: aiohttp.ClientResponse, name: str) -> list[Received]:
    """SSE events of ``response`` up to the first one named ``name`` (a named channel never
    ends by itself)."""
    decoder = SSEDecoder()
    events: list[Received] = []
    async for chunk in response.content.iter_any():
        events.extend(Received.from_sse(sse) for sse in decoder.feed(chunk))
        if any(event.event == name for event in events):
            return events
    raise AssertionError(f"the stream ended without {name}: {[e.event for e in events]}")


async def test_a_responses_tool_chain_whose_node_dies_in_its_handler_ends_with_owner_lost(
    cluster: Cluster, upstream_and_webhook: tuple[str, SimLog, str, Webhook]
) -> None:
    """A is killed while its webhook answers the response's function call. The response had
    ended (response.completed, with the call), so the node taking the stream over only closed
    it: subscribers' last event was runcast.tool_call.started, and the named channel, which
    never ends by itself, stayed silent for good. Now they get runcast.upstream_lost
    (owner_lost); the chain is not continued (the webhook is not called again)."""
    upstream = upstream_and_webhook[0]
    calls: list[str] = []
    called = asyncio.Event()

    async def never_answers(request: web.Request) -> web.Response:
        calls.append((await request.json())["tool_call_id"])
        called.set()
        await asyncio.sleep(3 * WAIT)
        return web.json_response({"output": "too late"})

    hook_app = web.Application()
    hook_app.router.add_post("/tools", never_answers)
    runner = web.AppRunner(hook_app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/tools"
    cluster.use_upstream(upstream)
    tools = ("--tool-webhook", f"get_weather={hook_url}", "--tool-webhook-secret", WEBHOOK_SECRET)
    ttl = ("--lease-ttl", "1.5")
    node_a = await cluster.node("a", *tools, *ttl)
    b = (await cluster.node("b", *tools, *ttl)).url
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
    headers = {"Authorization": f"Bearer {API_KEY}", "Runcast-Channel": "session-7"}
    try:
        named = await session.get(f"{b}/streams/channels/session-7", headers=headers)
        assert named.status == 200
        reader = asyncio.create_task(_read_until(named, "runcast.upstream_lost"))
        body = {
            "model": "gpt-5",
            "input": "Weather in Paris?",
            "tools": [{"type": "function", **WEATHER["function"]}],
            "stream": True,
            "metadata": {"mock_scenario": "tool_call"},
        }
        creator = await session.post(f"{node_a.url}/v1/responses", json=body, headers=headers)
        assert creator.status == 200, await creator.text()
        async with asyncio.timeout(WAIT):
            await called.wait()
        node_a.proc.kill()
        await node_a.proc.wait()
        creator.close()
        async with asyncio.timeout(WAIT):
            events = await reader
        named.close()
    finally:
        await session.close()
        await runner.cleanup()
    names = [event.event for event in events]
    assert "response.completed" in names and names[-2] == "runcast.tool_call.started"
    assert names[-1] == "runcast.upstream_lost"
    lost = events[-1].json()
    assert (lost["reason"], lost["kind"]) == ("owner_lost", "response")
    assert len(calls) == 1  # not continued: nobody called the webhook again
