"""The simulated Responses API against the official openai SDK and runcast's own parsers."""

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
    get_raw,
    payloads,
    post_raw,
    reduce_responses,
    response_events,
)

from gateway.mock.responses import RESPONSES_KEY
from parsers.responses import (
    ErrorEvent,
    ResponseCompletedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
)

TERMINAL = (ResponseCompletedEvent, ResponseFailedEvent, ResponseIncompleteEvent)


def body(scenario: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "gpt-5", "input": "Weather in Oslo?", "stream": True, **extra}
    if scenario is not None:
        out["metadata"] = {"mock_scenario": scenario}
    return out


def seqs(raw: bytes) -> list[int]:
    return [p["sequence_number"] for p in payloads(raw)]


def joined_text(raw: bytes) -> str:
    return "".join(p["delta"] for p in payloads(raw) if p["type"] == "response.output_text.delta")


@pytest.mark.parametrize(
    ("scenario", "status"),
    [("text", "completed"), ("incomplete", "incomplete"), ("failed", "failed")],
)
@pytest.mark.asyncio
async def test_sdk_create_stream_scenarios(sdk: AsyncOpenAI, scenario: str, status: str) -> None:
    stream = await sdk.responses.create(
        model="gpt-5", input="Hi", stream=True, metadata={"mock_scenario": scenario}
    )
    events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    last = events[-1]
    assert last.type == f"response.{status}"
    assert last.response.status == status  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas
    if status != "failed":
        assert last.response.output_text == deltas  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_sdk_stream_raises_on_error_event(sdk: AsyncOpenAI) -> None:
    stream = await sdk.responses.create(
        model="gpt-5", input="Hi", stream=True, metadata={"mock_scenario": "error"}
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="server had an error"):
        async for event in stream:
            seen.append(event.type)
    assert seen[-1] == "response.output_text.delta"


@pytest.mark.parametrize(
    "scenario", ["text", "tool_call", "parallel_tool_calls", "incomplete", "failed", "error"]
)
@pytest.mark.asyncio
async def test_streams_parse_and_reduce_to_the_final_response(
    server: MockServer, session: aiohttp.ClientSession, scenario: str
) -> None:
    tools = [FLAT_WEATHER, FLAT_TIME]
    status, raw = await post_raw(
        session, server.base_url + "/responses", body(scenario, tools=tools)
    )
    assert status == 200
    events = response_events(raw, seed=len(raw))
    numbers = [e.sequence_number for e in events]  # type: ignore[union-attr]
    assert numbers == list(range(len(events)))
    if scenario == "error":
        assert isinstance(events[-1], ErrorEvent)
        snapshot = reduce_responses(events)
        assert snapshot["error"]["code"] == "server_error" and not snapshot["done"]
        return
    terminal = events[-1]
    assert isinstance(terminal, TERMINAL)
    before = reduce_responses(events[:-1])["response"]
    final = reduce_responses(events)["response"]
    wire = payloads(raw)[-1]["response"]
    assert final["status"] == wire["status"]
    if scenario == "failed":  # a failed response carries no output (as recorded); the reducer
        # keeps what the deltas said
        assert wire["output"] == [] and wire["error"]["code"] == "server_error"
        (item,) = final["output"]
        assert item["content"][0]["text"] == joined_text(raw)
        return
    assert before["output"] == wire["output"] == final["output"]
    calls = [item for item in wire["output"] if item["type"] == "function_call"]
    assert len(calls) == {"tool_call": 1, "parallel_tool_calls": 2}.get(scenario, 0)


@pytest.mark.asyncio
async def test_responses_stream_helper_final_response(sdk: AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="gpt-5", input="Hi") as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(deltas)
    stored = await sdk.responses.retrieve(final.id)
    assert stored.output_text == final.output_text and stored.usage is not None


@pytest.mark.asyncio
async def test_function_call_loop_reaches_the_final_answer(sdk: AsyncOpenAI) -> None:
    """multi_round: two rounds of calls chained by previous_response_id, then the answer quoting
    both outputs. The scenario is named once; follow-ups inherit it."""
    async with sdk.responses.stream(
        model="gpt-5",
        input="Weather and time in Oslo?",
        tools=[FLAT_WEATHER, FLAT_TIME],  # type: ignore[list-item]
        metadata={"mock_scenario": "multi_round"},
    ) as stream:
        first = await stream.get_final_response()
    outputs = {"get_weather": '{"temp": 4}', "get_time": "12:00"}
    response = first
    names = []
    for _ in range(2):
        (call,) = [item for item in response.output if item.type == "function_call"]
        names.append(call.name)
        async with sdk.responses.stream(
            model="gpt-5",
            previous_response_id=response.id,
            input=[
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": outputs[call.name],
                }
            ],
            tools=[FLAT_WEATHER, FLAT_TIME],  # type: ignore[list-item]
        ) as stream:
            response = await stream.get_final_response()
        assert response.previous_response_id is not None
    assert names == ["get_weather", "get_time"]
    text = response.output_text
    assert text.startswith('get_weather returned: {"temp": 4}\n\nget_time returned: 12:00\n\n')


@pytest.mark.asyncio
async def test_parallel_calls_need_every_output(sdk: AsyncOpenAI) -> None:
    first = await sdk.responses.create(
        model="gpt-5",
        input="Both?",
        tools=[FLAT_WEATHER, FLAT_TIME],  # type: ignore[list-item]
        metadata={"mock_scenario": "parallel_tool_calls"},
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    with pytest.raises(openai.BadRequestError, match=f"No tool output found .* {calls[1].call_id}"):
        await sdk.responses.create(
            model="gpt-5",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "a"}],
        )
    final = await sdk.responses.create(
        model="gpt-5",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": c.name.upper()}
            for c in calls
        ],
    )
    assert "get_weather returned: GET_WEATHER" in final.output_text
    assert "get_time returned: GET_TIME" in final.output_text


@pytest.mark.asyncio
async def test_background_drop_then_resume_has_no_gap_and_no_duplicate(
    server: MockServer, session: aiohttp.ClientSession, sdk: AsyncOpenAI
) -> None:
    status, raw = await post_raw(
        session, server.base_url + "/responses", body("drop", background=True)
    )
    assert status == 200
    first = payloads(raw)
    assert first[0]["response"]["status"] == "queued" and first[0]["response"]["background"]
    assert first[-1]["type"] == "response.output_text.delta"  # cut mid-answer
    last = first[-1]["sequence_number"]
    response_id = first[0]["response"]["id"]
    stream = await sdk.responses.retrieve(response_id, stream=True, starting_after=last)
    rest = [event async for event in stream]
    numbers = [p["sequence_number"] for p in first] + [e.sequence_number for e in rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].type == "response.completed"
    text = joined_text(raw) + "".join(
        e.delta for e in rest if e.type == "response.output_text.delta"
    )
    assert rest[-1].response.output_text == text
    # The stream helper asks for the whole replay and drops what it had locally.
    async with sdk.responses.stream(response_id=response_id, starting_after=last) as helper:
        tail = [event.sequence_number async for event in helper]
        final = await helper.get_final_response()
    assert tail == [e.sequence_number for e in rest] and final.output_text == text


@pytest.mark.parametrize("cut", [1, 5])
@pytest.mark.asyncio
async def test_drop_after_a_sequence_number_then_resume_raw(
    server: MockServer, session: aiohttp.ClientSession, cut: int
) -> None:
    extra = {"background": True, "metadata": {"mock_drop_after": str(cut)}}
    _, raw = await post_raw(session, server.base_url + "/responses", body(**extra))
    assert seqs(raw) == list(range(cut + 1))
    response_id = payloads(raw)[0]["response"]["id"]
    url = f"{server.base_url}/responses/{response_id}?stream=true&starting_after={cut}"
    status, rest = await get_raw(session, url)
    assert status == 200
    events = response_events(raw + rest)
    assert [e.sequence_number for e in events] == list(range(len(events)))  # type: ignore[union-attr]
    assert isinstance(events[-1], ResponseCompletedEvent)
    full_status, full = await get_raw(session, url.split("&")[0])  # from 0: the same bytes
    assert full_status == 200 and full == raw + rest


@pytest.mark.asyncio
async def test_late_reader_replays_then_follows_live(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(delay_ms=20.0, deltas=10)
    created = await server_json(session, server, body(stream=False, background=True))
    assert created["status"] == "queued"
    await asyncio.sleep(0.1)  # a few events are already stored
    url = f"{server.base_url}/responses/{created['id']}?stream=true"
    status, raw = await get_raw(session, url)
    assert status == 200
    events = response_events(raw)
    assert [e.sequence_number for e in events] == list(range(len(events)))  # type: ignore[union-attr]
    assert isinstance(events[-1], ResponseCompletedEvent)


async def server_json(
    session: aiohttp.ClientSession, server: MockServer, payload: dict[str, Any]
) -> dict[str, Any]:
    status, raw = await post_raw(session, server.base_url + "/responses", payload)
    assert status == 200, raw
    data: dict[str, Any] = json.loads(raw)
    return data


@pytest.mark.asyncio
async def test_restreaming_refusals(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock(stream_window_s=0.2)
    foreground = await server_json(session, server, body(stream=False))
    status, raw = await get_raw(
        session, f"{server.base_url}/responses/{foreground['id']}?stream=true"
    )
    assert status == 400 and b"not created with background=true" in raw
    background = await server_json(session, server, body(stream=False, background=True))
    await asyncio.sleep(0.3)
    status, raw = await get_raw(
        session, f"{server.base_url}/responses/{background['id']}?stream=true&starting_after=2"
    )
    assert status == 400 and b"can no longer be streamed" in raw


@pytest.mark.asyncio
async def test_cancel_background_response(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(delay_ms=50.0, deltas=100)
    sdk = AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    try:
        created = await sdk.responses.create(model="gpt-5", input="Hi", background=True)
        assert created.status == "queued"
        stream = await sdk.responses.retrieve(created.id, stream=True)
        seen = []
        async for event in stream:
            seen.append(event.type)
            if event.type == "response.output_text.delta":
                cancelled = await sdk.responses.cancel(created.id)
                assert cancelled.status == "cancelled"
        assert "response.completed" not in seen  # the stream ended without a terminal event
        again = await sdk.responses.cancel(created.id)
        assert again.status == "cancelled"
        assert (await sdk.responses.retrieve(created.id)).status == "cancelled"
        # A foreground response cannot be cancelled (its first event names it: no need to wait
        # for its 100 paced deltas).
        foreground = await sdk.responses.create(model="gpt-5", input="Hi", stream=True)
        async for event in foreground:
            assert event.type == "response.created"
            with pytest.raises(openai.BadRequestError, match="background=true"):
                await sdk.responses.cancel(event.response.id)
            break
        await foreground.close()
    finally:
        await sdk.close()


@pytest.mark.asyncio
async def test_background_poll_until_completed(sdk: AsyncOpenAI) -> None:
    created = await sdk.responses.create(model="gpt-5", input="Hi", background=True)
    async with asyncio.timeout(5):
        while (response := await sdk.responses.retrieve(created.id)).status in (
            "queued",
            "in_progress",
        ):
            await asyncio.sleep(0.01)
    assert response.status == "completed" and response.output_text


@pytest.mark.asyncio
async def test_conversation_carries_the_turn(sdk: AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create()
    first = await sdk.responses.create(
        model="gpt-5",
        input="Weather?",
        conversation=conversation.id,
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
        metadata={"mock_scenario": "tool_call"},
    )
    assert first.conversation is not None and first.conversation.id == conversation.id
    (call,) = first.output
    assert call.type == "function_call"
    final = await sdk.responses.create(
        model="gpt-5",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
        conversation=conversation.id,
        tools=[FLAT_WEATHER],  # type: ignore[list-item]
        metadata={"mock_scenario": "tool_call"},
    )
    assert final.output_text.startswith("get_weather returned: rain\n\n")
    items = await sdk.conversations.items.list(conversation.id)
    kinds = [item.type for item in items.data]
    assert kinds == ["message", "function_call", "function_call_output", "message"]


@pytest.mark.asyncio
async def test_request_refusals(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="Previous response with id 'resp_nope'"):
        await sdk.responses.create(model="gpt-5", input="Hi", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive"):
        await sdk.responses.create(
            model="gpt-5", input="Hi", previous_response_id="resp_x", conversation="conv_x"
        )
    unstored = await sdk.responses.create(model="gpt-5", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(unstored.id)
    with pytest.raises(openai.RateLimitError):
        await sdk.responses.create(
            model="gpt-5", input="Hi", metadata={"mock_scenario": "rate_limited"}
        )
    with pytest.raises(openai.InternalServerError):
        await sdk.responses.create(
            model="gpt-5", input="Hi", metadata={"mock_scenario": "server_error"}
        )
    with pytest.raises(openai.BadRequestError, match="Unknown mock_scenario"):
        await sdk.responses.create(model="gpt-5", input="Hi", metadata={"mock_scenario": "nope"})
    with pytest.raises(openai.InternalServerError):  # a non-streamed `error` is a 500
        await sdk.responses.create(model="gpt-5", input="Hi", metadata={"mock_scenario": "error"})


@pytest.mark.parametrize(
    ("scenario", "last_type"),
    [
        ("drop_mid_tool_call", "response.function_call_arguments.delta"),
        ("drop_after_requires_action", "response.output_item.done"),
    ],
)
@pytest.mark.asyncio
async def test_tool_drop_scenarios_cut_the_first_stream_only(
    server: MockServer, session: aiohttp.ClientSession, scenario: str, last_type: str
) -> None:
    payload = body(scenario, background=True, tools=[FLAT_WEATHER])
    _, raw = await post_raw(session, server.base_url + "/responses", payload)
    first = payloads(raw)
    assert first[-1]["type"] == last_type
    response_id = first[0]["response"]["id"]
    url = f"{server.base_url}/responses/{response_id}?stream=true&starting_after={len(first) - 1}"
    _, rest = await get_raw(session, url)
    completed = payloads(rest)[-1]["response"]
    (call,) = completed["output"]
    assert completed["status"] == "completed" and call["type"] == "function_call"
    # The follow-up (second round) streams whole: the drop is for the first stream only.
    follow = {
        "model": "gpt-5",
        "stream": True,
        "previous_response_id": response_id,
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}],
    }
    _, raw = await post_raw(session, server.base_url + "/responses", follow)
    assert payloads(raw)[-1]["type"] == "response.completed"


@pytest.mark.asyncio
async def test_slow_start_holds_the_status_line(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(slow_start_ms=300.0)
    loop = asyncio.get_running_loop()
    for path, payload in (
        ("/responses", body("slow_start")),
        (
            "/chat/completions",
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": True,
                "metadata": {"mock_scenario": "slow_start"},
            },
        ),
    ):
        started = loop.time()
        async with session.post(server.base_url + path, json=payload, headers=AUTH) as resp:
            waited = loop.time() - started
            assert resp.status == 200 and waited >= 0.25
            assert (await resp.read()).count(b"\n\n") > 6


@pytest.mark.asyncio
async def test_frames_are_released_after_the_window(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(stream_window_s=0.2)
    store = server.runner.app[RESPONSES_KEY].store
    old = await server_json(session, server, body(stream=False, background=True))
    async with asyncio.timeout(5):
        while (record := store.responses.get(old["id"])) is None or not record.log.closed:
            await asyncio.sleep(0.01)
    held = record.log.held
    assert held > 10
    await asyncio.sleep(0.25)
    new = await server_json(session, server, body(stream=False, background=True))
    assert record.log.held == 0
    new_record = store.responses.get(new["id"])
    assert new_record is not None and new_record.log.retain
    status, raw = await get_raw(session, f"{server.base_url}/responses/{old['id']}")
    assert status == 200 and json.loads(raw)["status"] == "completed"


@pytest.mark.asyncio
async def test_foreground_response_goes_on_after_a_drop(
    server: MockServer, session: aiohttp.ClientSession, sdk: AsyncOpenAI
) -> None:
    _, raw = await post_raw(session, server.base_url + "/responses", body("drop"))
    first = payloads(raw)
    assert first[-1]["type"] == "response.output_text.delta"
    response_id = first[0]["response"]["id"]
    async with asyncio.timeout(5):
        while (response := await sdk.responses.retrieve(response_id)).status != "completed":
            await asyncio.sleep(0.01)
    received = joined_text(raw)
    assert response.output_text.startswith(received) and len(response.output_text) > len(received)


@pytest.mark.asyncio
async def test_unstored_responses_and_old_conversation_items_are_not_kept(
    start_mock: StartMock,
) -> None:
    server = await start_mock(max_messages_per_thread=6)
    store = server.runner.app[RESPONSES_KEY].store
    sdk = AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    try:
        kept = await sdk.responses.create(model="gpt-5", input="Hi")
        for _ in range(3):  # never retrievable: nothing holds their output once they end
            await sdk.responses.create(model="gpt-5", input="Hi", store=False)
        streamed = await sdk.responses.create(model="gpt-5", input="Hi", store=False, stream=True)
        async for _ in streamed:
            pass
        assert [record.response.id for record in store.responses.values()] == [kept.id]
        conversation = await sdk.conversations.create()
        for turn in range(5):
            await sdk.responses.create(
                model="gpt-5", input=f"turn {turn}", conversation=conversation.id
            )
        items = await sdk.conversations.items.list(conversation.id, limit=100)
        assert len(items.data) == 6  # the latest, as a thread keeps its latest messages
    finally:
        await sdk.close()


@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        (
            "/responses",
            body(input=[{"type": ["message"], "role": "user", "content": "hi"}]),
            "input[0].type",
        ),
        (
            "/responses",
            body(input=[{"type": "function_call_output", "call_id": 5, "output": "x"}]),
            "input[0].call_id",
        ),
        # An item's type was a dict key: a list there was a plain-text 500.
        ("/conversations", {"items": [{"type": ["message"], "content": "hi"}]}, "items[0].type"),
        ("/conversations", {"items": [{"role": {"is": "user"}, "content": "hi"}]}, "items[0].role"),
    ],
)
@pytest.mark.asyncio
async def test_an_item_key_of_the_wrong_type_is_a_400(
    server: MockServer,
    session: aiohttp.ClientSession,
    path: str,
    payload: dict[str, Any],
    param: str,
) -> None:
    status, raw = await post_raw(session, server.base_url + path, payload)
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.asyncio
async def test_a_malformed_item_is_refused_before_it_reaches_a_conversation(
    server: MockServer, session: aiohttp.ClientSession
) -> None:
    # It was answered 200, then the driver crashed on it at the end: the conversation never
    # took in that response's items.
    status, raw = await post_raw(session, server.base_url + "/conversations", {})
    conversation = json.loads(raw)["id"]
    bad = [{"type": ["message"], "role": "user", "content": "hi"}]
    status, raw = await post_raw(
        session, server.base_url + "/responses", body(conversation=conversation, input=bad)
    )
    assert status == 400 and json.loads(raw)["error"]["param"] == "input[0].type"
    await server_json(session, server, body(stream=False, conversation=conversation))
    status, raw = await get_raw(session, f"{server.base_url}/conversations/{conversation}/items")
    items = json.loads(raw)["data"]
    assert [(item["type"], item["role"]) for item in items] == [
        ("message", "user"),
        ("message", "assistant"),
    ]


@pytest.mark.parametrize("value", ["1_0", "%2B5", "%205", "%EF%BC%95", "0x10", "9" * 19])
@pytest.mark.asyncio
async def test_starting_after_is_ascii_digits(
    server: MockServer, session: aiohttp.ClientSession, value: str
) -> None:
    # As runcast reads it (gateway/http/retrieve.py); int() also took these.
    response_id = (await server_json(session, server, body(stream=False, background=True)))["id"]
    url = f"{server.base_url}/responses/{response_id}?stream=true&starting_after="
    status, raw = await get_raw(session, url + value)
    assert status == 400 and json.loads(raw)["error"]["param"] == "starting_after"
    status, raw = await get_raw(session, url + "-1")
    assert status == 200 and seqs(raw)[0] == 0
