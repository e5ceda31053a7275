"""The simulated Chat Completions API against the official openai SDK and runcast's parsers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from mock_helpers import MockServer, StartMock
from openai import AsyncOpenAI
from proto_helpers import (
    AUTH,
    FLAT_TIME,
    FLAT_WEATHER,
    chat_events,
    chunks,
    nested,
    payloads,
    post_raw,
    reduce_chat,
)

from parsers.chat import ChatDoneEvent, ChatErrorEvent

TOOLS = [nested(FLAT_WEATHER), nested(FLAT_TIME)]
USER = [{"role": "user", "content": "Weather and time in Oslo?"}]


def body(scenario: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "gpt-4o", "messages": USER, "stream": True, **extra}
    if scenario is not None:
        out["metadata"] = {"mock_scenario": scenario}
    return out


@pytest.mark.asyncio
async def test_sdk_create_stream_with_usage(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    got = [chunk async for chunk in stream]
    assert got[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in got}) == 1 and len({c.created for c in got}) == 1
    assert [c.usage for c in got[:-1]] == [None] * (len(got) - 1)
    last = got[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert got[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert last.usage.completion_tokens == 6 * 2 and text


@pytest.mark.parametrize(
    ("scenario", "calls"),
    [("tool_call", ["get_weather"]), ("parallel_tool_calls", ["get_weather", "get_time"])],
)
@pytest.mark.asyncio
async def test_stream_helper_tool_calls_then_answer(
    sdk: AsyncOpenAI, scenario: str, calls: list[str]
) -> None:
    async with sdk.chat.completions.stream(
        model="gpt-4o",
        messages=USER,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        metadata={"mock_scenario": scenario},
    ) as stream:
        done = [e.name async for e in stream if e.type == "tool_calls.function.arguments.done"]
        first = await stream.get_final_completion()
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and done == calls
    tool_calls = choice.message.tool_calls or []
    assert [c.function.name for c in tool_calls] == calls  # type: ignore[union-attr]
    for call in tool_calls:
        json.loads(call.function.arguments)  # type: ignore[union-attr]
    messages: list[Any] = [
        *USER,
        choice.message.model_dump(exclude_none=True, exclude={"parsed"}),
        *(
            {"role": "tool", "tool_call_id": c.id, "content": f"out {c.function.name}"}  # type: ignore[union-attr]
            for c in tool_calls
        ),
    ]
    async with sdk.chat.completions.stream(
        model="gpt-4o",
        messages=messages,
        tools=TOOLS,
        metadata={"mock_scenario": scenario},  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    answer = final.choices[0].message.content or ""
    assert answer.startswith("".join(f"{name} returned: out {name}\n\n" for name in calls))
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "scenario", ["text", "tool_call", "parallel_tool_calls", "incomplete", "failed", "error"]
)
@pytest.mark.asyncio
async def test_streams_parse_and_reduce_to_the_joined_chunks(
    server: MockServer, session: aiohttp.ClientSession, scenario: str
) -> None:
    status, raw = await post_raw(
        session,
        server.base_url + "/chat/completions",
        body(scenario, tools=TOOLS, stream_options={"include_usage": True}),
    )
    assert status == 200
    assert b"event:" not in raw
    events = chat_events(raw, seed=len(raw))
    completion = reduce_chat(events)["completion"]
    data = payloads(raw)
    if scenario in ("failed", "error"):
        assert isinstance(events[-2 if scenario == "failed" else -1], ChatErrorEvent)
        assert raw.endswith(b"data: [DONE]\n\n") == (scenario == "failed")
        return
    assert isinstance(events[-1], ChatDoneEvent)
    (choice,) = completion["choices"]
    deltas = [p["choices"][0]["delta"] for p in data if p["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    assert (choice["message"].get("content") or "") == content
    fragments: dict[int, str] = {}
    for d in deltas:
        for call in d.get("tool_calls", []):
            fragments[call["index"]] = (
                fragments.get(call["index"], "") + call["function"]["arguments"]
            )
    calls = choice["message"].get("tool_calls") or []
    assert [c["function"]["arguments"] for c in calls] == [fragments[i] for i in sorted(fragments)]
    expected = {"incomplete": "length", "text": "stop"}.get(scenario, "tool_calls")
    assert choice["finish_reason"] == expected
    assert completion["usage"] == data[-1]["usage"]


@pytest.mark.asyncio
async def test_non_streamed_completion_matches_a_stream(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        tools=TOOLS,
        metadata={"mock_scenario": "tool_call"},  # type: ignore[arg-type]
    )
    assert completion.object == "chat.completion"
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    plain = await sdk.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=USER, stream=True)  # type: ignore[arg-type]
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert plain.choices[0].message.content == text  # same seed, same words


@pytest.mark.asyncio
async def test_sdk_raises_on_error_chunk_and_drop(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        metadata={"mock_scenario": "error"},  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APIError, match="server had an error"):
        async for _ in stream:
            pass
    stream = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        metadata={"mock_scenario": "drop"},  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


@pytest.mark.parametrize("scenario", ["drop", "drop_mid_tool_call", "drop_after_requires_action"])
@pytest.mark.asyncio
async def test_drop_scenarios_cut_before_done(
    server: MockServer, session: aiohttp.ClientSession, scenario: str
) -> None:
    _, raw = await post_raw(
        session, server.base_url + "/chat/completions", body(scenario, tools=TOOLS)
    )
    assert raw and not raw.endswith(b"data: [DONE]\n\n")
    last = payloads(raw)[-1]["choices"][0]
    if scenario == "drop_mid_tool_call":
        assert "arguments" in last["delta"]["tool_calls"][0]["function"]
        assert last["finish_reason"] is None
    elif scenario == "drop_after_requires_action":
        assert last["finish_reason"] == "tool_calls"
    else:
        assert last["delta"]["content"] and last["finish_reason"] is None


@pytest.mark.asyncio
async def test_message_rules(sdk: AsyncOpenAI) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_1"):
        await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[*USER, {"role": "assistant", "tool_calls": [call]}],  # type: ignore[list-item]
        )
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding"):
        await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[*USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],  # type: ignore[list-item]
        )
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            metadata={"mock_scenario": "rate_limited"},  # type: ignore[arg-type]
        )


@pytest.mark.asyncio
async def test_scenario_header_alternative(
    server: MockServer, session: aiohttp.ClientSession
) -> None:
    _, raw = await post_raw(
        session,
        server.base_url + "/chat/completions",
        body(tools=TOOLS),
        headers={"X-Mock-Scenario": "tool_call"},
    )
    completion = reduce_chat(chat_events(raw))["completion"]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert len(chunks(chat_events(raw))) > 3


@pytest.mark.asyncio
async def test_generation_stops_when_the_client_leaves(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(delay_ms=20.0, deltas=1_000)
    engine = server.service.engine
    async with session.post(server.base_url + "/chat/completions", json=body(), headers=AUTH) as r:
        assert await r.content.readline()
        assert engine.statistics().active_runs == 1
    async with asyncio.timeout(5):  # well before the 20 s the whole completion would take
        while engine.statistics().active_runs:
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_multi_round_tool_loop_with_the_sdk(sdk: AsyncOpenAI) -> None:
    """Two rounds read from the messages (chat is stateless), then the answer quoting both."""
    messages: list[Any] = list(USER)
    names = []
    for _ in range(2):
        completion = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            tools=TOOLS,
            metadata={"mock_scenario": "multi_round"},  # type: ignore[arg-type]
        )
        message = completion.choices[0].message
        (call,) = message.tool_calls or []
        names.append(call.function.name)  # type: ignore[union-attr]
        messages += [
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": f"{len(names)}"},
        ]
    assert names == ["get_weather", "get_time"]
    async with sdk.chat.completions.stream(
        model="gpt-4o",
        messages=messages,
        tools=TOOLS,
        metadata={"mock_scenario": "multi_round"},  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    answer = final.choices[0].message.content or ""
    assert answer.startswith("get_weather returned: 1\n\nget_time returned: 2\n\n")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        # A message key of the wrong type was a plain-text 500 (or, for a string, read as
        # calls): the simulator iterated it and read each call's function with .get().
        ({"messages": [*USER, {"role": "assistant", "tool_calls": 5}]}, "messages[1].tool_calls"),
        (
            {"messages": [*USER, {"role": "assistant", "tool_calls": True}]},
            "messages[1].tool_calls",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "tool_calls": "call_1"}]},
            "messages[1].tool_calls",
        ),
        (
            {
                "messages": [
                    *USER,
                    {"role": "assistant", "tool_calls": [{"id": "a", "function": "f"}]},
                ]
            },
            "messages[1].tool_calls[0].function",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "tool_calls": [{"function": ["f"]}]}]},
            "messages[1].tool_calls[0].function",
        ),
        ({"messages": [*USER, {"role": "tool", "tool_call_id": 7}]}, "messages[1].tool_call_id"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
        # OpenAI: "integer below minimum value", 0 included.
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ],
)
@pytest.mark.asyncio
async def test_bad_bodies_are_400s_naming_the_param(
    server: MockServer, session: aiohttp.ClientSession, extra: dict[str, Any], param: str
) -> None:
    status, raw = await post_raw(session, server.base_url + "/chat/completions", body(**extra))
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
