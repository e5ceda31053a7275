"""Stream fidelity: event order, objects and transitions per scenario, checked over real sockets.

Each stream is compared with the spec's byte-exact fixtures (event sequence and object keys) and
every payload is validated against the official openai SDK's pydantic types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from mock_helpers import (
    SSE,
    TIME_TOOL,
    WEATHER_TOOL,
    MockAPI,
    collapse,
    last_run,
    message_text,
    parse_sse,
)
from openai.types.beta import AssistantStreamEvent

# The protocol fixtures live in shared/ beside the repository (as CI lays it out).
FIXTURES = (
    Path(__file__).resolve().parents[3].parent / "shared" / "spec" / "fixtures" / "assistants"
)
SDK_EVENT = pydantic.TypeAdapter(AssistantStreamEvent)

TEXT_EVENTS = [
    "thread.run.step.created",
    "thread.run.step.in_progress",
    "thread.message.created",
    "thread.message.in_progress",
    "thread.message.delta",
]
START = ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]


def fixture(name: str) -> list[SSE]:
    return parse_sse((FIXTURES / name).read_bytes())


def sdk_validate(events: list[SSE]) -> None:
    """Every payload fits the official SDK's strict (validating) models."""
    for event in events:
        if event.event == "done":
            assert event.data == "[DONE]"
            continue
        SDK_EVENT.validate_python({"event": event.event, "data": event.json()})


def names(events: list[SSE]) -> list[str]:
    return [e.event for e in events]


def keys_by_event(events: list[SSE]) -> dict[str, set[str]]:
    return {e.event: set(e.json()) for e in events if e.event not in ("done", "error")}


async def tool_run(api: MockAPI, *tools: dict[str, Any], scenario: str) -> tuple[str, list[SSE]]:
    assistant = await api.assistant(*tools)
    thread = await api.thread()
    return thread["id"], await api.run_stream(thread["id"], assistant["id"], scenario)


@pytest.mark.asyncio
async def test_text_stream_matches_fixture_a(api: MockAPI) -> None:
    assistant = await api.assistant()
    thread = await api.thread()
    events = await api.run_stream(thread["id"], assistant["id"])
    reference = fixture("A-text.sse")
    assert collapse(names(events)) == collapse(names(reference))
    assert names(events).count("thread.message.delta") == 6
    assert keys_by_event(events) == keys_by_event(reference)
    sdk_validate(events)
    deltas = [e.json() for e in events if e.event == "thread.message.delta"]
    assert deltas[0]["delta"]["content"][0]["text"]["annotations"] == []
    assert all("annotations" not in d["delta"]["content"][0]["text"] for d in deltas[1:])
    completed = next(e.json() for e in events if e.event == "thread.message.completed")
    assert completed["content"][0]["text"]["value"] == message_text(events)
    created = events[0].json()
    assert created["expires_at"] == created["created_at"] + 600
    final = last_run(events)
    assert final["status"] == "completed"
    assert final["expires_at"] is None and final["completed_at"] is not None
    step = next(e.json() for e in events if e.event == "thread.run.step.completed")
    assert step["usage"]["total_tokens"] > 0
    assert final["usage"] == step["usage"]


@pytest.mark.asyncio
async def test_same_seed_same_text(api: MockAPI) -> None:
    assistant = await api.assistant()
    first = message_text(await api.run_stream((await api.thread())["id"], assistant["id"]))
    second = message_text(await api.run_stream((await api.thread())["id"], assistant["id"]))
    assert first == second
    assert len(first.split()) == 6 * 2


@pytest.mark.asyncio
async def test_tool_call_round_trip_matches_fixtures_b1_b2(api: MockAPI) -> None:
    thread_id, events = await tool_run(api, WEATHER_TOOL, TIME_TOOL, scenario="tool_call")
    assert collapse(names(events)) == collapse(names(fixture("B1-requires-action.sse")))
    assert keys_by_event(events) == keys_by_event(fixture("B1-requires-action.sse"))
    sdk_validate(events)
    run = last_run(events)
    assert run["status"] == "requires_action" and run["usage"] is not None
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    args = json.loads(calls[0]["function"]["arguments"])
    assert isinstance(args["city"], str) and args["unit"] in ("c", "f")
    assert 1 <= args["days"] <= 7
    streamed = "".join(
        tc["function"]["arguments"]
        for e in events
        if e.event == "thread.run.step.delta"
        for tc in e.json()["delta"]["step_details"]["tool_calls"]
    )
    assert streamed == calls[0]["function"]["arguments"]

    output = '{"temp_c": 4, "note": "quote \\"me\\""}'
    continuation = await api.submit(thread_id, run["id"], {calls[0]["id"]: output})
    assert collapse(names(continuation)) == collapse(names(fixture("B2-after-submit.sse")))
    assert keys_by_event(continuation) == keys_by_event(fixture("B2-after-submit.sse"))
    sdk_validate(continuation)
    tool_step = continuation[0].json()
    assert tool_step["status"] == "completed" and tool_step["usage"] is not None
    assert tool_step["step_details"]["tool_calls"][0]["function"]["output"] == output
    assert continuation[1].json()["usage"] is None
    assert output in message_text(continuation)
    final = last_run(continuation)
    assert final["status"] == "completed" and final["expires_at"] is None
    assert final["usage"]["total_tokens"] > run["usage"]["total_tokens"]


@pytest.mark.asyncio
async def test_parallel_tool_calls_calls_every_function_once(api: MockAPI) -> None:
    code = {"type": "code_interpreter"}
    thread_id, events = await tool_run(
        api, WEATHER_TOOL, code, TIME_TOOL, scenario="parallel_tool_calls"
    )
    sdk_validate(events)
    calls = last_run(events)["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    time_args = json.loads(calls[1]["function"]["arguments"])
    assert isinstance(time_args["zone"], str) and isinstance(time_args["precise"], bool)
    indices = [
        tc["index"]
        for e in events
        if e.event == "thread.run.step.delta"
        for tc in e.json()["delta"]["step_details"]["tool_calls"]
        if "id" in tc
    ]
    assert indices == [0, 1]
    outputs = {calls[0]["id"]: "sunny", calls[1]["id"]: "12:00"}
    continuation = await api.submit(thread_id, last_run(events)["id"], outputs)
    text = message_text(continuation)
    assert "sunny" in text and "12:00" in text
    assert last_run(continuation)["status"] == "completed"


@pytest.mark.asyncio
async def test_multi_round_needs_two_actions_and_quotes_both(api: MockAPI) -> None:
    thread_id, events = await tool_run(api, WEATHER_TOOL, TIME_TOOL, scenario="multi_round")
    run = last_run(events)
    first = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["name"] for c in first] == ["get_weather"]
    second_round = await api.submit(thread_id, run["id"], {first[0]["id"]: "out-one"})
    sdk_validate(second_round)
    assert collapse(names(second_round)) == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.run.step.delta",
        "thread.run.requires_action",
        "done",
    ]
    second = last_run(second_round)["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["name"] for c in second] == ["get_time"]
    final = await api.submit(thread_id, run["id"], {second[0]["id"]: "out-two"})
    text = message_text(final)
    assert "out-one" in text and "out-two" in text
    assert last_run(final)["status"] == "completed"
    steps = await api.ok("GET", f"/threads/{thread_id}/runs/{run['id']}/steps?order=asc")
    assert [s["type"] for s in steps["data"]] == ["tool_calls", "tool_calls", "message_creation"]
    assert all(s["status"] == "completed" and s["usage"] for s in steps["data"])


@pytest.mark.asyncio
async def test_tool_scenario_without_function_tool_falls_back_to_text(api: MockAPI) -> None:
    _, events = await tool_run(api, {"type": "file_search"}, scenario="tool_call")
    assert collapse(names(events)) == collapse(names(fixture("A-text.sse")))


@pytest.mark.asyncio
async def test_run_tools_override_assistant_tools(api: MockAPI) -> None:
    assistant = await api.assistant(WEATHER_TOOL)
    thread = await api.thread()
    events = await api.run_stream(
        thread["id"], assistant["id"], "tool_call", tools=[TIME_TOOL, WEATHER_TOOL]
    )
    calls = last_run(events)["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_time"


@pytest.mark.asyncio
async def test_failed_ends_with_run_failed_and_last_error(api: MockAPI) -> None:
    _, events = await tool_run(api, scenario="failed")
    sdk_validate(events)
    assert names(events)[-4:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
        "done",
    ]
    assert (
        keys_by_event(events)["thread.run.failed"]
        == keys_by_event(fixture("F-run-failed.sse"))["thread.run.failed"]
    )
    run = last_run(events)
    assert run["last_error"]["code"] == "rate_limit_exceeded"
    assert run["failed_at"] is not None and run["expires_at"] is None and run["usage"]
    message = events[-4].json()
    assert message["incomplete_details"] == {"reason": "run_failed"}


@pytest.mark.asyncio
async def test_incomplete_ends_with_run_incomplete(api: MockAPI) -> None:
    _, events = await tool_run(api, scenario="incomplete")
    sdk_validate(events)
    assert names(events)[-4:] == [
        "thread.message.incomplete",
        "thread.run.step.completed",
        "thread.run.incomplete",
        "done",
    ]
    run = last_run(events)
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert run["usage"] is not None and run["expires_at"] is None
    message = events[-4].json()
    assert message["status"] == "incomplete" and message["incomplete_at"] is not None
    assert message["content"][0]["text"]["value"] == message_text(events)


@pytest.mark.asyncio
async def test_error_event_mid_stream_then_run_fails_server_side(api: MockAPI) -> None:
    thread_id, events = await tool_run(api, scenario="error")
    sdk_validate(events)
    assert events[-1].event == "error"  # no `done` after it, as in fixture C
    assert set(events[-1].json()) == set(fixture("C-error-event.sse")[-1].json())
    assert events[-1].json()["code"] == "server_error"
    assert names(events).count("thread.message.delta") == 3
    run_id = events[0].json()["id"]
    run = await api.wait_status(thread_id, run_id, "failed")
    assert run["last_error"]["code"] == "server_error"
    messages = await api.ok("GET", f"/threads/{thread_id}/messages?run_id={run_id}")
    assert messages["data"][0]["status"] == "incomplete"


@pytest.mark.asyncio
async def test_create_thread_and_run_stream_announces_thread_first(api: MockAPI) -> None:
    assistant = await api.assistant()
    body = {
        "assistant_id": assistant["id"],
        "thread": {"messages": [{"role": "user", "content": "hello"}], "metadata": {"k": "v"}},
    }
    events = await api.stream("/threads/runs", body)
    sdk_validate(events)
    assert names(events)[:2] == ["thread.created", "thread.run.created"]
    thread = events[0].json()
    assert thread["metadata"] == {"k": "v"}
    assert events[1].json()["thread_id"] == thread["id"]
    assert last_run(events)["status"] == "completed"
    messages = await api.ok("GET", f"/threads/{thread['id']}/messages?order=asc")
    assert [m["role"] for m in messages["data"]] == ["user", "assistant"]


@pytest.mark.asyncio
async def test_events_start_with_the_run_lifecycle(api: MockAPI) -> None:
    _, events = await tool_run(api, scenario="incomplete")
    assert names(events)[:8] == [*START, *TEXT_EVENTS]
    created, queued, in_progress = (e.json() for e in events[:3])
    assert created == queued and created["status"] == "queued" and created["started_at"] is None
    assert in_progress["status"] == "in_progress" and in_progress["started_at"] is not None
