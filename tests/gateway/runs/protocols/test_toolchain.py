"""Each protocol's part of a tool chain on the golden streams of ``tests/data``: the calls a
stream ended with (completed items, chat deltas joined however the server sent them), the
follow-up request's body, and when a chain cannot go on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from gateway.runs.protocols import CHAT, RESPONSES, tool_round
from gateway.runs.protocols.responses_chain import ResponsesRound
from gateway.runs.protocols.toolchain import ChainRound
from gateway.tools import ToolOutput
from parsers.responses import ResponseCompletedEvent
from parsers.sse import SSEDecoder

DATA = Path(__file__).parents[3] / "data"
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]


def _fold(round_: ChainRound, kind: str, name: str) -> list[object]:
    decoder = SSEDecoder()
    spec = CHAT if kind == "chat" else RESPONSES
    typed = []
    for sse in [*decoder.feed((DATA / kind / name).read_bytes()), *decoder.close()]:
        event = spec.decode(sse)[0]
        assert event is not None
        round_.observe(event)
        typed.append(event)
    return typed


def _request(**extra: Any) -> bytes:
    return orjson.dumps({"model": "gpt-5", "input": "hi", "stream": True, **extra})


def _outputs(calls: list[Any]) -> list[ToolOutput]:
    return [ToolOutput(tool_call_id=c.id, output=f"out {c.id}") for c in calls]


@pytest.mark.parametrize("name", ["B-function-call.sse", "C-parallel-calls.sse"])
def test_responses_calls_come_from_the_completed_items(name: str) -> None:
    round_ = tool_round(
        "response", _request(instructions="be brief", tools=TOOLS, tool_choice="auto")
    )
    assert round_ is not None
    typed = _fold(round_, "responses", name)
    completed = next(e for e in typed if type(e) is ResponseCompletedEvent)
    items = [i for i in completed.response.output if i["type"] == "function_call"]
    ended = round_.ended_with()
    assert ended is not None and ended[0] == completed.response.id
    calls = ended[1]
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        (i["call_id"], i["name"], i["arguments"]) for i in items
    ]
    assert round_.blocked() is None
    body = orjson.loads(round_.follow_up(_outputs(calls)))
    assert body == {
        "model": "gpt-5",
        "instructions": "be brief",
        "tools": TOOLS,
        "tool_choice": "auto",
        "previous_response_id": completed.response.id,
        "input": [
            {"type": "function_call_output", "call_id": c.id, "output": f"out {c.id}"}
            for c in calls
        ],
        "stream": True,
    }
    assert round_.ended_with() is None  # waiting for the follow-up's own stream


def test_responses_conversation_store_and_other_items() -> None:
    round_ = tool_round("response", _request(conversation={"id": "conv_1"}))
    assert isinstance(round_, ResponsesRound)
    typed = _fold(round_, "responses", "B-function-call.sse")
    ended = round_.ended_with()
    assert ended is not None
    body = orjson.loads(round_.follow_up(_outputs(ended[1])))
    assert body["conversation"] == {"id": "conv_1"} and "previous_response_id" not in body

    completed = next(e for e in typed if type(e) is ResponseCompletedEvent)
    response = completed.response
    unstored = msgspec.structs.replace(response, store=False)
    round_.observe(msgspec.structs.replace(completed, response=unstored))
    assert round_.blocked() is not None and "store" in str(round_.blocked())

    custom = {"type": "custom_tool_call", "call_id": "call_x", "name": "grep", "input": "a"}
    other = msgspec.structs.replace(response, output=[*response.output, custom])
    round_.observe(msgspec.structs.replace(completed, response=other))
    ended = round_.ended_with()
    assert ended is not None and ended[1][-1].type == "custom_tool_call"


def test_a_request_that_said_store_false_is_not_chained_whatever_its_response_echoes() -> None:
    # Servers that echo no `store` (or echo true): the request's own word decides, as recovery
    # does. OpenAI refuses a previous_response_id naming a response it never stored.
    round_ = tool_round("response", _request(store=False))
    assert round_ is not None
    typed = _fold(round_, "responses", "B-function-call.sse")
    completed = next(e for e in typed if type(e) is ResponseCompletedEvent)
    for echoed in (None, True):
        response = msgspec.structs.replace(completed.response, store=echoed)
        round_.observe(msgspec.structs.replace(completed, response=response))
        assert round_.ended_with() is not None
        assert "store: false" in str(round_.blocked())


@pytest.mark.parametrize("name", ["A-text.sse", "G-failed.sse", "H-incomplete.sse"])
def test_responses_without_calls_end_the_chain(name: str) -> None:
    round_ = tool_round("response", _request())
    assert round_ is not None
    _fold(round_, "responses", name)
    assert round_.ended_with() is None


@pytest.mark.parametrize(
    "name",
    [
        "C-tool-call.sse",
        "D-parallel-tool-calls.sse",
        "E-tool-calls-without-index.sse",
        "F-duplicate-index.sse",
        "G-whole-calls.sse",
    ],
)
def test_chat_follow_up_carries_the_conversation(name: str) -> None:
    messages = [{"role": "user", "content": "Weather?"}]
    request = orjson.dumps(
        {"model": "gpt-4o", "messages": messages, "tools": TOOLS, "stream": True, "n": 1}
    )
    round_ = tool_round("chat", request)
    assert round_ is not None
    typed = _fold(round_, "chat", name)
    ended = round_.ended_with()
    assert ended is not None and ended[0] == typed[0].id  # type: ignore[attr-defined]
    calls = ended[1]
    assert calls and all(c.function.name and c.id for c in calls)
    body = orjson.loads(round_.follow_up(_outputs(calls)))
    assert {k: v for k, v in body.items() if k != "messages"} == {
        "model": "gpt-4o",
        "tools": TOOLS,
        "stream": True,
        "n": 1,
    }
    assistant = body["messages"][1]
    assert body["messages"][0] == messages[0] and assistant["role"] == "assistant"
    assert [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in assistant["tool_calls"]
    ] == [(c.id, c.function.name, c.function.arguments) for c in calls]
    assert body["messages"][2:] == [
        {"role": "tool", "tool_call_id": c.id, "content": f"out {c.id}"} for c in calls
    ]


def test_chat_text_has_no_calls_and_bad_bodies_have_no_round() -> None:
    round_ = tool_round("chat", orjson.dumps({"model": "m", "messages": []}))
    assert round_ is not None
    _fold(round_, "chat", "A-text.sse")
    assert round_.ended_with() is None
    assert tool_round("chat", b"not json") is None
    assert tool_round("response", b"[1, 2]") is None
