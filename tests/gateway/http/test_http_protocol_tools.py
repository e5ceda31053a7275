"""Tool automation on Responses and Chat Completions streams, end to end: the simulator, runcast
with Python tool handlers in front, the official openai SDK as creator, SSE and WebSocket
subscribers. runcast answers the calls a stream ends with and posts one follow-up per round
(counted by the simulator's journal), spliced into the first stream's channels."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from http_helpers import WAIT, Received, Subscriber, sdk_client
from openai import APIError, AsyncOpenAI
from protocol_helpers import read_sse, read_ws
from tool_helpers import CUSTOMER, WEATHER, StartTools, ToolGateway, tool_gateways

from gateway.tools import ToolRegistry
from parsers.sse import SSEDecoder

INSTRUCTIONS = "Answer in one sentence."


def _responses_tool(chat_tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", **chat_tool["function"]}


async def _create(sdk: AsyncOpenAI, scenario: str, *tools: dict[str, Any], **extra: Any) -> Any:
    """A streamed Responses create through runcast, as the raw response (head, then events)."""
    return await sdk.responses.with_raw_response.create(
        **{
            "model": "gpt-5",
            "input": "Weather in Oslo, and who is customer 7?",
            "tools": [_responses_tool(tool) for tool in tools],
            "metadata": {"mock_scenario": scenario},
            "stream": True,
            **extra,
        }
    )


class Handlers:
    """Tool handlers that count their calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def registry(self, *names: str) -> ToolRegistry:
        registry = ToolRegistry()
        if "get_weather" in names:

            async def get_weather(city: str) -> dict[str, Any]:
                self.calls["get_weather"] += 1
                return {"city": city, "temperature_c": 21}

            registry.register(get_weather)
        if "lookup_customer" in names:

            async def lookup_customer(customer_id: str) -> str:
                self.calls["lookup_customer"] += 1
                return f"customer {customer_id} is a gold member"

            registry.register(lookup_customer)
        return registry


@pytest_asyncio.fixture
async def start() -> AsyncIterator[StartTools]:
    async with tool_gateways() as start:
        yield start


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def _journal(session: aiohttp.ClientSession, tg: ToolGateway, path: str) -> list[Any]:
    base = tg.gateway.upstream_url.removesuffix("/v1")
    response = await session.get(
        f"{base}/mock/requests", params={"path": path}, headers={"Authorization": "Bearer sk"}
    )
    assert response.status == 200
    return [entry["body"] for entry in (await response.json())["data"]]


async def _replay(session: aiohttp.ClientSession, url: str) -> tuple[Subscriber, Subscriber]:
    """SSE and WebSocket subscribers of ``url`` from its start to its end (the channel closes)."""
    sse_response = await session.get(f"{url}?since=0")
    assert sse_response.status == 200
    ws = await session.ws_connect(f"{url}?since=0")
    try:
        async with asyncio.timeout(WAIT):
            return await asyncio.gather(
                read_sse(sse_response, until=lambda e: False), read_ws(ws, until=lambda e: False)
            )
    finally:
        sse_response.close()
        await ws.close()


def _parsed(events: list[Received]) -> list[tuple[str, Any]]:
    return [(e.event, None if e.data == b"[DONE]" else e.json()) for e in events]


def _text(output: list[dict[str, Any]]) -> str:
    return "".join(
        part["text"]
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


@pytest.mark.asyncio
async def test_responses_two_rounds_spliced_into_the_first_channel(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather", "lookup_customer"))
    tools = [_responses_tool(WEATHER), _responses_tool(CUSTOMER)]
    named_response = await session.get(f"{tg.gateway.url}/streams/channels/session-9")
    named_task = asyncio.create_task(
        read_sse(
            named_response,
            until=lambda e: (
                e.event == "response.completed" and b"lookup_customer returned" in e.data
            ),
        )
    )
    async with sdk_client(tg.gateway) as sdk:
        raw = await sdk.responses.with_raw_response.create(
            model="gpt-5",
            input="Weather in Oslo, and who is customer 7?",
            instructions=INSTRUCTIONS,
            tools=tools,  # type: ignore[arg-type]
            tool_choice="auto",
            metadata={"mock_scenario": "multi_round"},
            stream=True,
            extra_headers={"Runcast-Channel": "session-9"},
        )
        first = raw.headers["runcast-response-id"]
        url = f"{tg.gateway.url}/streams/responses/{first}"
        over_sse, over_ws = await _replay(session, url)
        seen = [event async for event in raw.parse()]
        try:
            async with asyncio.timeout(WAIT):
                named = await named_task
        finally:
            named_response.close()
    assert _parsed(named.events) == _parsed(over_sse.events)

    # The creator's stream is the whole chain and ends with the final answer.
    completed = [e.response for e in seen if e.type == "response.completed"]
    assert completed[0].id == first and len(completed) == 3
    final = completed[-1]
    assert final.output_text.startswith('get_weather returned: {"city"')
    assert "lookup_customer returned: customer" in final.output_text
    assert not any(e.type.startswith("runcast.") for e in seen)  # not asked for

    assert handlers.calls == {"get_weather": 1, "lookup_customer": 1}
    bodies = await _journal(session, tg, "/v1/responses")
    assert len(bodies) == 3
    for previous, body in zip(completed, bodies[1:], strict=False):
        calls = [item for item in previous.output if item.type == "function_call"]
        assert body["previous_response_id"] == previous.id
        assert [i["call_id"] for i in body["input"]] == [c.call_id for c in calls]
        assert {i["type"] for i in body["input"]} == {"function_call_output"}
        assert body["stream"] is True and body["model"] == "gpt-5"
        assert body["instructions"] == INSTRUCTIONS
        assert body["tools"] == tools and body["tool_choice"] == "auto"

    # Subscribers: identical, gap-free, the tool events between the responses.
    assert over_sse.ended and over_ws.ended
    assert _parsed(over_sse.events) == _parsed(over_ws.events)
    assert over_sse.seqs == list(range(over_sse.seqs[0], over_sse.seqs[0] + len(over_sse.events)))
    names = over_sse.names
    upstream = [n for n in names if not n.startswith("runcast.")]
    assert upstream == [e.type for e in seen]
    ends = [i for i, n in enumerate(names) if n == "response.completed"]
    between = names[ends[0] + 1 : ends[0] + 3]
    assert between == ["runcast.tool_call.started", "runcast.tool_call.completed"]
    started = over_sse.events[ends[0] + 1].json()
    first_call = next(i for i in completed[0].output if i.type == "function_call")
    assert started == {
        "response_id": first,
        "tool_call_id": first_call.call_id,
        "name": "get_weather",
    }
    assert names[ends[1] + 1 : ends[1] + 3] == between

    snapshot = await (await session.get(f"{url}/snapshot")).json()
    assert snapshot["snapshot"]["response"]["id"] == final.id
    assert (
        snapshot["snapshot"]["response"]["output"]
        == over_sse.events[-1].json()["response"]["output"]
    )
    assert _text(snapshot["snapshot"]["response"]["output"]) == final.output_text

    # A follow-up's own channel: that response, from its created to its completed.
    second = completed[1].id
    own, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{second}")
    own_upstream = [(n, d) for n, d in _parsed(own.events) if not n.startswith("runcast.")]
    assert own_upstream[0][1]["response"]["id"] == second
    assert own_upstream[-1][0] == "response.completed"
    assert own_upstream[-1][1]["response"]["id"] == second


@pytest.mark.asyncio
async def test_responses_stream_helper_gets_the_first_response_with_the_header(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with (
        sdk_client(tg.gateway) as sdk,
        sdk.responses.stream(
            model="gpt-5",
            input="Weather in Oslo?",
            tools=[_responses_tool(WEATHER)],  # type: ignore[list-item]
            metadata={"mock_scenario": "tool_call"},
            extra_headers={"Runcast-Creator-Stream": "first"},
        ) as stream,
    ):
        events = [event async for event in stream]
        response = await stream.get_final_response()
    assert events[-1].type == "response.completed"
    assert [item.type for item in response.output] == ["function_call"]
    # The chain went on in the channel the head named.
    chain, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{response.id}")
    last = chain.events[-1].json()["response"]
    assert chain.events[-1].event == "response.completed" and last["id"] != response.id
    assert _text(last["output"]).startswith("get_weather returned:")
    assert handlers.calls == {"get_weather": 1}
    assert len(await _journal(session, tg, "/v1/responses")) == 2


@pytest.mark.asyncio
async def test_responses_partial_coverage_leaves_the_calls_to_the_app(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "parallel_tool_calls", WEATHER, CUSTOMER)
        first = raw.headers["runcast-response-id"]
        seen = [event async for event in raw.parse()]
        channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{first}")
    assert seen[-1].type == "response.completed" and seen[-1].response.id == first
    calls = [i for i in seen[-1].response.output if i.type == "function_call"]
    assert len(calls) == 2
    assert channel.names[-2:] == ["response.completed", "runcast.tool_automation.skipped"]
    skipped = channel.events[-1].json()
    assert skipped["response_id"] == first
    assert skipped["calls"] == [{"tool_call_id": c.call_id, "name": c.name} for c in calls]
    assert "'lookup_customer'" in skipped["reason"]
    assert handlers.calls == {}
    assert len(await _journal(session, tg, "/v1/responses")) == 1


async def _answer_sse(request: web.Request, body: bytes) -> web.StreamResponse:
    """Answer ``request`` with ``body`` as an event stream (in place of the simulator)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(body)
    return response


def _two_calls_one_id() -> bytes:
    """A Responses stream ending with two ``get_weather`` calls that share one ``call_id``."""
    call = {
        "type": "function_call",
        "status": "completed",
        "call_id": "call_twice",
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    return _responses_ending_with("resp_twice", [{**call, "id": "fc_1"}, {**call, "id": "fc_2"}])


def _responses_ending_with(response_id: str, items: list[dict[str, Any]]) -> bytes:
    """A Responses stream whose response completes with ``items``."""
    response = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        *(
            {"type": "response.output_item.done", "sequence_number": 1 + n, "output_index": n,
             "item": item}
            for n, item in enumerate(items)
        ),
        {"type": "response.completed", "sequence_number": 3,
         "response": {**response, "status": "completed", "output": items}},
    ]  # fmt: skip
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events
    )


@pytest.mark.asyncio
async def test_calls_sharing_an_id_are_reported_never_run_twice(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    posts: list[bytes] = []

    @web.middleware
    async def two_calls_one_id(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/responses" or request.method != "POST":
            return await handler(request)
        posts.append(await request.read())
        return await _answer_sse(request, _two_calls_one_id())

    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"), sim_middleware=two_calls_one_id)
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "tool_call", WEATHER)
        seen = [event async for event in raw.parse()]
    assert seen[-1].type == "response.completed"
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/resp_twice")
    assert channel.names[-2:] == ["response.completed", "runcast.tool_automation.skipped"]
    assert "one id" in channel.events[-1].json()["reason"]
    assert handlers.calls == {} and len(posts) == 1  # nothing run, no follow-up


@pytest.mark.asyncio
@pytest.mark.parametrize("call_id", ["", None, "absent"])
async def test_a_responses_call_without_a_call_id_is_reported_not_dropped(
    start: StartTools, session: aiohttp.ClientSession, call_id: str | None
) -> None:
    # Without the member the chain ended without a word (an empty one was reported).
    call: dict[str, Any] = {"type": "function_call", "id": "fc_1", "status": "completed",
                            "name": "get_weather", "arguments": '{"city": "Oslo"}'}  # fmt: skip
    if call_id != "absent":
        call["call_id"] = call_id

    @web.middleware
    async def no_call_id(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/responses" or request.method != "POST":
            return await handler(request)
        return await _answer_sse(request, _responses_ending_with("resp_noid", [call]))

    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"), sim_middleware=no_call_id)
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "tool_call", WEATHER)
        [event async for event in raw.parse()]
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/resp_noid")
    assert channel.names[-2:] == ["response.completed", "runcast.tool_automation.skipped"]
    skipped = channel.events[-1].json()
    assert "no id" in skipped["reason"]
    assert skipped["calls"] == [{"tool_call_id": "", "name": "get_weather"}]
    assert handlers.calls == {}


def _one_chat_call(completion_id: str, call: dict[str, Any]) -> Any:
    """A simulator middleware answering every chat completion with ``call`` alone, then
    ``finish_reason: "tool_calls"`` and ``[DONE]`` (JSON by the standard library: orjson stops
    at 64-bit integers)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": completion_id, "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    @web.middleware
    async def answer(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/chat/completions":
            return await handler(request)
        body = chunk({"role": "assistant", "tool_calls": [call]}) + chunk({}, "tool_calls")
        return await _answer_sse(request, body + b"data: [DONE]\n\n")

    return answer


async def _skipped_chat_call(
    start: StartTools, session: aiohttp.ClientSession, completion_id: str, call: dict[str, Any]
) -> tuple[dict[str, Any], Handlers]:
    """The ``runcast.tool_automation.skipped`` a completion asking for ``call`` ends with."""
    handlers = Handlers()
    tg = await start(
        handlers.registry("get_weather"), sim_middleware=_one_chat_call(completion_id, call)
    )
    async with sdk_client(tg.gateway) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Oslo?"}], tools=[WEATHER],
            stream=True,
        )  # fmt: skip
        [c async for c in stream]
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/chat/{completion_id}")
    assert "runcast.tool_automation.skipped" in channel.names
    skipped: dict[str, Any] = channel.events[
        channel.names.index("runcast.tool_automation.skipped")
    ].json()
    return skipped, handlers


@pytest.mark.asyncio
async def test_a_chat_call_without_an_id_is_reported_not_dropped(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    call = {"index": 0, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    skipped, handlers = await _skipped_chat_call(start, session, "chatcmpl-noid", call)
    assert "no id" in skipped["reason"] and handlers.calls == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("index", [10**9, -1, 2**70])
async def test_a_chat_call_at_an_index_runcast_cannot_place_is_reported(
    start: StartTools, session: aiohttp.ClientSession, index: int
) -> None:
    # The accumulator leaves such a call out (it never grows a list to a huge index): the
    # completion asked for tool calls and the chain stopped with no word of why.
    call = {"index": index, "id": "call_far", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}  # fmt: skip
    skipped, handlers = await _skipped_chat_call(start, session, "chatcmpl-far", call)
    assert "none runcast could read" in skipped["reason"] and skipped["calls"] == []
    assert handlers.calls == {}


@pytest.mark.asyncio
async def test_a_reconciled_tool_round_ends_the_chain(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    # Cut after the first argument fragment: runcast polls the stored response to its end and
    # publishes it, calls and all, but does not answer them (the chain ends with it).
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "drop_mid_tool_call", WEATHER)
        first = raw.headers["runcast-response-id"]
        seen = [event async for event in raw.parse()]
        channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{first}")
    assert channel.names[-2:] == ["runcast.recovered", "response.completed"]
    final = channel.events[-1].json()
    assert final["runcast_reconciled"] is True and final["response"]["id"] == first
    assert [item["type"] for item in final["response"]["output"]] == ["function_call"]
    assert seen[-1].type == "response.completed" and seen[-1].response.id == first
    assert handlers.calls == {}
    assert len(await _journal(session, tg, "/v1/responses")) == 1


def _chat_tools() -> list[Any]:
    return [WEATHER, CUSTOMER]


@pytest.mark.asyncio
@pytest.mark.parametrize("no_index", [False, True])
async def test_chat_parallel_calls_one_follow_up(
    start: StartTools, session: aiohttp.ClientSession, no_index: bool
) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather", "lookup_customer"))
    messages = [{"role": "user", "content": "Weather in Oslo, and who is customer 7?"}]
    metadata = {"mock_scenario": "parallel_tool_calls", "mock_no_index": str(no_index).lower()}
    async with sdk_client(tg.gateway) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=messages,  # type: ignore[arg-type]
            tools=_chat_tools(),
            metadata=metadata,
            stream=True,
        )
        first = raw.headers["runcast-completion-id"]
        chunks = [chunk async for chunk in raw.parse()]
        channel, ws = await _replay(session, f"{tg.gateway.url}/streams/chat/{first}")
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith("get_weather returned: ")
    assert "lookup_customer returned: customer" in content
    # The creator's copy leaves out the round runcast answered (from its first call on): the
    # SDK's helper would fold its calls into the final message. The channel has both rounds.
    assert len({c.id for c in chunks}) == 1 and chunks[0].id != first
    assert not any(choice.delta.tool_calls for c in chunks for choice in c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert handlers.calls == {"get_weather": 1, "lookup_customer": 1}

    bodies = await _journal(session, tg, "/v1/chat/completions")
    assert len(bodies) == 2
    follow_up = bodies[1]
    assert follow_up["messages"][0] == messages[0]
    assistant = follow_up["messages"][1]
    assert assistant["role"] == "assistant" and len(assistant["tool_calls"]) == 2
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert [m["role"] for m in follow_up["messages"][2:]] == ["tool", "tool"]
    assert [m["tool_call_id"] for m in follow_up["messages"][2:]] == ids
    assert follow_up["tools"] == _chat_tools() and follow_up["metadata"] == metadata
    assert follow_up["stream"] is True and follow_up["model"] == "gpt-4o"

    # One [DONE], at the very end; tool events between the completions, in the channel only.
    assert _parsed(channel.events) == _parsed(ws.events)
    assert [e.data for e in channel.events].count(b"[DONE]") == 1
    assert channel.events[-1].data == b"[DONE]"
    assert "runcast.tool_call.completed" in channel.names
    snapshot = await (await session.get(f"{tg.gateway.url}/streams/chat/{first}/snapshot")).json()
    assert snapshot["snapshot"]["completion"]["choices"][0]["message"]["content"] == content


@pytest.mark.asyncio
async def test_chat_stream_helper_ends_with_the_final_answer(start: StartTools) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with (
        sdk_client(tg.gateway) as sdk,
        sdk.chat.completions.stream(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
            metadata={"mock_scenario": "tool_call"},
        ) as stream,
    ):
        roles = [
            choice.delta.role
            async for event in stream
            if event.type == "chunk"
            for choice in event.chunk.choices
            if choice.delta.role
        ]
        completion = await stream.get_final_completion()
    # The simulator (as OpenAI) names the role with the first call: that chunk is held and
    # dropped once the round is answered, and the answer round's role is taken out (the SDK
    # would join two); the creator had no role at all.
    assert roles == ["assistant"] and completion.choices[0].message.role == "assistant"
    content = completion.choices[0].message.content
    assert content is not None and content.startswith("get_weather returned: ")
    assert completion.choices[0].finish_reason == "stop"
    # The round runcast answered is not in the creator's copy: the helper merges chunks by
    # choice index and would keep its calls next to the answer.
    assert not completion.choices[0].message.tool_calls
    assert handlers.calls == {"get_weather": 1}


@pytest.mark.asyncio
@pytest.mark.parametrize("strict", [False, True])
async def test_chat_stream_helper_over_two_rounds_gets_the_answer_alone(
    start: StartTools, strict: bool
) -> None:
    # Each round is choice 0 again and numbers its calls from 0 again: the helper glued the
    # rounds' calls into one ("call_Xcall_Y", arguments "{..}{..}", not JSON), and with strict
    # tools it raised parsing them.
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather", "lookup_customer"))
    tools = [{**tool, "function": {**tool["function"], "strict": strict}} for tool in _chat_tools()]
    async with (
        sdk_client(tg.gateway) as sdk,
        sdk.chat.completions.stream(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Weather in Oslo, and customer 7?"}],
            tools=tools,  # type: ignore[arg-type]
            metadata={"mock_scenario": "multi_round"},
        ) as stream,
    ):
        roles = [
            choice.delta.role
            async for event in stream
            if event.type == "chunk"
            for choice in event.chunk.choices
            if choice.delta.role
        ]
        completion = await stream.get_final_completion()
    message = completion.choices[0].message
    assert roles == ["assistant"] and message.role == "assistant"
    assert message.content and not message.tool_calls
    assert completion.choices[0].finish_reason == "stop"
    assert sum(handlers.calls.values()) >= 2


@pytest.mark.asyncio
async def test_a_failed_follow_up_post_ends_the_chain_as_lost_never_retried(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    follow_ups: list[bytes] = []

    @web.middleware
    async def refuse_follow_ups(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/v1/responses" and b"previous_response_id" in body:
            follow_ups.append(body)
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        return await handler(request)

    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"), sim_middleware=refuse_follow_ups)
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "tool_call", WEATHER)
        first = raw.headers["runcast-response-id"]
        with pytest.raises(APIError, match="runcast lost the upstream stream"):
            async for _ in raw.parse():
                pass
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{first}")
    assert channel.names[-4:] == [
        "response.completed",
        "runcast.tool_call.started",
        "runcast.tool_call.completed",
        "runcast.upstream_lost",
    ]
    assert len(follow_ups) == 1 and handlers.calls == {"get_weather": 1}


@pytest.mark.asyncio
async def test_failing_handler_output_and_round_limit(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    registry = Handlers().registry("lookup_customer")

    def get_weather(city: str) -> str:
        raise RuntimeError(f"no station in {city}")

    registry.register(get_weather)
    tg = await start(registry, max_rounds=1)
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "multi_round", WEATHER, CUSTOMER)
        first = raw.headers["runcast-response-id"]
        seen = [event async for event in raw.parse()]
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{first}")
    # Round 1: the failure is the output (on_error="output", as for Assistants).
    failed = next(e.json() for e in channel.events if e.event == "runcast.tool_call.failed")
    assert failed["name"] == "get_weather" and "no station in" in failed["error"]
    bodies = await _journal(session, tg, "/v1/responses")
    assert len(bodies) == 2
    assert orjson.loads(bodies[1]["input"][0]["output"]) == {"error": failed["error"]}
    # Round 2 would pass max_rounds: the chain ends with the second response and says why.
    second = [e.response for e in seen if e.type == "response.completed"][-1]
    assert second.id != first and [i.type for i in second.output] == ["function_call"]
    assert channel.names[-2:] == ["response.completed", "runcast.tool_automation.cancelled"]
    cancelled = channel.events[-1].json()
    assert cancelled == {
        "response_id": second.id,
        "reason": "tool round limit reached (1 submissions)",
    }


@pytest.mark.asyncio
async def test_conversation_chain_and_a_creator_that_leaves(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with sdk_client(tg.gateway) as sdk:
        conversation = await sdk.conversations.create()
        url = f"{tg.gateway.url}/streams/conversations/{conversation.id}"
        sub_response = await session.get(url)
        sub_task = asyncio.create_task(
            read_sse(
                sub_response,
                until=lambda e: e.event == "response.completed" and "returned:" in e.data.decode(),
            )
        )
        raw = await _create(sdk, "tool_call", WEATHER, conversation=conversation.id)
        await raw.http_response.aclose()  # the creator leaves at once; the chain goes on
        try:
            async with asyncio.timeout(WAIT):
                sub = await sub_task
        finally:
            sub_response.close()
    bodies = await _journal(session, tg, "/v1/responses")
    assert len(bodies) == 2
    assert bodies[1]["conversation"] == conversation.id
    assert "previous_response_id" not in bodies[1]
    ids = [e.json()["response"]["id"] for e in sub.events if e.event == "response.created"]
    assert len(ids) == 2 and "runcast.tool_call.completed" in sub.names
    assert handlers.calls == {"get_weather": 1}


@pytest.mark.asyncio
async def test_responses_creator_gets_tool_events_when_asked(start: StartTools) -> None:
    tg = await start(Handlers().registry("get_weather"), emit_tool_events_to_creator=True)
    async with sdk_client(tg.gateway) as sdk:
        stream = await sdk.responses.create(
            model="gpt-5",
            input="Weather in Oslo?",
            tools=[_responses_tool(WEATHER)],  # type: ignore[list-item]
            metadata={"mock_scenario": "tool_call"},
            stream=True,
        )
        seen = [event async for event in stream]
    types = [event.type for event in seen]
    first_end = types.index("response.completed")
    assert types[first_end + 1 : first_end + 4] == [
        "runcast.tool_call.started",
        "runcast.tool_call.completed",
        "response.created",
    ]
    started = seen[first_end + 1].model_dump()
    assert started["response_id"] == seen[0].response.id  # type: ignore[union-attr]
    assert started["name"] == "get_weather"
    assert types[-1] == "response.completed"
    assert seen[-1].response.output_text.startswith("get_weather returned:")  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_chat_creator_can_ask_for_the_first_completion_only(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    tg = await start(Handlers().registry("get_weather"))
    async with sdk_client(tg.gateway) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
            metadata={"mock_scenario": "tool_call"},
            stream=True,
            extra_headers={"Runcast-Creator-Stream": "first"},
        )
        first = raw.headers["runcast-completion-id"]
        body = await raw.http_response.aread()  # the whole body: it ends after the first
    assert body.endswith(b"data: [DONE]\n\n") and body.count(b"[DONE]") == 1
    assert b'"finish_reason":"tool_calls"' in body
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/chat/{first}")
    final = [e.json() for e in channel.events if e.data != b"[DONE]" and e.event == "message"]
    assert final[-1]["id"] != first and channel.events[-1].data == b"[DONE]"


@pytest.mark.asyncio
async def test_responses_chain_with_litellm_style_done_and_data_only_frames(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    tg = await start(Handlers().registry("get_weather"))
    wire = {"mock_scenario": "tool_call", "mock_done": "true", "mock_data_only": "true"}
    async with sdk_client(tg.gateway) as sdk:
        raw = await _create(sdk, "tool_call", WEATHER, metadata=wire)
        first = raw.headers["runcast-response-id"]
        seen = [event async for event in raw.parse()]
    # The first response's [DONE] is held back: the SDK stops reading at the first one.
    assert [e.type for e in seen].count("response.created") == 2
    assert seen[-1].type == "response.completed"
    assert seen[-1].response.output_text.startswith("get_weather returned:")
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/responses/{first}")
    assert [e.data for e in channel.events].count(b"[DONE]") == 1
    assert channel.events[-1].data == b"[DONE]"


@pytest.mark.asyncio
async def test_a_chat_round_left_to_the_app_reaches_the_creator_whole(start: StartTools) -> None:
    # Its copy is held from the first call on until the chain decides: here it stops (no
    # handler for lookup_customer), so the creator gets the calls to answer itself.
    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"))
    async with sdk_client(tg.gateway) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Weather in Oslo, and customer 7?"}],
            tools=_chat_tools(),  # type: ignore[arg-type]
            metadata={"mock_scenario": "parallel_tool_calls"},
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    names = {
        call.function.name
        for chunk in chunks
        for choice in chunk.choices
        for call in choice.delta.tool_calls or ()
        if call.function is not None and call.function.name
    }
    assert names == {"get_weather", "lookup_customer"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert handlers.calls == {}


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A chunk for ``_chat_rounds`` (which gives it its completion's id)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "created": 1700000000,
            "model": "llama3.1", "choices": choices, **extra}  # fmt: skip


def _chat_rounds(*rounds: list[dict[str, Any]]) -> Any:
    """A simulator middleware answering a chat completion after n rounds of tool outputs with the
    chunks of ``rounds[n]`` (ids ``chatcmpl-round<post>``, one per POST), then ``[DONE]``."""
    posts = itertools.count()

    @web.middleware
    async def answer(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/chat/completions":
            return await handler(request)
        messages = (await request.json())["messages"]
        n = len({m["tool_call_id"] for m in messages if m["role"] == "tool"})
        completion_id = f"chatcmpl-round{next(posts)}"
        frames = (
            b"data: " + json.dumps({**chunk, "id": completion_id}).encode() + b"\n\n"
            for chunk in rounds[n]
        )
        return await _answer_sse(request, b"".join(frames) + b"data: [DONE]\n\n")

    return answer


@pytest.mark.asyncio
async def test_a_chat_server_numbering_calls_per_round_is_answered_each_round(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    # Each round asks for call_1 again (ids numbered per round): the second round was skipped
    # as answered already, and the creator got its call to answer itself.
    tool_round = [_chunk({"role": "assistant", "tool_calls": [_whole_call("get_weather")]}),
                  _chunk({}, "tool_calls")]  # fmt: skip
    answer = [_chunk({"role": "assistant", "content": "Sunny twice."}), _chunk({}, "stop")]
    rounds = [tool_round, tool_round, answer]
    posts = itertools.count()

    @web.middleware
    async def per_round_ids(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/v1/chat/completions":
            return await handler(request)
        messages = (await request.json())["messages"]
        n = sum(1 for m in messages if m["role"] == "tool")
        completion_id = f"chatcmpl-round{next(posts)}"
        frames = (
            b"data: " + json.dumps({**chunk, "id": completion_id}).encode() + b"\n\n"
            for chunk in rounds[n]
        )
        return await _answer_sse(request, b"".join(frames) + b"data: [DONE]\n\n")

    handlers = Handlers()
    tg = await start(handlers.registry("get_weather"), sim_middleware=per_round_ids)
    message = (await _final_completion(tg)).choices[0].message
    assert message.content == "Sunny twice." and not message.tool_calls
    assert handlers.calls == {"get_weather": 2}
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/chat/chatcmpl-round0")
    assert "runcast.tool_automation.skipped" not in channel.names
    assert channel.names.count("runcast.tool_call.completed") == 2


def _whole_call(name: str) -> dict[str, Any]:
    """A whole tool call in one delta, as Ollama and llama.cpp send it."""
    return {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": name, "arguments": '{"city": "Oslo"}'}}  # fmt: skip


async def _final_completion(tg: ToolGateway, **extra: Any) -> Any:
    """The creator's completion as the SDK's stream helper puts it together, of one chat
    completion asked for through runcast (Oslo's weather, the tools offered)."""
    async with (
        sdk_client(tg.gateway) as sdk,
        sdk.chat.completions.stream(
            model="llama3.1", messages=[{"role": "user", "content": "Oslo?"}],
            tools=_chat_tools(), **extra,  # type: ignore[arg-type]
        ) as stream,
    ):  # fmt: skip
        async for _ in stream:
            pass
        return await stream.get_final_completion()


async def _creator_and_channel(
    tg: ToolGateway, session: aiohttp.ClientSession, **extra: Any
) -> tuple[list[Received], Subscriber]:
    """The creator's events (raw, ``id:`` lines and all) and the first channel's, of one chat
    completion created through runcast."""
    async with sdk_client(tg.gateway) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="llama3.1", messages=[{"role": "user", "content": "Oslo?"}],
            tools=_chat_tools(), stream=True, **extra,  # type: ignore[arg-type]
        )  # fmt: skip
        first = raw.headers["runcast-completion-id"]
        body = await raw.http_response.aread()
    channel, _ = await _replay(session, f"{tg.gateway.url}/streams/chat/{first}")
    return [Received.from_sse(sse) for sse in SSEDecoder().feed(body)], channel


@pytest.mark.asyncio
async def test_chunks_released_to_the_creator_carry_their_own_ids(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    # A call without an id (vLLM) is left to the app: the round held from that call on reaches
    # the creator, each chunk with its position in the channel (they all had the id of the
    # runcast.tool_automation.skipped published after them).
    call = {"index": 0, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    first_round = [
        _chunk({"role": "assistant", "content": None}),
        _chunk({"tool_calls": [call]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}]}),
        _chunk({}, "tool_calls"),
    ]
    tg = await start(Handlers().registry("get_weather"), sim_middleware=_chat_rounds(first_round))
    creator, channel = await _creator_and_channel(tg, session)
    assert channel.names[-2:] == ["runcast.tool_automation.skipped", "message"]
    upstream = [e for e in channel.events if not e.event.startswith("runcast.")]
    assert [(e.id, e.data) for e in creator] == [(e.id, e.data) for e in upstream]


@pytest.mark.asyncio
@pytest.mark.parametrize("tool", ["get_weather", "lookup_customer"])
async def test_text_said_with_the_first_call_reaches_the_creator(
    start: StartTools, session: aiohttp.ClientSession, tool: str
) -> None:
    # Ollama and llama.cpp send the text and the whole call in one delta: the creator gets the
    # text at once, as a chunk of its own, and the call only if the chain stops there (no
    # handler for lookup_customer); the text was dropped with the held call.
    said = {"role": "assistant", "content": "Let me check. ", "tool_calls": [_whole_call(tool)]}
    first_round = [_chunk(said), _chunk({}, "tool_calls")]
    answer = [_chunk({"role": "assistant", "content": "Sunny."}), _chunk({}, "stop")]
    tg = await start(
        Handlers().registry("get_weather"), sim_middleware=_chat_rounds(first_round, answer)
    )
    message = (await _final_completion(tg)).choices[0].message
    assert message.role == "assistant"  # each round names it: the creator gets it once
    if tool == "get_weather":
        assert message.content == "Let me check. Sunny." and not message.tool_calls
    else:
        assert message.content == "Let me check. "
        assert [c.function.name for c in message.tool_calls or ()] == ["lookup_customer"]

    creator, channel = await _creator_and_channel(tg, session)
    turn = channel.events[0]  # the channel has the chunk as the upstream sent it
    assert turn.json()["choices"][0]["delta"] == said
    text = creator[0].json()
    assert text["choices"][0]["delta"] == {"role": "assistant", "content": "Let me check. "}
    # The channel's event at turn.id is whole only with its calls: the text has no id of its
    # own (a creator resuming from turn.id would miss the calls), the released calls have it.
    assert creator[0].id is None
    if tool == "lookup_customer":
        assert creator[1].id == turn.id and "tool_calls" in creator[1].json()["choices"][0]["delta"]
    else:
        assert "role" not in creator[1].json()["choices"][0]["delta"]  # the answer round's
    assert {k: v for k, v in text.items() if k != "choices"} == {
        k: v for k, v in turn.json().items() if k != "choices"
    }


@pytest.mark.asyncio
async def test_the_creators_usage_is_the_whole_chains(
    start: StartTools, session: aiohttp.ClientSession
) -> None:
    # The upstream billed both rounds; the creator sees one completion, whose usage was the
    # last round's alone.
    def usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning}}  # fmt: skip

    first_round = [
        _chunk({"role": "assistant", "content": None, "tool_calls": [_whole_call("get_weather")]},
               usage=None),
        _chunk({}, "tool_calls", usage=None),
        _chunk(None, usage=usage(40, 10, 8, 4)),
    ]  # fmt: skip
    answer = [
        _chunk({"role": "assistant", "content": "Sunny."}, usage=None),
        _chunk({}, "stop", usage=None),
        _chunk(None, usage=usage(50, 5, 32, 0)),
    ]
    tg = await start(
        Handlers().registry("get_weather"), sim_middleware=_chat_rounds(first_round, answer)
    )
    include = {"stream_options": {"include_usage": True}}
    final = await _final_completion(tg, **include)
    assert final.usage is not None
    assert final.usage.model_dump(exclude_none=True) == usage(90, 15, 40, 4)

    creator, channel = await _creator_and_channel(tg, session, **include)
    billed = [e.json()["usage"] for e in creator if e.data != b"[DONE]" and e.json()["usage"]]
    assert billed == [usage(90, 15, 40, 4)]
    # The channel has each completion's usage as the upstream sent it.
    sent = [
        e.json()["usage"] for e in channel.events if e.event == "message" and e.data != b"[DONE]"
    ]
    assert [u for u in sent if u] == [usage(40, 10, 8, 4), usage(50, 5, 32, 0)]
