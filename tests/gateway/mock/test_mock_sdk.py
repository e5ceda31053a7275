"""The official openai SDK (streaming helpers, event handlers, pollers) against the simulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from mock_helpers import TIME_TOOL, WEATHER_TOOL
from openai import AsyncAssistantEventHandler, AsyncOpenAI
from openai.types.beta.threads import Message, Run, Text, TextDelta
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput
from openai.types.beta.threads.runs import RunStep, ToolCall
from typing_extensions import override


class Recorder(AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.deltas_seen: list[str] = []
        self.texts_done: list[str] = []
        self.tool_calls: dict[str, ToolCall] = {}
        self.steps_done: list[RunStep] = []
        self.messages_done: list[Message] = []
        self.ended = False

    @override
    async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        self.deltas_seen.append(delta.value or "")

    @override
    async def on_text_done(self, text: Text) -> None:
        self.texts_done.append(text.value)

    @override
    async def on_tool_call_done(self, tool_call: ToolCall) -> None:
        self.tool_calls[tool_call.id] = tool_call  # fired repeatedly per spec §6.3: dedupe by id

    @override
    async def on_run_step_done(self, run_step: RunStep) -> None:
        self.steps_done.append(run_step)

    @override
    async def on_message_done(self, message: Message) -> None:
        self.messages_done.append(message)

    @override
    async def on_end(self) -> None:
        self.ended = True


async def setup(sdk: AsyncOpenAI, *tools: Any) -> tuple[str, str]:
    assistant = await sdk.beta.assistants.create(
        model="gpt-4o", instructions="Answer briefly.", tools=list(tools)
    )
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    return assistant.id, thread.id


@pytest.mark.asyncio
async def test_stream_with_event_handler_receives_text(sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await setup(sdk)
    handler = Recorder()
    async with sdk.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        await stream.until_done()
    assert handler.ended
    assert len(handler.deltas_seen) == 6
    assert handler.texts_done == ["".join(handler.deltas_seen)]
    assert handler.messages_done[0].status == "completed"
    run = handler.current_run
    assert run is not None and run.status == "completed" and run.usage is not None
    messages = await sdk.beta.threads.messages.list(thread_id=thread_id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]


@pytest.mark.asyncio
async def test_tool_call_then_submit_tool_outputs_stream(sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await setup(sdk, WEATHER_TOOL)
    first = Recorder()
    async with sdk.beta.threads.runs.stream(
        thread_id=thread_id,
        assistant_id=assistant_id,
        event_handler=first,
        metadata={"mock_scenario": "tool_call"},
    ) as stream:
        await stream.until_done()
    run = first.current_run
    assert run is not None and run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    streamed = first.tool_calls[calls[0].id]
    assert streamed.type == "function"
    assert streamed.function.arguments == calls[0].function.arguments

    second = Recorder()
    async with sdk.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread_id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": '{"temp_c": 4}'}],
        event_handler=second,
    ) as stream:
        await stream.until_done()
    final = second.current_run
    assert final is not None and final.status == "completed"
    assert '{"temp_c": 4}' in "".join(second.deltas_seen)
    assert [s.type for s in second.steps_done] == ["tool_calls", "message_creation"]


@pytest.mark.asyncio
async def test_create_and_poll_and_submit_tool_outputs_and_poll(sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await setup(sdk, WEATHER_TOOL, TIME_TOOL)
    run = await sdk.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        metadata={"mock_scenario": "parallel_tool_calls"},
    )
    assert run.status == "requires_action" and run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    outputs: list[ToolOutput] = [
        {"tool_call_id": c.id, "output": f"result of {c.function.name}"} for c in calls
    ]
    run = await sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread_id, run_id=run.id, tool_outputs=outputs
    )
    assert run.status == "completed"
    messages = await sdk.beta.threads.messages.list(thread_id=thread_id, run_id=run.id)
    text = messages.data[0].content[0]
    assert text.type == "text"
    assert "result of get_weather" in text.text.value
    assert "result of get_time" in text.text.value
    steps = await sdk.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run.id)
    assert {s.type for s in steps.data} == {"tool_calls", "message_creation"}
    step = await sdk.beta.threads.runs.steps.retrieve(
        thread_id=thread_id, run_id=run.id, step_id=steps.data[0].id
    )
    assert step.id == steps.data[0].id


@pytest.mark.asyncio
async def test_create_and_run_stream(sdk: AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    handler = Recorder()
    async with sdk.beta.threads.create_and_run_stream(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        event_handler=handler,
    ) as stream:
        await stream.until_done()
    run = handler.current_run
    assert run is not None and run.status == "completed"
    assert handler.texts_done and handler.texts_done[0] == "".join(handler.deltas_seen)


@pytest.mark.asyncio
async def test_raw_stream_yields_error_event(sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await setup(sdk)
    stream = await sdk.beta.threads.runs.create(
        thread_id=thread_id,
        assistant_id=assistant_id,
        stream=True,
        metadata={"mock_scenario": "error"},
    )
    kinds = [event.event async for event in stream]
    assert kinds[-1] == "error"
    assert "thread.message.delta" in kinds


@pytest.mark.asyncio
async def test_sdk_errors_map_statuses(sdk: AsyncOpenAI) -> None:
    assistant_id, thread_id = await setup(sdk)
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk.beta.threads.runs.create(
            thread_id=thread_id,
            assistant_id=assistant_id,
            metadata={"mock_scenario": "rate_limited"},
        )
    assert limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        await sdk.beta.threads.runs.create(
            thread_id=thread_id,
            assistant_id=assistant_id,
            metadata={"mock_scenario": "server_error"},
        )
    with pytest.raises(openai.NotFoundError):
        await sdk.beta.threads.runs.retrieve(thread_id=thread_id, run_id="run_missing")
    run: Run = await sdk.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    run = await sdk.beta.threads.runs.poll(run.id, thread_id=thread_id)
    assert run.status == "completed"
