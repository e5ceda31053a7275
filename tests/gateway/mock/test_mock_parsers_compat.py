"""The simulator's streams through runcast's own parsers: SSE decoder, typed events, accumulator."""

from __future__ import annotations

import random

import pytest
from mock_helpers import HEADERS, TIME_TOOL, WEATHER_TOOL, MockAPI, message_text, parse_sse

from parsers.accumulate import RunAccumulator
from parsers.assistants import TextContent, UnknownEvent, decode_event
from parsers.sse import SSEDecoder


async def raw_stream(api: MockAPI, path: str, body: dict[str, object]) -> bytes:
    async with api.session.post(
        api.base_url + path, json={**body, "stream": True}, headers=HEADERS
    ) as resp:
        assert resp.status == 200
        return await resp.read()


def decode(raw: bytes, accumulator: RunAccumulator, seed: int) -> list[str]:
    """Feed ``raw`` in random chunks; every event must decode to a known typed event."""
    rng = random.Random(seed)
    decoder = SSEDecoder()
    names: list[str] = []
    pos = 0
    while pos < len(raw):
        size = rng.randint(1, 700)
        for sse in decoder.feed(raw[pos : pos + size]):
            event = decode_event(sse)
            assert not isinstance(event, UnknownEvent), sse.event
            accumulator.apply(event)
            names.append(event.event)
        pos += size
    assert decoder.close() == [] and not decoder.truncated
    return names


@pytest.mark.parametrize("scenario", ["text", "incomplete", "failed", "error"])
@pytest.mark.asyncio
async def test_single_stream_scenarios_decode(api: MockAPI, scenario: str) -> None:
    assistant = await api.assistant()
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": scenario}}
    raw = await raw_stream(api, f"/threads/{tid}/runs", body)
    accumulator = RunAccumulator()
    names = decode(raw, accumulator, seed=len(raw))
    snapshot = accumulator.snapshot()
    expected = {"text": "completed", "incomplete": "incomplete", "failed": "failed"}
    if scenario == "error":
        assert names[-1] == "error" and snapshot.error is not None
        assert snapshot.status == "in_progress" and not snapshot.done
    else:
        assert snapshot.status == expected[scenario] and snapshot.done
    (message,) = snapshot.messages
    (part,) = message.content
    assert isinstance(part, TextContent)
    assert part.text.value == message_text(parse_sse(raw))


@pytest.mark.asyncio
async def test_tool_rounds_decode_and_accumulate(api: MockAPI) -> None:
    assistant = await api.assistant(WEATHER_TOOL, TIME_TOOL)
    tid = (await api.thread())["id"]
    body = {"assistant_id": assistant["id"], "metadata": {"mock_scenario": "parallel_tool_calls"}}
    raw = await raw_stream(api, f"/threads/{tid}/runs", body)
    accumulator = RunAccumulator()
    decode(raw, accumulator, seed=1)
    snapshot = accumulator.snapshot()
    assert snapshot.status == "requires_action"
    assert snapshot.run is not None and snapshot.run.required_action is not None
    calls = snapshot.run.required_action.submit_tool_outputs.tool_calls
    details = snapshot.steps[0].step_details
    streamed = [c.function.arguments for c in details.tool_calls]  # type: ignore[union-attr]
    assert streamed == [c.function.arguments for c in calls]
    outputs = [{"tool_call_id": c.id, "output": f"out {c.function.name}"} for c in calls]
    path = f"/threads/{tid}/runs/{snapshot.run_id}/submit_tool_outputs"
    raw = await raw_stream(api, path, {"tool_outputs": outputs})
    decode(raw, accumulator, seed=2)
    final = accumulator.snapshot()
    assert final.status == "completed" and final.done
    assert final.run is not None and final.run.usage is not None
    answer = final.messages[-1].content[0]
    assert isinstance(answer, TextContent)
    assert "out get_weather" in answer.text.value and "out get_time" in answer.text.value
