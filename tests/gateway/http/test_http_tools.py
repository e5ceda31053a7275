"""Tool automation end to end: the openai SDK as creator never submits, and the run completes.

runcast answers ``requires_action`` with Python handlers and webhooks; the creator (the official
SDK's ``runs.stream``) and SSE/WebSocket subscribers see one continuous run, the subscribers
with the ``runcast.tool_call.*`` events besides. The simulator records every submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
import runcast_e2e_tools
from aiohttp import web
from http_helpers import (
    WAIT,
    RecordingHandler,
    Subscriber,
    canonical,
    new_thread,
    numbered,
    read_sse,
    sdk_client,
    sse_subscribe,
    stream_run,
    subscription_ended,
    ws_subscribe,
)
from tool_helpers import (
    CUSTOMER,
    WEATHER,
    StartTools,
    ToolGateway,
    final_text,
    function,
    quoted,
    requires_action_calls,
    tool_gateways,
)

import gateway.mock.driver
from gateway.tools import ToolRegistry, verify_signature
from gateway.tools.handlers import error_output

pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

WEBHOOK_SECRET = "whsec_e2e_secret"


@pytest_asyncio.fixture
async def start_tools() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


def sample_tools() -> ToolRegistry:
    return ToolRegistry.from_module(runcast_e2e_tools)


async def prepare(tg: ToolGateway, tools: list[dict[str, Any]]) -> tuple[str, str]:
    """(assistant id, thread id): an assistant with ``tools`` and a thread with one message."""
    sdk = sdk_client(tg.gateway)
    try:
        return await new_thread(sdk, tools=tools)
    finally:
        await sdk.close()


async def run_with_sdk(
    tg: ToolGateway, scenario: str, assistant_id: str, thread_id: str
) -> RecordingHandler:
    """Run ``scenario`` with the SDK's ``runs.stream``, never submitting anything itself."""
    sdk = sdk_client(tg.gateway)
    try:
        return await stream_run(sdk, assistant_id, thread_id, scenario)
    finally:
        await sdk.close()


async def read_channel(session: aiohttp.ClientSession, url: str) -> Subscriber:
    """A channel from its first event to its first ``done``."""
    async with session.get(url, params={"since": "0"}) as response:
        assert response.status == 200
        async with asyncio.timeout(WAIT):
            return await read_sse(response, Subscriber())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scenario", "actions"),
    [
        ("tool_call", [["get_weather"]]),
        ("parallel_tool_calls", [["get_weather", "lookup_customer"]]),
        ("multi_round", [["get_weather"], ["lookup_customer"]]),
    ],
)
async def test_sdk_creator_and_subscribers_see_the_run_complete_with_handler_outputs(
    start_tools: StartTools,
    session: aiohttp.ClientSession,
    scenario: str,
    actions: list[list[str]],
) -> None:
    tg = await start_tools(sample_tools())
    assistant_id, thread_id = await prepare(tg, [WEATHER, CUSTOMER])
    channel = f"{tg.gateway.url}/streams/threads/{thread_id}"
    sse_response, sse_task = await sse_subscribe(session, channel)
    ws, ws_task = await ws_subscribe(session, channel)
    creator = await run_with_sdk(tg, scenario, assistant_id, thread_id)
    async with asyncio.timeout(WAIT):
        sse, websocket = await sse_task, await ws_task
    sse_response.close()
    await ws.close()

    # The creator saw one run through to its end, without the actions runcast answered.
    names = [name for name, _ in creator.seen]
    assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed"
    assert "thread.run.requires_action" not in names
    assert creator.untyped == []  # no runcast.* events in the creator's response

    # Exactly one accepted submission per action, each answering that action's calls.
    calls = requires_action_calls(sse.upstream)
    assert [[c["function"]["name"] for c in action] for action in calls] == actions
    assert tg.sim.requests == [creator.run_id] * len(actions)
    assert [set(outputs) for _, outputs in tg.sim.accepted] == [
        {c["id"] for c in action} for action in calls
    ]
    # Each output is the handler's answer, and the model's final answer quotes it verbatim.
    text = final_text(creator)
    for action, (_, outputs) in zip(calls, tg.sim.accepted, strict=True):
        for call in action:
            arguments = orjson.loads(call["function"]["arguments"])
            output = outputs[call["id"]]
            if call["function"]["name"] == "get_weather":
                assert orjson.loads(output) == {**arguments, "forecast": "sunny", "temp_c": 21}
            else:
                assert output == f"customer {arguments['customer_id']} is a gold member"
            assert quoted(call["function"]["name"], output) in text

    # Subscribers: the creator's events plus the actions, the tool events and one final done.
    assert numbered(sse.events) == numbered(websocket.events)
    assert sse.seqs == list(range(1, len(sse.events) + 1))
    upstream = [(n, d) for n, d in canonical(sse.upstream) if n != "thread.run.requires_action"]
    assert upstream == [*creator.seen, ("done", "[DONE]")]
    tool_events = [(e.event, e.json()) for e in sse.events if e.event.startswith("runcast.")]
    expected = [
        (event, call["id"])
        for action in calls
        for call in action
        for event in ("runcast.tool_call.started", "runcast.tool_call.completed")
    ]
    assert sorted((n, d["tool_call_id"]) for n, d in tool_events) == sorted(expected)
    for _, data in tool_events:
        assert data["run_id"] == creator.run_id and data["thread_id"] == thread_id
    # An action's tool events come right after its requires_action, before the continuation.
    for index, event in enumerate(sse.events):
        if event.event.startswith("runcast.tool_call."):
            before = [e.event for e in sse.events[:index] if not e.event.startswith("runcast.")]
            assert before[-1] == "thread.run.requires_action"


def explode(city: str) -> str:
    raise RuntimeError(f"no weather service for {city}")


async def dawdle(city: str) -> str:
    await asyncio.sleep(60)
    return "never"


def picky(*, postcode: str) -> str:
    return postcode


def listless(city: str) -> str:
    return city


@pytest.mark.asyncio
async def test_raising_slow_and_bad_argument_handlers_become_error_outputs(
    start_tools: StartTools, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulated model writes valid JSON objects; for one tool it writes a JSON array, which
    # cannot be keyword arguments (spec §4.1: arguments are model-written text).
    fake = gateway.mock.driver.fake_arguments

    def fake_arguments(parameters: Any, rng: Any) -> Any:
        if parameters.get("description") == "array":
            return ["not", "an", "object"]
        return fake(parameters, rng)

    monkeypatch.setattr(gateway.mock.driver, "fake_arguments", fake_arguments)

    registry = ToolRegistry()
    for fn in (explode, dawdle, picky, listless):
        registry.register(fn)
    array_tool = function("listless", city="string")
    array_tool["function"]["parameters"]["description"] = "array"
    tools = [function(name, city="string") for name in ("explode", "dawdle", "picky")]
    tg = await start_tools(registry, timeout=0.5)
    assistant_id, thread_id = await prepare(tg, [*tools, array_tool])
    response, subscriber = await sse_subscribe(
        session, f"{tg.gateway.url}/streams/threads/{thread_id}"
    )
    creator = await run_with_sdk(tg, "parallel_tool_calls", assistant_id, thread_id)
    sub = await subscription_ended(response, subscriber)

    assert creator.seen[-1][0] == "thread.run.completed"
    assert creator.untyped == []
    [(_, outputs)] = tg.sim.accepted
    [action] = requires_action_calls(sub.upstream)
    by_name = {call["function"]["name"]: outputs[call["id"]] for call in action}
    explode_call = next(c for c in action if c["function"]["name"] == "explode")
    city = orjson.loads(explode_call["function"]["arguments"])["city"]
    assert by_name == {
        "explode": error_output(f"RuntimeError: no weather service for {city}"),
        "dawdle": error_output("tool 'dawdle' timed out after 0.5s"),
        "picky": error_output("TypeError: picky() got an unexpected keyword argument 'city'"),
        "listless": error_output("arguments must be a JSON object, got list"),
    }
    text = final_text(creator)
    for name, output in by_name.items():
        assert quoted(name, output) in text
    failed = {
        e.json()["name"]: e.json() for e in sub.events if e.event == "runcast.tool_call.failed"
    }
    assert sorted(failed) == ["dawdle", "explode", "listless", "picky"]
    assert failed["dawdle"]["error"] == "tool 'dawdle' timed out after 0.5s"
    assert "runcast.tool_call.completed" not in sub.names


@pytest.mark.asyncio
async def test_on_error_cancel_cancels_the_run_and_says_why(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    def get_weather(city: str) -> str:
        raise LookupError(city)

    registry = ToolRegistry()
    registry.register(get_weather)
    tg = await start_tools(registry, on_error="cancel")
    assistant_id, thread_id = await prepare(tg, [WEATHER])
    creator = await run_with_sdk(tg, "tool_call", assistant_id, thread_id)
    sub = await read_channel(session, f"{tg.gateway.url}/streams/threads/{thread_id}")

    assert creator.seen[-1][0] == "thread.run.cancelled"
    assert tg.sim.requests == []
    assert sub.names[-6:] == [
        "thread.run.requires_action",
        "runcast.tool_call.started",
        "runcast.tool_call.failed",
        "runcast.tool_automation.cancelled",
        "thread.run.cancelled",
        "done",
    ]
    reason = sub.events[-3].json()["reason"]
    assert "'get_weather'" in reason and "LookupError" in reason


@pytest.mark.asyncio
async def test_round_limit_cancels_the_run_and_says_why(
    start_tools: StartTools, session: aiohttp.ClientSession
) -> None:
    tg = await start_tools(sample_tools(), max_rounds=1)
    assistant_id, thread_id = await prepare(tg, [WEATHER, CUSTOMER])
    creator = await run_with_sdk(tg, "multi_round", assistant_id, thread_id)
    sub = await read_channel(session, f"{tg.gateway.url}/streams/threads/{thread_id}")

    assert creator.seen[-1][0] == "thread.run.cancelled"
    assert len(tg.sim.accepted) == 1
    assert sub.names.count("thread.run.requires_action") == 2
    assert sub.names[-3:] == ["runcast.tool_automation.cancelled", "thread.run.cancelled", "done"]
    assert sub.events[-3].json()["reason"] == "tool round limit reached (1 submissions)"


@pytest.mark.asyncio
async def test_webhooks_answer_signed_requests(start_tools: StartTools) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify_signature(
            WEBHOOK_SECRET,
            request.headers["Runcast-Timestamp"],
            body,
            request.headers["Runcast-Signature"],
        )
        call = orjson.loads(body)
        received.append({"path": request.path, "valid": valid, "call": call})
        if not valid:
            return web.Response(status=401, text="bad signature")
        if request.path == "/weather":
            city = call["arguments"]["city"]
            return web.json_response({"output": {"city": city, "sky": "clear"}})
        return web.Response(text=f"crm says hello to {call['arguments']['customer_id']}")

    app = web.Application()
    app.router.add_post("/weather", hook)
    app.router.add_post("/other", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        tg = await start_tools(
            webhooks={"get_weather": f"{base}/weather", "*": f"{base}/other"},
            webhook_secret=WEBHOOK_SECRET,
        )
        assistant_id, thread_id = await prepare(tg, [WEATHER, CUSTOMER])
        creator = await run_with_sdk(tg, "parallel_tool_calls", assistant_id, thread_id)
    finally:
        await runner.cleanup()

    assert creator.seen[-1][0] == "thread.run.completed"
    assert [r["valid"] for r in received] == [True, True]
    calls = {r["path"]: r["call"] for r in received}
    assert sorted(calls) == ["/other", "/weather"]
    for call in calls.values():
        assert (call["run_id"], call["thread_id"]) == (creator.run_id, thread_id)
    [(_, outputs)] = tg.sim.accepted
    weather, customer = calls["/weather"], calls["/other"]
    assert orjson.loads(outputs[weather["tool_call_id"]]) == {
        "city": weather["arguments"]["city"],
        "sky": "clear",
    }
    customer_output = outputs[customer["tool_call_id"]]
    assert customer_output == f"crm says hello to {customer['arguments']['customer_id']}"
    text = final_text(creator)
    assert quoted("get_weather", outputs[weather["tool_call_id"]]) in text
    assert quoted("lookup_customer", customer_output) in text


@pytest.mark.asyncio
async def test_tool_events_reach_the_creator_only_when_asked_for(
    start_tools: StartTools,
) -> None:
    def get_weather(city: str) -> str:
        raise ValueError("storm")

    registry = ToolRegistry()
    registry.register(get_weather)
    tg = await start_tools(registry, show_requires_action=True, emit_tool_events_to_creator=True)
    assistant_id, thread_id = await prepare(tg, [WEATHER])
    creator = await run_with_sdk(tg, "tool_call", assistant_id, thread_id)

    names = [name for name, _ in creator.seen]
    assert names.count("thread.run.requires_action") == 1
    assert names[-1] == "thread.run.completed"
    # The SDK raises on a non-thread.* event with an `error` member (spec §6.2): the creator's
    # copy of a failure names it `error_message`, so its stream goes on.
    assert [(e["name"], e.get("error_message")) for e in creator.untyped] == [
        ("get_weather", None),
        ("get_weather", "ValueError: storm"),
    ]
    assert all("error" not in event for event in creator.untyped)
    assert quoted("get_weather", error_output("ValueError: storm")) in final_text(creator)
